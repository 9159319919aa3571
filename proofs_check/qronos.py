r"""Qronos and GPFQ (THEORY.md A4, A4', A5, I4, I5, I6).

Notation: :math:`\hat X = [X; \sqrt\lambda I]`, :math:`\tilde{\hat X} = [\tilde X; \sqrt\lambda I]`,
:math:`\tilde H = \tilde X^T\tilde X + \lambda I = \tilde{\hat X}^T\tilde{\hat X}`,
:math:`G = \tilde X^TX + \lambda I = \tilde{\hat X}^T\hat X`, :math:`w_{LS} = \tilde H^{-1}Gw`,
:math:`r_0 = \hat Xw - \tilde{\hat X}w_{LS}`.  Square roots of :math:`\lambda` never appear:
:math:`\|\hat Xw - \tilde{\hat X}q\|^2 = \|Xw - \tilde Xq\|^2 + \lambda\|w-q\|^2` and
:math:`\tilde{\hat X}^Tr_0 = \tilde X^T(Xw - \tilde Xw_{LS}) + \lambda(w - w_{LS})`.

Proof of I4/I5 (what the checks verify term by term): :math:`r_0 \perp \mathrm{range}(\tilde{\hat X})`
(normal equations), so
:math:`\|\hat Xw - \tilde{\hat X}q\|^2 = \|r_0\|^2 + \|\tilde{\hat X}(w_{LS} - q)\|^2` and I2 on
:math:`\tilde H` gives I4.  For the paper iteration, step 1 is the least-squares refit
:math:`w^{(1)}_{>1} = (w_{LS})_{>1} + ((w_{LS})_1 - q_1)\tilde H_{>1,>1}^{-1}\tilde H_{>1,1}`, i.e. an
OPTQ step from :math:`w_{LS}` with :math:`\eta_1 := (w_{LS})_1 - q_1`; steps :math:`t \ge 2`
coincide with the global refit
:math:`\arg\min_v\|\hat Xw - \tilde{\hat X}_{\le t}q_{\le t} - \tilde{\hat X}_{>t}v\|`, which gives I5.

Instances: exact rational ``X``, ``Xt`` with symbolic :math:`\lambda` (m = 4 > N = 3, and a
rank-deficient m = 2 < N = 3 case), rational data with :math:`\lambda = 0` (m = 5), and a
fully symbolic m = N = 2 case; weights ``w`` and rounding errors ``eta`` are always symbols.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp
from sympy.polys.matrices import DomainMatrix

from .algebra import (
    Elem,
    col,
    dm,
    el,
    fraction_field,
    general_matrix,
    optq_iterates,
    optq_paper,
    schur_complement,
    show,
    solve,
    symbols,
)
from .instances import with_weights
from .registry import Verdict, register, verdict

__all__ = [
    "QronosInstance",
    "a4_from_wls",
    "gpfq_telescoping",
    "i4_qronos_ls",
    "i5_qronos_paper",
    "qronos_instance",
    "qronos_paper",
    "reduces_to_optq",
]


@dataclass(frozen=True)
class QronosInstance:
    """Exact data of one Qronos instance.

    Attributes
    ----------
    label : str
        Description used in check names.
    field : Field
        Fraction field (lambda and/or data symbols, ``w``, ``eta``).
    x, xt : DomainMatrix
        Float-model and quantized-model inputs (m x N).
    lam : Elem
        Ridge parameter.
    w, eta : list[Elem]
        Symbolic weights and rounding errors.
    z : list[Elem]
        Free symbols standing for an arbitrary starting point of OPTQ on :math:`\tilde H`
        (empty unless the instance was built ``with_z``: extra generators slow every gcd).
    """

    label: str
    field: object
    x: DomainMatrix
    xt: DomainMatrix
    lam: Elem
    w: list[Elem]
    eta: list[Elem]
    z: list[Elem]

    @property
    def n(self) -> int:
        """Number of columns ``N``.

        Returns
        -------
        int
            ``N``.
        """
        return self.x.shape[1]

    def grams(self) -> tuple[DomainMatrix, DomainMatrix]:
        r"""Return :math:`(\tilde H, G)`.

        Returns
        -------
        tuple[DomainMatrix, DomainMatrix]
            :math:`\tilde H = \tilde X^T\tilde X + \lambda I` and :math:`G = \tilde X^TX + \lambda I`.
        """
        lam_eye = DomainMatrix.eye(self.n, self.field).to_dense() * self.lam
        return self.xt.transpose() * self.xt + lam_eye, self.xt.transpose() * self.x + lam_eye

    def loss(self, q: list[Elem]) -> Elem:
        r"""Return :math:`\|Xw - \tilde Xq\|^2 + \lambda\|w - q\|^2` from the raw data.

        Parameters
        ----------
        q : list[Elem]
            Quantized weights.

        Returns
        -------
        Elem
            The regularized output error.
        """
        res = self.x * col(self.w, self.field) - self.xt * col(q, self.field)
        d = col([a - b for a, b in zip(self.w, q, strict=True)], self.field)
        return (res.transpose() * res)[0, 0].element + self.lam * (d.transpose() * d)[0, 0].element


_RATIONAL_DATA: dict[str, tuple[list[list[int]], list[list[int]]]] = {
    "m=4": (
        [[2, -1, 0], [1, 3, 1], [0, 1, -2], [1, 0, 1]],
        [[2, -1, 1], [1, 2, 1], [1, 1, -2], [0, 0, 1]],
    ),
    "m=2": ([[1, 2, -1], [0, 1, 3]], [[1, 1, -1], [1, 1, 2]]),
    "m=5": (
        [[1, 0, 2], [-1, 2, 0], [0, 1, 1], [3, -1, 1], [1, 1, -1]],
        [[1, 1, 2], [-1, 2, 1], [0, 1, 0], [2, -1, 1], [1, 2, -1]],
    ),
}


@cache
def qronos_instance(kind: str, with_z: bool = False) -> QronosInstance:
    """Build a cached Qronos instance.

    Parameters
    ----------
    kind : str
        ``"m=4"`` (rational, symbolic lam), ``"m=2"`` (rational rank-deficient, symbolic lam),
        ``"m=5,lam=0"`` (rational, lam = 0), ``"symbolic"`` (X, Xt 2x2 and lam all symbols).
    with_z : bool
        Add the free starting point ``z`` to the field.

    Returns
    -------
    QronosInstance
        The instance.
    """
    lam = sp.Symbol("lam", positive=True)
    if kind == "symbolic":
        x, xt, lam_expr = general_matrix(2, 2, "x"), general_matrix(2, 2, "y"), lam
        label = "m=2,N=2,all symbolic"
    else:
        key = kind.split(",")[0]
        xs, xts = _RATIONAL_DATA[key]
        x = sp.Matrix(xs) * sp.Rational(1, 3)  # scaled to keep the data genuinely rational
        xt = sp.Matrix(xts) * sp.Rational(1, 2)
        lam_expr = sp.Integer(0) if kind.endswith("lam=0") else lam
        label = f"{kind},N=3,rational X,Xt" + ("" if kind.endswith("lam=0") else ",symbolic lam")
    n = x.cols
    w_s, e_s = symbols("w", n), symbols("eta", n)
    z_s = symbols("z", n) if with_z else []
    field = fraction_field(x, xt, lam_expr, w_s, e_s, z_s)
    return QronosInstance(
        label=label,
        field=field,
        x=dm(x, field),
        xt=dm(xt, field),
        lam=el(field, lam_expr),
        w=[el(field, s) for s in w_s],
        eta=[el(field, s) for s in e_s],
        z=[el(field, s) for s in z_s],
    )


def qronos_paper(
    ht: DomainMatrix, g: DomainMatrix, w: list[Elem], eta: list[Elem], start: list[Elem] | None = None
) -> tuple[list[Elem], list[Elem], Elem, list[Elem]]:
    r"""Qronos paper iteration (THEORY.md A4) in Gram form, with free rounding errors.

    Step 1: :math:`y_1 = ((Gw)_1 - \tilde H_{1,>1}v_{>1})/\tilde H_{11}` where ``v`` is the starting
    iterate (``w`` by default), :math:`q_1 = y_1 - \eta_1`, and
    :math:`\tilde H_{>1,>1}w^{(1)}_{>1} = (Gw)_{>1} - \tilde H_{>1,1}q_1` (the least-squares refit).
    Steps :math:`t \ge 2`: OPTQ on :math:`\tilde H`.  The target is always :math:`\hat Xw`.

    Parameters
    ----------
    ht, g : DomainMatrix
        :math:`\tilde H` and :math:`G`.
    w : list[Elem]
        Weights defining the target :math:`\hat Xw`.
    eta : list[Elem]
        Rounding errors (``eta[0]`` is :math:`y_1 - q_1`).
    start : list[Elem], optional
        Starting iterate (``w`` by default; ``w_LS`` for the A4 == A4' statement).

    Returns
    -------
    tuple[list[Elem], list[Elem], Elem, list[Elem]]
        ``(x, q, y1, refit)``: rounded-at values (``x[0] = y1``), quantized weights,
        :math:`y_1`, and the step-1 refit :math:`w^{(1)}_{>1}`.
    """
    n = ht.shape[0]
    field = ht.domain
    v = list(w if start is None else start)
    gw = g * col(w, field)
    y1 = (gw[0, 0].element - sum((ht[0, k].element * v[k] for k in range(1, n)), field.zero)) / ht[0, 0].element
    q1 = y1 - eta[0]
    rhs = gw[1:, :] - ht[1:, 0:1] * field.convert(q1)
    refit = solve(ht[1:, 1:], rhs)
    tail = [refit[k, 0].element for k in range(n - 1)]
    x_rest, q_rest = optq_paper(ht[1:, 1:], tail, eta[1:])
    return [y1, *x_rest], [q1, *q_rest], y1, tail


def _wls(inst: QronosInstance) -> list[Elem]:
    ht, g = inst.grams()
    sol = solve(ht, g * col(inst.w, inst.field))
    return [sol[i, 0].element for i in range(inst.n)]


def _r0_norm_and_normal_eq(inst: QronosInstance, wls: list[Elem]) -> tuple[Elem, list[Elem]]:
    field = inst.field
    top = inst.x * col(inst.w, field) - inst.xt * col(wls, field)
    bottom = col([a - b for a, b in zip(inst.w, wls, strict=True)], field)
    norm2 = (top.transpose() * top)[0, 0].element + inst.lam * (bottom.transpose() * bottom)[0, 0].element
    normal = inst.xt.transpose() * top + bottom * inst.lam
    return norm2, [normal[i, 0].element for i in range(inst.n)]


def i4_qronos_ls(kind: str, method: str = "direct") -> Verdict:
    r"""I4 for Qronos-LS, and :math:`r_0 \perp \mathrm{range}(\tilde{\hat X})`.

    I4: :math:`\|Xw - \tilde Xq\|^2 + \lambda\|w-q\|^2 = \|r_0\|^2 + \sum_t\eta_t^2\tilde D_t`.

    Both methods verify the normal equations :math:`\tilde{\hat X}^Tr_0 = Gw - \tilde Hw_{LS} = 0`.
    ``"direct"``: run OPTQ from :math:`w_{LS}` and compare both sides.
    ``"decomposition"`` (used for the fully symbolic instance, where the direct rational
    functions cost ~10 s): for a free starting point ``z`` and :math:`q = \mathrm{OPTQ}(z;\tilde H)`,
    :math:`\|\hat Xw - \tilde{\hat X}q\|^2
    = \|\hat Xw - \tilde{\hat X}z\|^2 + 2(z-q)^T(Gw - \tilde Hz) + \sum_t\eta_t^2\tilde D_t`;
    at :math:`z = w_{LS}` the middle term vanishes, which is I4.

    Parameters
    ----------
    kind : str
        Instance kind (see :func:`qronos_instance`).
    method : str
        ``"direct"`` or ``"decomposition"``.

    Returns
    -------
    Verdict
        Passed iff every verified identity holds exactly.
    """
    inst = qronos_instance(kind, with_z=method == "decomposition")
    field, n = inst.field, inst.n
    ht, g = inst.grams()
    wls = _wls(inst)
    r0_norm2, normal = _r0_norm_and_normal_eq(inst, wls)
    bad = [f"(Xth^T r0)_{i + 1} = {show(field, v)}" for i, v in enumerate(normal) if v != field.zero]
    pivot_sum = sum((inst.eta[t] ** 2 * schur_complement(ht, t) for t in range(n)), field.zero)
    if method == "direct":
        _, q = optq_paper(ht, wls, inst.eta)
        lhs = inst.loss(q)
        if lhs != r0_norm2 + pivot_sum:
            bad.append(f"loss - (||r0||^2 + sum eta^2 Dt) = {show(field, lhs - r0_norm2 - pivot_sum)}")
    else:
        _, qz = optq_paper(ht, inst.z, inst.eta)
        rz_norm2, _ = _r0_norm_and_normal_eq(inst, inst.z)
        gap = col([a - b for a, b in zip(inst.z, qz, strict=True)], field)
        cross = (gap.transpose() * (g * col(inst.w, field) - ht * col(inst.z, field)))[0, 0].element
        if inst.loss(qz) != rz_norm2 + 2 * cross + pivot_sum:
            bad.append("decomposition with free z fails")
    return verdict(bad, f"Xth^T r0 = 0 and loss = ||r0||^2 + sum_t eta_t^2 Dt_t exactly ({method})")


def i5_qronos_paper(kind: str) -> Verdict:
    r"""I5 for the paper iteration, plus the structure of its first step.

    Verifies (i) :math:`y_1` from the raw data
    :math:`(\tilde X_1^T(Xw - \tilde X_{>1}w_{>1}) + \lambda w_1)/(\|\tilde X_1\|^2 + \lambda)` equals the
    Gram form; (ii) the step-1 refit equals an OPTQ step from :math:`w_{LS}` with
    :math:`\eta_1 := (w_{LS})_1 - q_1`; (iii) OPTQ steps :math:`t \ge 2` equal the global refit;
    (iv) loss :math:`= \|r_0\|^2 + ((w_{LS})_1 - q_1)^2\tilde D_1 + \sum_{t\ge2}\eta_t^2\tilde D_t`.

    Parameters
    ----------
    kind : str
        Instance kind (see :func:`qronos_instance`).

    Returns
    -------
    Verdict
        Passed iff (i)-(iv) hold exactly.
    """
    inst = qronos_instance(kind)
    field, n, w, eta = inst.field, inst.n, inst.w, inst.eta
    ht, g = inst.grams()
    wls = _wls(inst)
    _, q, y1, refit = qronos_paper(ht, g, w, eta)
    bad: list[str] = []
    # (i) y_1 from the raw data
    xt1, xtr = inst.xt[:, 0:1], inst.xt[:, 1:]
    resid = inst.x * col(w, field) - xtr * col(w[1:], field)
    y1_raw = ((xt1.transpose() * resid)[0, 0].element + inst.lam * w[0]) / (
        (xt1.transpose() * xt1)[0, 0].element + inst.lam
    )
    if y1_raw != y1:
        bad.append("y_1 (raw) != y_1 (Gram form)")
    # (ii) step-1 refit is an OPTQ step from w_LS with eta_1 := (w_LS)_1 - q_1
    step = solve(ht[1:, 1:], ht[1:, 0:1])
    for k in range(1, n):
        if refit[k - 1] != wls[k] + (wls[0] - q[0]) * step[k - 1, 0].element:
            bad.append(f"step-1 refit, column {k + 1} != OPTQ step from w_LS")
    # (iii) OPTQ steps t >= 2 equal the global refit argmin_v ||Xh w - Xth_<=t q_<=t - Xth_>t v||
    iterates = optq_iterates(ht[1:, 1:], refit, eta[1:])
    gw = g * col(w, field)
    for t in range(1, n - 1):
        rhs = gw[t + 1 :, :] - ht[t + 1 :, : t + 1] * col(q[: t + 1], field)
        v = solve(ht[t + 1 :, t + 1 :], rhs)
        after = iterates[t][t:]  # iterate of the tail problem after its step t (global step t + 1)
        if [v[i, 0].element for i in range(n - t - 1)] != after:
            bad.append(f"t={t + 1}: OPTQ step != global refit")
    # (iv) the error identity
    r0_norm2, normal = _r0_norm_and_normal_eq(inst, wls)
    bad += [f"(Xth^T r0)_{i + 1} != 0" for i, v in enumerate(normal) if v != field.zero]
    dt = [schur_complement(ht, t) for t in range(n)]
    rhs = r0_norm2 + (wls[0] - q[0]) ** 2 * dt[0]
    rhs += sum((eta[t] ** 2 * dt[t] for t in range(1, n)), field.zero)
    lhs = inst.loss(q)
    if lhs != rhs:
        bad.append(f"loss - I5 = {show(field, lhs - rhs)}")
    return verdict(
        bad, "y_1 raw = Gram form; step 1 = OPTQ step from w_LS; steps t>=2 = global refit; I5 exact"
    )


_KINDS = ("m=4", "m=2", "m=5,lam=0", "symbolic")
for _kind in _KINDS:
    _label = {
        "m=4": "m=4,N=3,rational,lam",
        "m=2": "m=2,N=3,rational,lam",
        "m=5,lam=0": "m=5,N=3,rational,lam=0",
        "symbolic": "m=2,N=2,symbolic",
    }[_kind]
    register(
        f"I4.qronos_ls[{_label}]",
        "Qronos-LS: ||Xw - Xt q||^2 + lam||w-q||^2 = ||r0||^2 + sum_t "
        "eta_t^2 Dt_t and r0 is orthogonal to range(Xth)",
        "I4",
    )(lambda _kind=_kind: i4_qronos_ls(_kind, "decomposition" if _kind == "symbolic" else "direct"))
    register(
        f"I5.qronos_paper[{_label}]",
        "Qronos paper: loss = ||r0||^2 + ((w_LS)_1 - q_1)^2 Dt_1 + sum_t>=2 eta_t^2 Dt_t (symbolic w, eta)",
        "I5",
    )(lambda _kind=_kind: i5_qronos_paper(_kind))


@register(
    "A4.reduces_to_optq[N=4]",
    "Xt = X (G = Ht = H): y_1 = ((Gw)_1 - Ht_1,>1 w_>1)/Ht_11 = w_1, w_LS = Ht^-1 G w = w, and A4 = A4' = A2",
    "A4, A4', T4",
)
def reduces_to_optq() -> Verdict:
    r"""Qronos with :math:`\tilde X = X` is OPTQ (generic symbolic :math:`H`, symbolic ``w``, ``eta``).

    Returns
    -------
    Verdict
        Passed iff :math:`y_1 = w_1`, :math:`w_{LS} = w`, and the whole A4 run equals A2.
    """
    inst, w, eta = with_weights("generic", 4)
    field, h = inst.field, inst.hd
    x4, q4, y1, _ = qronos_paper(h, h, w, eta)
    x2, q2 = optq_paper(h, w, eta)
    wls = solve(h, h * col(w, field))
    bad = [] if y1 == w[0] else [f"y_1 - w_1 = {show(field, y1 - w[0])}"]
    bad += [f"(w_LS - w)_{i + 1} != 0" for i in range(4) if wls[i, 0].element != w[i]]
    bad += [f"x_{t + 1}: A4 != A2" for t in range(4) if x4[t] != x2[t] or q4[t] != q2[t]]
    return verdict(bad, "y_1 = w_1, w_LS = w, A4 run = A2 run (every x_t, q_t)")


@register(
    "A4.from_wls_equals_ls[m=4,N=3]",
    "A4 with target Xh w started from the iterate w_LS has y_1 = "
    "(w_LS)_1 and returns exactly A4' (OPTQ on w_LS, Ht)",
    "A4, A4'",
)
def a4_from_wls() -> Verdict:
    r"""A4 and A4' agree when A4's starting iterate is :math:`w_{LS}` (target :math:`\hat Xw` kept).

    The detail also reports whether the other reading ("run A4 on the input :math:`w_{LS}`",
    i.e. target :math:`\hat Xw_{LS}`) gives :math:`y_1 = (w_{LS})_1`; in general it does not.

    Returns
    -------
    Verdict
        Passed iff :math:`y_1 = (w_{LS})_1` and every :math:`q_t` agrees with A4'.
    """
    inst = qronos_instance("m=4")
    ht, g = inst.grams()
    wls = _wls(inst)
    _, q_a4, y1, _ = qronos_paper(ht, g, inst.w, inst.eta, start=wls)
    _, q_ls = optq_paper(ht, wls, inst.eta)
    bad = [] if y1 == wls[0] else ["y_1 != (w_LS)_1"]
    bad += [f"q_{t + 1}: A4(start w_LS) != A4'" for t in range(inst.n) if q_a4[t] != q_ls[t]]
    # the other reading: input w_LS, target Xh w_LS
    _, _, y1_other, _ = qronos_paper(ht, g, wls, inst.eta)
    other = "equal" if y1_other == wls[0] else "differs"
    return verdict(
        bad,
        f"y_1 = (w_LS)_1 and q(A4 from w_LS) = q(A4'); note: with "
        f"target Xh w_LS instead, y_1 {other} from (w_LS)_1",
    )


@register(
    "I6.gpfq_telescoping[m=2,N=3]",
    "GPFQ: u_N = Xw - Xt q for any q, and Xt_t^T(u_t-1 + w_t "
    "X_t)/||Xt_t||^2 minimizes ||u_t-1 + w_t X_t - y Xt_t||^2",
    "A5, I6",
)
def gpfq_telescoping() -> Verdict:
    r"""GPFQ's state recursion telescopes; its pre-rounding value is the 1-D least-squares fit.

    Returns
    -------
    Verdict
        Passed iff :math:`u_N - (Xw - \tilde Xq) = 0` and the derivative in ``y`` vanishes at the
        stated argument for every ``t`` (symbolic ``X``, ``Xt``, ``w``, ``q``).
    """
    m, n = 2, 3
    x, xt = general_matrix(m, n, "x"), general_matrix(m, n, "y")
    w, q = sp.Matrix(symbols("w", n)), sp.Matrix(symbols("q", n))
    y = sp.Symbol("y", real=True)
    u = sp.zeros(m, 1)
    bad = []
    for t in range(n):
        target = u + w[t] * x[:, t]
        ystar = (xt[:, t].T * target)[0, 0] / (xt[:, t].T * xt[:, t])[0, 0]
        obj = ((target - y * xt[:, t]).T * (target - y * xt[:, t]))[0, 0]
        if sp.cancel(sp.diff(obj, y).subs(y, ystar)) != 0:
            bad.append(f"t={t + 1}: derivative at y* != 0")
        u = target - q[t] * xt[:, t]
    diff = (u - (x * w - xt * q)).expand()
    bad += [f"row {i + 1}: u_N - (Xw - Xt q) = {diff[i]}" for i in range(m) if diff[i] != 0]
    return verdict(bad, "u_N = Xw - Xt q identically; y* is the 1-D least-squares minimizer")
