r"""OPTQ: paper iteration vs. fast (GPTQ) form, and the error identity (THEORY.md A2, A2', I2, B7).

Sign derivation (A2 == A2').  Let :math:`H^{-1} = U^TU` with :math:`U` upper and
:math:`K = H_{\ge t,\ge t}`.  Because :math:`R = U^{-1}` is upper and :math:`H = RR^T`,
:math:`K = R_{\ge t,\ge t}R_{\ge t,\ge t}^T`, hence :math:`K^{-1} = U_{\ge t,\ge t}^T U_{\ge t,\ge t}`:
the trailing block of :math:`U` factors the inverse of the trailing block of :math:`H`.
Its first row gives :math:`(K^{-1})_{11} = U_{tt}^2` and :math:`(K^{-1})_{1,>1} = U_{tt}U_{t,>t}`.
The block-inverse formula :math:`(K^{-1})_{>1,1} = -K_{>1,>1}^{-1}K_{>1,1}(K^{-1})_{11}` then gives

.. math::

    \hat X_{>t}^+ \hat X_t = H_{>t,>t}^{-1} H_{>t,t} = -\frac{U_{t,>t}^T}{U_{tt}},

so the paper update :math:`w_{>t} \mathrel{+}= \eta_t H_{>t,>t}^{-1}H_{>t,t}` is exactly the fast
update :math:`w_{>t} \mathrel{-}= (\eta_t/U_{tt})\,U_{t,>t}`.  THEORY.md's signs are consistent.

Error identity (I2).  :math:`x_t - w_t = -\sum_{s<t} L_{ts}\eta_s` (B7's drift), so
:math:`w - q = L\eta` with :math:`L = C\,\mathrm{diag}(C)^{-1} = U^T\mathrm{diag}(U)^{-1}`;
:math:`L^T H L = \mathrm{diag}(D)` makes the columns :math:`v_t = \hat X L e_t` orthogonal
with :math:`\|v_t\|^2 = D_t`, so :math:`\|\hat X(w-q)\|^2 = \sum_t \eta_t^2 D_t`.

The rounding errors :math:`\eta_t` are free symbols, so every statement holds for any
quantizer (nearest, stochastic, clipped).
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy.polys.matrices import DomainMatrix

from .algebra import (
    dm,
    el,
    fraction_field,
    general_matrix,
    gptq_fast,
    inverse,
    optq_paper,
    schur_complement,
    show,
    solve,
    symbols,
    unit_lower_inverse_factor,
)
from .instances import SpdInstance, generic_spd, inverse_factor, upper_param_spd, with_weights
from .registry import Verdict, register, verdict

__all__ = [
    "error_is_l_eta",
    "error_norm",
    "fast_equals_paper",
    "fast_form_sign",
    "gptq_loss_scale",
    "orthogonal_columns",
    "trailing_block",
]


def _instance(kind: str, n: int) -> SpdInstance:
    return generic_spd(n) if kind == "generic" else upper_param_spd(n)


@cache
def _inverse_upper_factor(kind: str, n: int) -> sp.Matrix:
    """``U = C^T`` with ``C`` sympy's lower Cholesky factor of ``H^{-1}`` (entries contain square roots)."""
    inst = _instance(kind, n)
    return inverse(inst.hd).to_Matrix().cholesky(hermitian=False).T


def _ratio(kind: str, n: int, field: object) -> DomainMatrix:
    r"""Matrix of :math:`U_{tk}/U_{tt}` (square roots cancel) over ``field``."""
    u = _inverse_upper_factor(kind, n)
    rows = [[el(field, sp.together(u[t, k] / u[t, t])) for k in range(n)] for t in range(n)]
    return DomainMatrix(rows, (n, n), field)


def fast_form_sign(kind: str, n: int, sign: int = -1) -> Verdict:
    r"""Check :math:`H_{>t,>t}^{-1}H_{>t,t} = \mathrm{sign}\cdot U_{t,>t}^T/U_{tt}` for every ``t``.

    THEORY.md A2' (``w_{>t} -= (eta_t/U_tt) U_{t,>t}``) corresponds to ``sign = -1``;
    ``sign = +1`` is the wrong convention and must fail.

    Parameters
    ----------
    kind : str
        ``"generic"`` (symmetric H) or ``"upper"`` (H = RR^T).
    n : int
        Size.
    sign : int
        Claimed sign relating the two update vectors.

    Returns
    -------
    Verdict
        Passed iff the claimed relation holds for every ``t < N``.
    """
    inst = _instance(kind, n)
    field, hd = inst.field, inst.hd
    ratio = _ratio(kind, n, field)
    bad = []
    for t in range(n - 1):
        step = solve(hd[t + 1 :, t + 1 :], hd[t + 1 :, t : t + 1])
        for k in range(t + 1, n):
            lhs, rhs = step[k - t - 1, 0].element, field.convert(sign) * ratio[t, k].element
            if lhs != rhs:
                bad.append(f"t={t + 1},k={k + 1}: step - ({sign:+d})U_tk/U_tt = {show(field, lhs - rhs)}")
    return verdict(bad, f"H_>t,>t^-1 H_>t,t = {'-' if sign < 0 else '+'}U_t,>t^T / U_tt for t = 1..{n - 1}")


def trailing_block(kind: str, n: int) -> Verdict:
    r"""Check :math:`(H_{\ge t,\ge t})^{-1} = U_{\ge t,\ge t}^T U_{\ge t,\ge t}` for every ``t``.

    Parameters
    ----------
    kind : str
        ``"generic"`` or ``"upper"``.
    n : int
        Size.

    Returns
    -------
    Verdict
        Passed iff the trailing block of ``U`` factors the inverse of every trailing block of ``H``.
    """
    inst = _instance(kind, n)
    field = inst.field
    u = _inverse_upper_factor(kind, n)
    bad = []
    for t in range(n):
        blk = u[t:, t:]
        prod = (blk.T * blk).applyfunc(sp.together)
        if dm(prod, field) != inverse(inst.hd[t:, t:]):
            bad.append(f"t={t + 1}: (H_>=t,>=t)^-1 != U_>=t^T U_>=t")
    return verdict(bad, f"(H_>=t,>=t)^-1 = U_>=t,>=t^T U_>=t,>=t for t = 1..{n}")


def fast_equals_paper(kind: str, n: int, sign: int = -1) -> Verdict:
    r"""Run A2 and A2' (lazy blocks ``B = 1..N``) with symbolic ``w``, ``eta``; compare every :math:`x_t`.

    Parameters
    ----------
    kind : str
        ``"generic"`` or ``"upper"``.
    n : int
        Size.
    sign : int
        ``-1`` runs THEORY.md's fast form; ``+1`` runs the sign-flipped variant.

    Returns
    -------
    Verdict
        Passed iff the rounded-at values :math:`x_t` (hence ``q``) agree for every block width.
    """
    inst, w, eta = with_weights(kind, n)
    field = inst.field
    ratio = _ratio(kind, n, field) * field.convert(-sign)
    x_paper, _ = optq_paper(inst.hd, w, eta)
    bad = []
    for block in range(1, n + 1):
        x_fast, _ = gptq_fast(ratio, w, eta, block)
        bad += [f"B={block}, t={t + 1}: x differs" for t in range(n) if x_fast[t] != x_paper[t]]
    return verdict(bad, f"x_t (and q_t = x_t - eta_t) of A2 and A2' agree for B = 1..{n}, t = 1..{n}")


for _kind, _n in (("generic", 3), ("upper", 4)):
    _tag = f"N={_n}" if _kind == "generic" else f"N={_n},H=RR^T"
    register(
        f"A2.fast_form_sign[{_tag}]",
        "paper step H_>t,>t^-1 H_>t,t = -U_t,>t^T/U_tt (H^-1 = U^T U): "
        "THEORY's 'w_>t -= (eta_t/U_tt) U_t,>t' is right",
        "A2, A2'",
    )(lambda _kind=_kind, _n=_n: fast_form_sign(_kind, _n))
    register(
        f"A2.trailing_block[{_tag}]",
        "(H_>=t,>=t)^-1 = U_>=t,>=t^T U_>=t,>=t: step t of A2' only needs the trailing block of U",
        "A2'",
    )(lambda _kind=_kind, _n=_n: trailing_block(_kind, _n))
    register(
        f"A2.fast_equals_paper[{_tag}]",
        "A2 (paper) and A2' (GPTQ, lazy blocks B = 1..N) give identical x_t, q_t for symbolic w, eta",
        "A2, A2', T4",
    )(lambda _kind=_kind, _n=_n: fast_equals_paper(_kind, _n))


def error_is_l_eta(n: int) -> Verdict:
    r"""Check :math:`w - q = L\eta` and :math:`x_t - w_t = -\sum_{s<t}L_{ts}\eta_s` (generic symbolic H).

    Parameters
    ----------
    n : int
        Size.

    Returns
    -------
    Verdict
        Passed iff both identities hold for every coordinate.
    """
    inst, w, eta = with_weights("generic", n)
    field = inst.field
    lo, _ = inverse_factor("generic", n)
    x, q = optq_paper(inst.hd, w, eta)
    bad = []
    for t in range(n):
        l_eta = sum((lo[t, s].element * eta[s] for s in range(n)), field.zero)
        if w[t] - q[t] != l_eta:
            bad.append(f"t={t + 1}: (w-q)_t - (L eta)_t = {show(field, w[t] - q[t] - l_eta)}")
        drift = -sum((lo[t, s].element * eta[s] for s in range(t)), field.zero)
        if x[t] - w[t] != drift:
            bad.append(f"t={t + 1}: x_t - w_t != -sum_s<t L_ts eta_s")
    return verdict(bad, f"w - q = L eta and x_t - w_t = -sum_s<t L_ts eta_s, t = 1..{n}")


def error_norm(n: int) -> Verdict:
    r"""Check :math:`(w-q)^T H (w-q) = \sum_t \eta_t^2 D_t` for the paper iteration (generic symbolic H).

    Parameters
    ----------
    n : int
        Size.

    Returns
    -------
    Verdict
        Passed iff the quadratic form of the final error equals the pivot-weighted sum.
    """
    inst, w, eta = with_weights("generic", n)
    field = inst.field
    _, q = optq_paper(inst.hd, w, eta)
    err = DomainMatrix([[w[t] - q[t]] for t in range(n)], (n, 1), field)
    lhs = (err.transpose() * inst.hd * err)[0, 0].element
    rhs = sum((eta[t] ** 2 * inst.pivots[t] for t in range(n)), field.zero)
    bad = [] if lhs == rhs else [f"difference = {show(field, lhs - rhs)}"]
    return verdict(bad, f"||Xh(w-q)||^2 = (w-q)^T H (w-q) = sum_t eta_t^2 D_t exactly (N={n})")


for _n in (3, 4):
    register(
        f"I2.error_is_L_eta[N={_n}]",
        "OPTQ with free rounding errors: w - q = L eta, L = C diag(C)^-1; x_t - w_t = -sum_s<t L_ts eta_s (B7)",
        "I2, B7",
    )(lambda _n=_n: error_is_l_eta(_n))
    register(
        f"I2.error_norm[N={_n}]",
        "OPTQ: ||X(w-q)||^2 + lam ||w-q||^2 = (w-q)^T H (w-q) = sum_t eta_t^2 D_t (symbolic w, eta, H)",
        "I2",
    )(lambda _n=_n: error_norm(_n))


@register(
    "I2.orthogonal_v[m=2,N=3]",
    "v_t = Xh L e_t are pairwise orthogonal with ||v_t||^2 = D_t (Xh = [X; sqrt(lam) I], X 2x3 symbolic)",
    "I2",
)
def orthogonal_columns() -> Verdict:
    r"""Check :math:`V^TV = \mathrm{diag}(D)` for :math:`V = \hat XL` with explicit symbolic :math:`\hat X`.

    Returns
    -------
    Verdict
        Passed iff the Gram matrix of the columns of ``V`` is ``diag(D)``.
    """
    m, n = 2, 3
    x = general_matrix(m, n, "x")
    s = sp.Symbol("s", positive=True)
    xh = x.col_join(s * sp.eye(n))
    field = fraction_field(xh)
    xhd = dm(xh, field)
    hd = xhd.transpose() * xhd
    lo, _ = unit_lower_inverse_factor(hd)
    v = xhd * lo
    gram = v.transpose() * v
    bad = []
    for i in range(n):
        for j in range(n):
            want = schur_complement(hd, i) if i == j else field.zero
            if gram[i, j].element != want:
                bad.append(f"(V^T V)[{i + 1},{j + 1}] = {show(field, gram[i, j].element)}")
    return verdict(bad, "V^T V = diag(D_1, D_2, D_3) exactly")


@register(
    "I2.gptq_loss_scale[N=3]",
    "pivots are 1-homogeneous, D_t(cH) = c D_t(H): GPTQ's Losses (1/2) sum "
    "eta^2/U_tt^2 with H_g = (2/m)H is (1/m) sum eta^2 D_t",
    "I2",
)
def gptq_loss_scale() -> Verdict:
    r"""Scaling of the pivots, which fixes the meaning of "GPTQ's accumulated loss is half of this".

    GPTQ accumulates :math:`\tfrac12\sum_t (w_t - q_t)^2 / U_{tt}^2 = \tfrac12 \sum_t \eta_t^2 D_t(H_g)`
    (the ``w`` there is the current column, i.e. :math:`x_t`) with its own
    :math:`H_g = (2/m)(X^TX + \lambda I)`; by homogeneity this is :math:`\tfrac1m\sum_t\eta_t^2D_t(H)`.
    It is "half of" :math:`\sum_t\eta_t^2D_t` only for the matrix GPTQ actually factors.

    Returns
    -------
    Verdict
        Passed iff :math:`D_t(cH) = cD_t(H)` for symbolic ``c`` and generic symmetric ``H``.
    """
    h = generic_spd(3).h
    c = sp.Symbol("c", positive=True)
    field = fraction_field(h, c)
    hd, cd = dm(h, field), el(field, c)
    scaled = dm(c * h, field)
    bad = [f"t={t + 1}" for t in range(3) if schur_complement(scaled, t) != cd * schur_complement(hd, t)]
    return verdict(bad, "D_t(cH) = c D_t(H) for t = 1..3")


@register(
    "B7.drift_bound_algebra[N=3]",
    "lam ||w-q||^2 = ||Xh(w-q)||^2 - ||X(w-q)||^2 <= sum eta_t^2 D_t, "
    "giving ||w-q||_inf <= (delta/2) sqrt(tr D / lam)",
    "B7",
)
def drift_bound_algebra() -> Verdict:
    r"""The algebraic step of B7's second bound, for symbolic ``X`` (2x3), :math:`\lambda` and error ``e``.

    Verifies :math:`e^THe - \|Xe\|^2 = \lambda\|e\|^2` with :math:`H = X^TX + \lambda I`; then
    :math:`\lambda\|w-q\|_\infty^2 \le \lambda\|w-q\|_2^2 \le \sum_t\eta_t^2D_t \le (\delta^2/4)\mathrm{tr}(D)`
    by I2 and :math:`|\eta_t|\le\delta/2`.

    Returns
    -------
    Verdict
        Passed iff the polynomial identity holds.
    """
    x = general_matrix(2, 3, "x")
    lam = sp.Symbol("lam", positive=True)
    e = sp.Matrix(symbols("e", 3))
    h = x.T * x + lam * sp.eye(3)
    diff = sp.expand((e.T * h * e)[0, 0] - ((x * e).T * (x * e))[0, 0] - lam * (e.T * e)[0, 0])
    return verdict([] if diff == 0 else [f"remainder {diff}"], "e^T H e - ||Xe||^2 = lam ||e||^2")
