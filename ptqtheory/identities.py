r"""The identities I1-I6 of ``docs/theory.md`` as labelled functions, and the one certificate assembly.

:func:`i1` .. :func:`i6` each take a :class:`~ptqtheory._context.RunContext` (how each quantity was
obtained; nothing here depends on it) and return the two sides as computed, their relative gap, the
first-order rounding allowance of the gap (error model of :mod:`ptqtheory.tolerances`; derived in each
docstring) and the structure relation, if any (e.g. :math:`w - q = L\eta`). :func:`assemble` evaluates
the identity and bounds that the registry (:mod:`ptqtheory.registry`) names for the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _linalg
from ._context import RunContext
from ._validate import check_bool, check_nonnegative_real, check_probability
from .tolerances import (
    RESOLVED,
    RTOL_IDENTITY,
    formed_quadratic_allowance,
    gpfq_allowance,
    gram_statistics_allowance,
    h_tolerance,
    identity_allowance,
    least_squares_allowance,
    pivot_bounds_slack,
    qronos_first_allowance,
    structure_allowance,
)

__all__ = [
    "STATEMENT",
    "Certificate",
    "IdentityCheck",
    "PivotCheck",
    "StructureCheck",
    "assemble",
    "check_options",
    "i1",
    "i2",
    "i3",
    "i4",
    "i5",
    "i6",
    "relative_gap",
]

STATEMENT = {
    "I2": "||X(w-q)||^2 + lam||w-q||^2 = sum_t eta_t^2 D_t",
    "I3": "(q-w)^T H (q-w) = sum_t eta_t^2 D_t (rows of tr((W_hat-W) H (W_hat-W)^T))",
    "I4": "||Xw - Xt q||^2 + lam||w-q||^2 = ||r_0||^2 + sum_t eta_t^2 Dt_t",
    "I5": "||Xw - Xt q||^2 + lam||w-q||^2 = ||r_0||^2 + ((w_LS)_1-q_1)^2 Dt_1 + sum_{t>=2} eta_t^2 Dt_t",
    "I6": "u_N = Xw - Xt q (lhs ||u_N||, rhs ||Xw - Xt q||, gap ||u_N - (Xw - Xt q)|| / max)",
    None: "RTN has no error-feedback identity; only the empirical errors are reported",
}


def relative_gap(lhs, rhs) -> np.ndarray:
    r""":math:`|lhs - rhs| / \max(|lhs|, |rhs|)`, and 0 where both are 0 (exact for rationals)."""
    lhs, rhs = np.asarray(lhs), np.asarray(rhs)
    for name, a in (("lhs", lhs), ("rhs", rhs)):
        if a.dtype != object and a.dtype.kind not in "fiu":
            raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")
    try:
        np.broadcast_shapes(lhs.shape, rhs.shape)
    except ValueError:
        raise ValueError(
            f"lhs and rhs must broadcast together; got shapes {lhs.shape} and {rhs.shape}") from None
    num = np.abs(lhs - rhs)
    den = np.maximum(np.abs(lhs), np.abs(rhs))
    if num.dtype == object:
        return _ratio(num, den)
    with np.errstate(invalid="ignore", divide="ignore"):  # in the inputs' precision (float32 stays)
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def _ratio(res, scale) -> np.ndarray:
    """``res / scale``, 0 where both are 0 (exact for rationals), inf where only ``scale`` is
    (:mod:`ptqtheory.bounds` reads it too)."""
    res, scale = np.asarray(res), np.asarray(scale)
    if res.dtype == object or scale.dtype == object:
        return np.array([0 if d == 0 else r / d for r, d in zip(res.ravel(), scale.ravel(), strict=True)],
                        dtype=object).reshape(res.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, res / np.where(scale > 0, scale, 1.0), np.where(res > 0, np.inf, 0.0))


@dataclass(frozen=True, eq=False)
class PivotCheck:
    r"""I1 for the matrix whose pivots enter the identity (:math:`H`, or :math:`\tilde H`; statement and
    allowances: :func:`i1`), factored by QR of :math:`\hat X` (E3) or float64 Cholesky of the statistics.

    Attributes
    ----------
    D : ndarray (N,)
        Pivots from the factorization (processing order).
    D_projection : ndarray (N,) or None
        :math:`\|\hat X_t - \hat X_{>t} c^*\|^2 = \lambda + \min_c \|X_t - X_{>t}c\|^2 + \lambda\|c\|^2`
        (needs the data: ``None`` for a context of statistics).
    D_inverse : ndarray (N,) or None
        :math:`1/[(H_{\ge t,\ge t})^{-1}]_{11}` by solving with each trailing block of :math:`H`.
    gap_projection, gap_inverse : float or None
        Largest relative gap of each form against ``D`` (``None`` when not computed).
    bounds_hold : bool
        :math:`\lambda \le D_t \le \|X_t\|^2 + \lambda` for all t (to the slack of :func:`i1`).
    logdet_gap : float
        :math:`|\sum_t \log D_t - \log\det H|` (exact arithmetic: :math:`|\prod_t D_t - \det H|`).
    cond : float
        :math:`\kappa_2(H)` (infinite for exact inputs, where no tolerance is needed).
    """

    D: np.ndarray
    D_projection: np.ndarray | None
    D_inverse: np.ndarray | None
    gap_projection: float | None
    gap_inverse: float | None
    bounds_hold: bool
    logdet_gap: float
    cond: float

    def h_tolerance(self, tol: float = RTOL_IDENTITY) -> float:
        r"""``max(tol, 16 N eps kappa(H))`` (:func:`ptqtheory.tolerances.h_tolerance`)."""
        return h_tolerance(check_nonnegative_real("tol", tol), self.D.shape[0], self.cond)

    def holds(self, tol: float = RTOL_IDENTITY) -> bool:
        """Every I1 statement holds: projection form to ``tol``, H-forms to :meth:`h_tolerance`."""
        h_tol = self.h_tolerance(tol)
        return bool(
            self.bounds_hold
            and (self.gap_projection is None or self.gap_projection <= tol)
            and (self.gap_inverse is None or self.gap_inverse <= h_tol)
            and self.logdet_gap <= h_tol
        )


@dataclass(frozen=True, eq=False)
class StructureCheck:
    r"""A weight-space relation :math:`a = L\eta` per row (:math:`a = w - q`, or :math:`w_{LS} - q`).

    ``residual`` :math:`\|a - L\eta\|`, ``scale`` :math:`\|a\|` (both squared for exact inputs),
    ``gap`` their ratio, ``atol`` the rounding allowance of the residual (weight units).
    """

    residual: np.ndarray
    scale: np.ndarray
    gap: np.ndarray
    atol: np.ndarray


@dataclass(frozen=True, eq=False)
class IdentityCheck:
    r"""One identity evaluated on one run, per row.

    Attributes
    ----------
    label : str
        ``"I2"`` .. ``"I6"``.
    statement : str
    lhs, rhs : ndarray (n,)
        The two sides as computed (exact rationals for exact runs; I6's: :func:`i6`).
    gap : ndarray (n,)
        :math:`|lhs - rhs| / \max(|lhs|, |rhs|)` (I6: :math:`\|u_N - (Xw - \tilde Xq)\|` over the max).
    atol : ndarray (n,)
        The first-order rounding allowance of :math:`|lhs - rhs|`: the sum of ``allowance``.
    allowance : dict
        Its named terms (``"rounding"``, ``"formed_H"``, ``"refit"``, ``"r0"``, ``"first"``), so that
        two ways of obtaining the same context can be compared term by term.
    structure : StructureCheck or None
    """

    label: str
    statement: str
    lhs: np.ndarray
    rhs: np.ndarray
    gap: np.ndarray
    atol: np.ndarray
    allowance: dict
    structure: StructureCheck | None = None


def _identity(label, lhs, rhs, terms: dict, structure=None, gap=None) -> IdentityCheck:
    atol = sum(np.asarray(t, float) for t in terms.values())
    gap = relative_gap(lhs, rhs) if gap is None else gap
    return IdentityCheck(label, STATEMENT[label], lhs, rhs, gap, np.broadcast_to(atol, np.shape(lhs)).copy(),
                         terms, structure)


def _structure_check(ctx: RunContext, which: str, atol) -> StructureCheck:
    res, scale = ctx.structure(which)
    return StructureCheck(res, scale, _ratio(res, scale), atol)


def _iteration_allowance(ctx: RunContext):
    r"""The paper iteration's least-squares steps (E3; :func:`ptqtheory.tolerances.least_squares_allowance`)."""
    if ctx.run.method != "iteration" or ctx.exact:
        return 0.0
    return least_squares_allowance(ctx.eps, ctx.cond_H, ctx.L_fro, ctx.eta_norm, ctx.shape[1])


def i1(ctx: RunContext, full: bool | None = None) -> PivotCheck:
    r"""I1: the pivots of the feedback matrix (:math:`H`, or :math:`\tilde H` for Qronos).

    Statement: :math:`D_t = \|P^\perp_{\hat X_{>t}}\hat X_t\|^2 = 1/[(H_{\ge t,\ge t})^{-1}]_{11}`,
    :math:`\lambda \le D_t \le \|X_t\|^2 + \lambda` and :math:`\prod_t D_t = \det H`.

    Sides: the pivots ``D`` of the context's factorization against the projection form (from the data)
    and the inverse form (``full``; ``O(N^4)``, default when ``N <= 128``), and :math:`\log\det H`.

    Allowance: the projection form is held to ``rtol`` (1e-10 by default); the bounds on :math:`D_t`
    get :func:`~ptqtheory.tolerances.pivot_bounds_slack` (``16 eps N max diag(H)``, the factorization's
    backward error); the forms through the formed :math:`H`, :meth:`PivotCheck.h_tolerance` (E3:
    :math:`\epsilon\kappa(H)`). Exact inputs: no allowance.
    """
    D = ctx.factorization.D
    N = D.shape[0]
    full = (N <= 128) if full is None else bool(full)
    D_proj, D_inv = ctx.pivot_forms(full)
    gap_proj, gap_inv = (None if F is None else float(np.max(np.asarray(relative_gap(F, D), float),
                                                             initial=0.0)) for F in (D_proj, D_inv))
    col_sq = np.diag(ctx.gram_p)
    lam = ctx.lam
    if ctx.exact:
        bounds = all(lam <= d <= c + lam for d, c in zip(D, col_sq, strict=True))
    else:
        col_sq = np.asarray(col_sq, float)
        lam = float(lam)
        Df = np.asarray(D, float)
        slack = pivot_bounds_slack(N, float(np.max(col_sq, initial=0.0)) + lam)
        bounds = bool(np.all(Df >= lam - slack) and np.all(Df <= col_sq + lam + slack))
    return PivotCheck(D, D_proj, D_inv, gap_proj, gap_inv, bounds, ctx.logdet_gap, ctx.cond_H)


def _feedback(ctx: RunContext, label: str, lhs, extra: dict | None = None) -> IdentityCheck:
    r"""I2 or I3 with left side ``lhs``, right side :math:`\sum_t\eta_t^2D_t`, the structure relation
    :math:`w - q = L\eta` and the allowance terms ``"rounding"`` (and ``"statistics"``), then ``extra``.

    :math:`w - q` and :math:`L\eta` are formed with rounding :math:`\nu`, :math:`\|\nu\| \le`
    :func:`~ptqtheory.tolerances.structure_allowance` (``16 eps`` times :math:`\|w\| + \|q\| +
    \|L\|_F\|\eta\|`), and the identity is :math:`\|\hat X(w - q)\|^2 = \|\hat XL\eta\|^2` up to
    :math:`\nu`: :func:`~ptqtheory.tolerances.identity_allowance`, with :math:`\|\hat X\|_2 \le
    \|\hat X\|_F`. The paper iteration's least-squares error enters the structure relation only
    (:func:`~ptqtheory.tolerances.least_squares_allowance`).

    Statistics formed with float32 chunk products (the torch accumulator's ``gram="float32"``) add a
    ``"statistics"`` term (E4, :func:`~ptqtheory.tolerances.gram_statistics_allowance`); float64
    statistics' own rounding, :math:`\gamma_m(u_{64})`, is left to ``rtol``.
    """
    rhs = ctx.weighted
    base = structure_allowance(ctx.eps, ctx.w_q_norm, ctx.L_fro * ctx.eta_norm)
    terms = {"rounding": identity_allowance(ctx.xfh_norm, base, lhs, rhs)}
    if ctx.gram_rounding is not None and not ctx.exact:
        e_sq = np.asarray(_linalg.sq_norms(ctx.E_p, 1), float)
        terms["statistics"] = gram_statistics_allowance(*ctx.gram_rounding, float(np.sum(ctx.xf_col_sq)),
                                                        e_sq, ctx.shape[1])
    terms |= extra or {}
    return _identity(label, lhs, rhs, terms, _structure_check(ctx, "E", base + _iteration_allowance(ctx)))


def i2(ctx: RunContext) -> IdentityCheck:
    r"""I2 (OPTQ): :math:`\|X(w-q)\|^2 + \lambda\|w-q\|^2 = \sum_t \eta_t^2 D_t`, with
    :math:`w - q = L\eta` (docs/theory.md I2).

    Sides: the left from the data (:math:`\|Xw - Xq\|^2` measured, plus :math:`\lambda\|w-q\|^2`), the
    right from the run's :math:`\eta` and the context's pivots. Structure and allowance: :func:`_feedback`.
    """
    return _feedback(ctx, "I2", ctx.lhs_sq)


def i3(ctx: RunContext) -> IdentityCheck:
    r"""I3 (LDLQ): per row :math:`(\hat w - w)^TH(\hat w - w) = \sum_t\eta_t^2D_t`; summed over rows,
    :math:`\operatorname{tr}((\hat W - W)H(\hat W - W)^T) = \sum_{rows}\sum_t\eta_t^2D_t` (docs/theory.md
    I3), with :math:`w - q = L\eta`.

    Sides: the left is the quadratic form through the formed :math:`H` (the proxy loss LDLQ states),
    the right as for I2. Allowance: I2's, plus :func:`~ptqtheory.tolerances.formed_quadratic_allowance`
    (with :math:`\||X||e|\| \le \|X\|_F\|e\|`, within a small factor for a dense error).
    """
    formed = None if ctx.exact else formed_quadratic_allowance(
        ctx.eps, ctx.shape[1], ctx.m, ctx.abs_h_quadratic,
        float(np.sum(ctx.xf_col_sq)) * np.asarray(_linalg.sq_norms(ctx.E_p, 1), float))
    return _feedback(ctx, "I3", ctx.h_quadratic, None if formed is None else {"formed_H": formed})


def _qronos(ctx: RunContext, label: str, rhs, first=None) -> IdentityCheck:
    r"""I4/I5's common part: the left side, and the allowances.

    * ``rounding``: as I2's, for :math:`\hat Xw - \hat{\tilde X}q = r_0 + \hat{\tilde X}(w_{LS} - q)`
      read through both :math:`\hat X` and :math:`\hat{\tilde X}`: scale
      :math:`\|\hat X\|_F + \|\hat{\tilde X}\|_F`, sizes :math:`\|w\| + \|q\| + \|L\|_F\|\eta\| + \|w_{LS}\|`.
    * ``refit``: the certificate's own :math:`w_{LS}` (not the run's) moves the fitted values by
      ``eps * fitted`` (E3; :attr:`RunContext.ls_refit`: QR of the data or normal equations of statistics).
    * ``r0``: the rounding of :math:`\|r_0\|^2` itself when it was obtained as a difference of squared
      norms (statistics); 0 when :math:`r_0` was formed from the data.
    * ``first`` (I5): the refit error enters :math:`((w_{LS})_1 - q_1)^2\tilde D_1` directly
      (:func:`~ptqtheory.tolerances.qronos_first_allowance`).
    """
    lhs = ctx.lhs_sq
    ls_w, ls_out, r0_err = ctx.ls_refit
    eps = ctx.eps
    wls_norm = np.linalg.norm(np.asarray(ctx.W_ls, float), axis=1)
    l_eta = ctx.L_fro * ctx.eta_norm
    base = structure_allowance(eps, ctx.w_q_norm, l_eta, wls_norm)
    sides = np.sqrt(np.abs(np.asarray(lhs, float))) + np.sqrt(np.abs(np.asarray(rhs, float)))
    terms = {"rounding": identity_allowance(ctx.xh_norm + ctx.xfh_norm, base, lhs, rhs),
             "refit": eps * ls_out * sides, "r0": r0_err}
    structure = None
    if first is None:
        s_atol = structure_allowance(eps, ctx.w_q_norm, l_eta, wls_norm + ls_w) + _iteration_allowance(ctx)
        structure = _structure_check(ctx, "ls", s_atol)
    elif not ctx.exact:
        terms["first"] = qronos_first_allowance(eps, first, ls_w, float(ctx.factorization.D[0]))
    return _identity(label, lhs, rhs, terms, structure)


def i4(ctx: RunContext) -> IdentityCheck:
    r"""I4 (Qronos-LS, A4'): :math:`\|Xw - \tilde Xq\|^2 + \lambda\|w-q\|^2 = \|r_0\|^2 +
    \sum_t\eta_t^2\tilde D_t`, :math:`r_0 = \hat Xw - \hat{\tilde X}w_{LS}`, with
    :math:`w_{LS} - q = \tilde L\eta` (docs/theory.md I4).

    Sides: the left from the data, the right from :math:`\|r_0\|^2` (the certificate's own fit) and
    the run's :math:`\eta` with the pivots of :math:`\tilde H`. Allowance: :func:`_qronos`.
    """
    return _qronos(ctx, "I4", ctx.r0_sq + ctx.weighted)


def i5(ctx: RunContext) -> IdentityCheck:
    r"""I5 (Qronos, paper iteration A4): the left side of I4 equals
    :math:`\|r_0\|^2 + ((w_{LS})_1 - q_1)^2\tilde D_1 + \sum_{t\ge2}\eta_t^2\tilde D_t`
    (docs/theory.md I5, with the erratum's :math:`t = 1` term). No structure relation (the first step
    does not round :math:`w_{LS}`). Allowance: :func:`_qronos`, with the ``first`` term.
    """
    D = ctx.factorization.D
    first = ctx.W_ls[:, 0] - ctx.Q_p[:, 0]
    rhs = ctx.r0_sq + first * first * D[0] + _linalg.dot(ctx.eta_p[:, 1:] ** 2, D[1:])
    return _qronos(ctx, "I5", rhs, first=first)


def i6(ctx: RunContext) -> IdentityCheck:
    r"""I6 (GPFQ): :math:`u_N = Xw - \tilde Xq` (docs/theory.md I6).

    Sides: :math:`\|u_N\|` (the run's state) and :math:`\|Xw - \tilde Xq\|` (from the data); the gap is
    :math:`\|u_N - (Xw - \tilde Xq)\|` over the larger, a vector identity, not one of norms.
    Allowance: :math:`16\epsilon N(\|X\|_F\|w\| + \|\tilde X\|_F\|q\|)` (E1-E2,
    :func:`~ptqtheory.tolerances.gpfq_allowance`).
    """
    lhs, dist = ctx.gpfq_sides
    rhs = np.sqrt(np.asarray(ctx.err_sq, float))
    gap = _ratio(dist, np.maximum(lhs, rhs))
    xt_norm = float(np.sqrt(max(float(np.sum(ctx.xf_col_sq)), 0.0)))
    atol = gpfq_allowance(ctx.eps, ctx.shape[1], ctx.x_norm, np.linalg.norm(np.asarray(ctx.W, float), axis=1),
                          xt_norm, np.linalg.norm(np.asarray(ctx.Q, float), axis=1))
    return _identity("I6", lhs, rhs, {"rounding": atol}, gap=gap)


IDENTITIES = {"i2": i2, "i3": i3, "i4": i4, "i5": i5, "i6": i6}
"""The identity functions by the registry's names."""


@dataclass(frozen=True, eq=False)
class Certificate:
    r"""Per-row certificate of one run (the identities: :func:`i1` .. :func:`i6`).

    ``identity_gap`` is the plain relative gap. In float64 the sides also differ by rounding (the run's
    :math:`x_t` and the grid point :math:`q_t = \delta(k - z)` each err by about :math:`\epsilon(|w| + |q|)`),
    bounded to first order by ``identity_atol`` (``structure_atol`` for :math:`w - q = L\eta`):
    :meth:`holds` accepts a row when :math:`|lhs - rhs| \le rtol \max(|lhs|,|rhs|) + atol`, as
    ``numpy.isclose`` does. The atol is negligible (about :math:`16\epsilon|w|/\delta` relative) unless
    a row's error is itself at rounding level (weights already on the grid), where the plain relative
    gap compares noise with noise. In exact arithmetic every atol and every gap is 0.

    Attributes
    ----------
    identity : str or None
        ``"I2"``..``"I6"``; ``None`` for RTN.
    identity_lhs, identity_rhs, identity_gap, identity_atol : ndarray (n,)
        The two sides per row, their relative gap, and the float64 rounding allowance.
    structure_residual, structure_scale, structure_gap, structure_atol : ndarray (n,) or None
        :class:`StructureCheck`'s fields: OPTQ, LDLQ, and A4' (:math:`w_{LS}` in place of :math:`w`).
    pivot_check : PivotCheck or None
        I1 for :math:`H` (or :math:`\tilde H` for Qronos).
    err_l2, err_inf : ndarray (n,)
        :math:`\|Xw - \tilde Xq\|_2` and :math:`\|\cdot\|_\infty` per row (:math:`\tilde X = X`
        unless the run used quantized inputs); ``err_inf`` is NaN where only statistics were given.
    weight_err_inf : ndarray (n,)
        :math:`\|w - q\|_\infty`.
    n_clipped : ndarray (n,)
        Clipped entries per row.
    transformed : bool
        The run used incoherence processing; identities are in the transformed coordinates.
    skipped_bounds : tuple of str
        Bound labels that apply but could not be evaluated from what was given (a torch run certified
        from statistics has no per-sample data: B5, B10.sup); a report lists them next to the others.
    identity_check : IdentityCheck or None
        The identity's typed result (with the named terms of the allowance).
    """

    algorithm: str
    variant: str
    identity: str | None
    statement: str
    identity_lhs: np.ndarray | None
    identity_rhs: np.ndarray | None
    identity_gap: np.ndarray | None
    identity_atol: np.ndarray | None
    structure_gap: np.ndarray | None
    structure_scale: np.ndarray | None
    structure_atol: np.ndarray | None
    structure_residual: np.ndarray | None
    pivot_check: PivotCheck | None
    err_l2: np.ndarray
    err_inf: np.ndarray
    weight_err_inf: np.ndarray
    n_clipped: np.ndarray
    bounds: list = field(default_factory=list)
    transformed: bool = False
    skipped_bounds: tuple = ()
    identity_check: IdentityCheck | None = None

    @property
    def pivots(self) -> PivotCheck | None:
        """Old name of :attr:`pivot_check` (a :class:`PivotCheck`, not a ``Pivots``)."""
        return self.pivot_check

    def identity_holds(self, rtol: float = RTOL_IDENTITY) -> np.ndarray:
        r"""Per row: :math:`|lhs - rhs| \le rtol \max(|lhs|, |rhs|) + atol` (and the structure relation)."""
        rtol = check_nonnegative_real("rtol", rtol)
        if self.identity is None:
            return np.ones(self.err_l2.shape, dtype=bool)
        lhs = np.asarray(self.identity_lhs, dtype=float)
        rhs = np.asarray(self.identity_rhs, dtype=float)
        if self.identity == "I6":  # lhs, rhs are norms; the gap is ||u_N - (Xw - Xt q)|| / max
            diff = np.asarray(self.identity_gap, float) * np.maximum(lhs, rhs)
        else:
            diff = np.abs(lhs - rhs)
        ok = diff <= rtol * np.maximum(np.abs(lhs), np.abs(rhs)) + np.asarray(self.identity_atol, float)
        if self.structure_residual is not None:
            res = np.asarray(self.structure_residual, float)
            scale = np.asarray(self.structure_scale, float)
            ok &= res <= rtol * scale + np.asarray(self.structure_atol, float)
        return ok

    def holds(self, rtol: float = RTOL_IDENTITY) -> bool:
        """Every row's identity, the structure relation and I1 hold at ``rtol`` (see class notes)."""
        rtol = check_nonnegative_real("rtol", rtol)
        piv_ok = self.pivot_check is None or self.pivot_check.holds(rtol)
        return bool(np.all(self.identity_holds(rtol)) and piv_ok)

    @property
    def violations(self) -> list:
        """Bound checks that applied to some row and failed there (counterexamples)."""
        return [b for b in self.bounds if b.violations]

    def bound(self, label: str):
        """The bound check with this label (e.g. ``"B1"``), or ``KeyError``."""
        for b in self.bounds:
            if b.label == label:
                return b
        raise KeyError(f"no bound {label!r} for this run; have {[b.label for b in self.bounds]}")

    def to_records(self) -> list[dict]:
        """Tidy rows for CSV/JSON: one per row for the identity (``value`` = right side, ``empirical`` =
        left side), then one per row and bound (``holds`` is ``None`` where the bound's hypotheses failed)."""
        recs = []
        if self.identity is not None:
            ok = self.identity_holds()
            # assemble sets the two sides and the gap together with the identity.
            assert (self.identity_lhs is not None and self.identity_rhs is not None
                    and self.identity_gap is not None)
            for i in range(len(self.err_l2)):
                recs.append({
                    "row": i, "quantity": self.identity, "bounds": self.statement, "kind": "identity",
                    "value": float(self.identity_rhs[i]), "empirical": float(self.identity_lhs[i]),
                    "ratio": float(self.identity_gap[i]), "applies": True, "holds": bool(ok[i]),
                    "failed_hypotheses": "", "p": None, "reference": "THEORY.md " + self.identity,
                })
        for b in self.bounds:
            recs.extend(b.records())
        for r in recs:
            r["algorithm"] = f"{self.algorithm}[{self.variant}]"
        return recs

    @property
    def resolved(self) -> np.ndarray:
        """Rows whose identity is resolved (:data:`~ptqtheory.tolerances.RESOLVED`)."""
        if self.identity is None:
            return np.ones(self.err_l2.shape, dtype=bool)
        size = np.maximum(np.abs(np.asarray(self.identity_lhs, float)),
                          np.abs(np.asarray(self.identity_rhs, float)))
        return np.asarray(self.identity_atol, float) <= RESOLVED * size

    @property
    def max_gap(self) -> float:
        """Largest plain relative gap: identity and structure on :attr:`resolved` rows, I1's projection form."""
        gaps = [0.0]
        keep = self.resolved
        for g in (self.identity_gap, self.structure_gap):
            if g is not None and np.any(keep):
                gaps.append(float(np.max(np.asarray(g, dtype=float)[keep])))
        if self.pivot_check is not None and self.pivot_check.gap_projection is not None:
            gaps.append(self.pivot_check.gap_projection)
        return max(gaps)

    @property
    def total_lhs(self):
        """Sum over rows of the left side (I3's trace form)."""
        return None if self.identity_lhs is None else np.sum(self.identity_lhs)

    @property
    def total_rhs(self):
        return None if self.identity_rhs is None else np.sum(self.identity_rhs)


def check_options(p, full_pivot_check, bounds):
    """The options of ``certify`` (both backends), checked before any work."""
    p = check_probability("p", p)
    if full_pivot_check is not None:
        full_pivot_check = check_bool("full_pivot_check", full_pivot_check)
    return p, full_pivot_check, check_bool("bounds", bounds)


def assemble(ctx: RunContext, *, full_pivot_check: bool | None = None, checks: list | None = None,
             skipped: tuple = ()) -> Certificate:
    r"""The certificate of ``ctx.run`` (numpy and torch alike): the identity its registry row names, I1
    of its factorization, the empirical errors, and the bound ``checks`` (:func:`ptqtheory.bounds.evaluate`)."""
    row = ctx.entry
    run = ctx.run
    n = ctx.shape[0]
    err_l2 = np.sqrt(np.maximum(np.asarray(ctx.err_sq, dtype=float), 0.0))  # statistics may round below 0
    err_inf = np.full(n, np.nan) if ctx.err_inf is None else np.asarray(ctx.err_inf, float)
    common = dict(
        algorithm=run.algorithm, variant=run.variant, err_l2=err_l2, err_inf=err_inf,
        weight_err_inf=np.max(np.abs(np.asarray(ctx.E, dtype=float)), axis=1, initial=0.0),
        n_clipped=np.count_nonzero(np.atleast_2d(ctx.clipped_p), axis=1),
        bounds=list(checks or []), skipped_bounds=tuple(skipped),
    )
    name = row.identity(run.variant)  # None: RTN, no identity, no I1
    pcheck = i1(ctx, full_pivot_check) if name is not None and row.factor is not None else None
    check = None if name is None else IDENTITIES[name](ctx)
    s = None if check is None else check.structure
    # getattr(None, k, None) is None: the fields of a missing identity or structure relation
    parts: dict = {f"identity_{k}": getattr(check, k, None) for k in ("lhs", "rhs", "gap", "atol")}
    parts |= {f"structure_{k}": getattr(s, k, None) for k in ("gap", "scale", "atol", "residual")}
    return Certificate(identity=None if check is None else check.label,
                       statement=STATEMENT[None] if check is None else check.statement,
                       pivot_check=pcheck, identity_check=check, **parts, **common)
