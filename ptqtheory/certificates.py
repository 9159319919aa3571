r"""Exact a-posteriori certificates: both sides of THEORY.md I1-I6, per row, from a run and the data.

An identity is checked by computing its left side *from the data* (``X``, ``Xt``, the weights and
the quantized weights) and its right side from what the run recorded (the rounding errors
:math:`\eta_t`) and the pivots :math:`D_t` of the factorization; the relative gap
:math:`|lhs - rhs| / \max(|lhs|, |rhs|)` is ~1e-15..1e-10 in float64 and exactly 0 in rationals.

===========  ==================================================================================
identity     statement (columns in processing order)
===========  ==================================================================================
I1           :math:`D_t = \|P^\perp_{\hat X_{>t}}\hat X_t\|^2 = 1/[(H_{\ge t,\ge t})^{-1}]_{11}`,
             :math:`\lambda \le D_t \le \|X_t\|^2 + \lambda`, :math:`\prod_t D_t = \det H`
I2 (OPTQ)    :math:`w - q = L\eta`, :math:`\|X(w-q)\|^2 + \lambda\|w-q\|^2 = \sum_t \eta_t^2 D_t`
I3 (LDLQ)    :math:`(\hat w - w)^T H (\hat w - w) = \sum_t \eta_t^2 D_t` per row (I3 sums rows)
I4 (A4')     :math:`\|Xw-\tilde Xq\|^2 + \lambda\|w-q\|^2 = \|r_0\|^2 + \sum_t\eta_t^2\tilde D_t`
I5 (A4)      same left side :math:`= \|r_0\|^2 + ((w_{LS})_1-q_1)^2\tilde D_1 + \sum_{t\ge2}\eta_t^2\tilde D_t`
I6 (GPFQ)    :math:`u_N = Xw - \tilde X q`
===========  ==================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from . import _linalg
from ._context import RunContext
from ._validate import as_matrix, check_bool, check_nonnegative_real, check_probability, is_exact
from .records import Run
from .tolerances import (
    RESOLVED,
    RTOL_IDENTITY,
    allowance_unit,
    formed_quadratic_allowance,
    gpfq_allowance,
    h_tolerance,
    identity_allowance,
    least_squares_allowance,
    pivot_bounds_slack,
    qr_refit_allowance,
    qronos_first_allowance,
    structure_allowance,
)

__all__ = ["Certificate", "PivotCheck", "certify", "relative_gap"]

IDENTITY = {"optq": "I2", "ldlq": "I3", "gpfq": "I6", "rtn": None}
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
    if lhs.dtype == object or rhs.dtype == object:
        return np.array([0 if d == 0 else nu / d for nu, d in zip(num.ravel(), den.ravel(), strict=True)],
                        dtype=object).reshape(num.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


@dataclass(frozen=True, eq=False)
class PivotCheck:
    r"""THEORY.md I1 for the matrix whose pivots enter the identity (:math:`H`, or :math:`\tilde H`).

    The pivots ``D`` come from a QR factorization of :math:`\hat X` (relative error about
    :math:`\epsilon\sqrt{\kappa(H)}`). The projection form is evaluated from the data too and must
    agree to ~1e-10. The inverse form and :math:`\log\det H` can only be evaluated through the
    formed :math:`H`, whose small eigenvalues carry a relative error of about
    :math:`\epsilon\,\kappa(H)`; they are held to :meth:`h_tolerance` instead.

    Attributes
    ----------
    D : ndarray (N,)
        Pivots from the factorization (processing order).
    D_projection : ndarray (N,) or None
        :math:`\|\hat X_t - \hat X_{>t} c^*\|^2 = \lambda + \min_c \|X_t - X_{>t}c\|^2 + \lambda\|c\|^2`.
    D_inverse : ndarray (N,) or None
        :math:`1/[(H_{\ge t,\ge t})^{-1}]_{11}` by solving with each trailing block of :math:`H`.
    gap_projection, gap_inverse : float or None
        Largest relative gap of each form against ``D`` (``None`` when not computed).
    bounds_hold : bool
        :math:`\lambda \le D_t \le \|X_t\|^2 + \lambda` for all t (slack
        :func:`ptqtheory.tolerances.pivot_bounds_slack`, ``16 eps N max diag(H)``, in float64; none in
        exact arithmetic).
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
        r"""``max(tol, 16 N eps kappa(H))``: what float64 can promise for forms evaluated through H
        (:func:`ptqtheory.tolerances.h_tolerance`)."""
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
class Certificate:
    r"""Per-row certificate of one run (see the module table for the identities).

    How to read a gap. ``identity_gap`` is the plain relative gap. In float64 the two sides of an
    identity also differ by rounding: the run's :math:`x_t` and the grid point
    :math:`q_t = \delta(k - z)` each carry an error of about :math:`\epsilon(|w| + |q|)`. A
    first-order bound of that difference is ``identity_atol`` (``structure_atol`` for
    :math:`w - q = L\eta`). :meth:`holds` accepts a row when
    :math:`|lhs - rhs| \le rtol \max(|lhs|,|rhs|) + atol`, as ``numpy.isclose`` does. The atol is
    negligible, about :math:`16\epsilon|w|/\delta` relative, unless a row's error is itself at
    rounding level (weights already on the grid), where the plain relative gap compares noise with noise.
    In exact arithmetic every atol is 0 and every gap is exactly 0.

    Attributes
    ----------
    identity : str or None
        ``"I2"``..``"I6"``; ``None`` for RTN.
    identity_lhs, identity_rhs, identity_gap, identity_atol : ndarray (n,)
        The two sides per row, their relative gap, and the float64 rounding allowance.
    structure_residual, structure_scale, structure_gap, structure_atol : ndarray (n,) or None
        :math:`\|(w-q) - L\eta\|`, :math:`\|w-q\|`, their ratio, and the rounding allowance of the
        residual (weight units); OPTQ, LDLQ, and A4' with :math:`w_{LS}` in place of :math:`w`.
    pivots : PivotCheck or None
        I1 for :math:`H` (or :math:`\tilde H` for Qronos).
    err_l2, err_inf : ndarray (n,)
        :math:`\|Xw - \tilde Xq\|_2` and :math:`\|\cdot\|_\infty` per row (:math:`\tilde X = X`
        unless the run used quantized inputs).
    weight_err_inf : ndarray (n,)
        :math:`\|w - q\|_\infty`.
    n_clipped : ndarray (n,)
        Clipped entries per row.
    transformed : bool
        The run used incoherence processing; identities are in the transformed coordinates.
    skipped_bounds : tuple of str
        Bound labels that apply to the run but could not be evaluated from what was given (a torch
        run certified from statistics has no per-sample data: B5, B10.sup). Never silent: a report
        lists them next to the bounds that were checked.
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
    pivots: PivotCheck | None
    err_l2: np.ndarray
    err_inf: np.ndarray
    weight_err_inf: np.ndarray
    n_clipped: np.ndarray
    bounds: list = field(default_factory=list)
    transformed: bool = False
    skipped_bounds: tuple = ()

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
        piv_ok = self.pivots is None or self.pivots.holds(rtol)
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
        """Tidy rows (row, quantity, value, empirical, holds, ...) for CSV/JSON.

        One record per row for the identity (``value`` = right side, ``empirical`` = left side),
        then one per row and bound (``holds`` is ``None`` where the bound's hypotheses failed).
        """
        recs = []
        if self.identity is not None:
            ok = self.identity_holds()
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
        """Rows whose identity sides are far above float64 rounding (allowance <= RESOLVED = 1e-3 of them).

        On the other rows (a row already on the grid, say) both sides are rounding noise and the
        plain relative gap means nothing; :meth:`identity_holds` judges them by the allowance.
        """
        if self.identity is None:
            return np.ones(self.err_l2.shape, dtype=bool)
        size = np.maximum(np.abs(np.asarray(self.identity_lhs, float)),
                          np.abs(np.asarray(self.identity_rhs, float)))
        return np.asarray(self.identity_atol, float) <= RESOLVED * size

    @property
    def max_gap(self) -> float:
        """Largest plain relative gap over :attr:`resolved` rows (identity and structure relation),
        and of I1's projection form."""
        gaps = [0.0]
        keep = self.resolved
        for g in (self.identity_gap, self.structure_gap):
            if g is not None and np.any(keep):
                gaps.append(float(np.max(np.asarray(g, dtype=float)[keep])))
        if self.pivots is not None and self.pivots.gap_projection is not None:
            gaps.append(self.pivots.gap_projection)
        return max(gaps)

    @property
    def total_lhs(self):
        """Sum over rows of the left side (I3's trace form)."""
        return None if self.identity_lhs is None else np.sum(self.identity_lhs)

    @property
    def total_rhs(self):
        return None if self.identity_rhs is None else np.sum(self.identity_rhs)


def _pivot_check(piv, Hp, Xhp, lam, G0p, full: bool) -> PivotCheck:
    D = piv.D
    N = D.shape[0]
    exact = is_exact(Hp)
    D_proj = D_inv = None
    gap_proj = gap_inv = None
    if full:
        D_proj = _linalg.zeros_like(D)
        D_inv = _linalg.zeros_like(D)
        for t in range(N):
            c = _linalg.lstsq(Xhp[:, t + 1 :], Xhp[:, t])
            r = Xhp[:, t] - (_linalg.dot(Xhp[:, t + 1 :], c) if t + 1 < N else 0)
            D_proj[t] = np.sum(r * r)
            e1 = _linalg.zeros_like(D, (N - t, 1))
            e1[0, 0] = 1
            sol = _linalg.lstsq(Hp[t:, t:], e1) if exact else np.linalg.solve(Hp[t:, t:], e1)
            D_inv[t] = 1 / sol[0, 0]
        gap_proj = float(np.max(np.asarray(relative_gap(D_proj, D), float)))
        gap_inv = float(np.max(np.asarray(relative_gap(D_inv, D), float)))
    col_sq = np.diag(G0p)
    if exact:
        bounds = all(lam <= d <= c + lam for d, c in zip(D, col_sq, strict=True))
        import sympy

        logdet_gap = float(abs(np.prod(D) - sympy.Matrix(Hp.tolist()).det()))
        cond = float("inf")
    else:
        slack = pivot_bounds_slack(N, float(np.max(col_sq)) + lam)
        bounds = bool(np.all(D >= lam - slack) and np.all(D <= col_sq + lam + slack))
        sign, logdet = np.linalg.slogdet(Hp)
        logdet_gap = float(abs(np.sum(np.log(D)) - logdet)) if sign > 0 else float("inf")
        cond = _cond(Hp, piv)
    return PivotCheck(D, D_proj, D_inv, gap_proj, gap_inv, bounds, logdet_gap, cond)


def _cond(Hp: np.ndarray, piv) -> float:
    """kappa(H): exact 2-norm value (SVD) up to N = 128, else LAPACK's 1-norm estimate from the
    factor in hand (within a small factor of kappa_2; it only scales tolerances)."""
    N = Hp.shape[0]
    if N <= 128:
        return float(np.linalg.cond(Hp))
    Lrev = (piv.U1 * np.sqrt(piv.D)[None, :])[::-1, ::-1]  # J H J = Lrev Lrev^T
    rcond, info = scipy.linalg.lapack.dpocon(
        np.asfortranarray(Lrev), float(np.abs(Hp).sum(0).max()), uplo="L"
    )
    return float("inf") if info != 0 or rcond == 0 else float(1.0 / rcond)


def _row_dot(A, B):
    return np.sum(A * B, axis=1)



def _norms(A) -> np.ndarray:
    return np.linalg.norm(np.asarray(A, dtype=float), axis=-1)


def _fro(A) -> float:
    return float(np.linalg.norm(np.asarray(A, dtype=float)))


def certify(
    run: Run, X, Xt=None, p: float = 1e-3, full_pivot_check: bool | None = None,
    bounds: bool = True, *, samples=None,
) -> Certificate:
    r"""Certificate of ``run`` on the calibration data: identities I1-I6 and bounds B1-B12.

    Parameters
    ----------
    run : Run
        A record returned by one of the algorithms.
    X : array_like, shape (m, N)
        The float-model inputs the run was computed with.
    Xt : array_like, shape (m, N), optional
        The quantized-model inputs (required for Qronos and GPFQ).
    p : float
        Failure probability of the high-probability bounds (B4-B6, B8 stochastic, B10).
    full_pivot_check : bool, optional
        Compute I1's projection and inverse forms of every pivot (``O(N^4)``); default when
        ``N <= 128``. The determinant and the bounds on :math:`D_t` are always checked.
    bounds : bool
        Also evaluate every a-priori bound that applies to the algorithm (:mod:`ptqtheory.bounds`).
    samples : callable, optional
        Torch runs certified from statistics or streamed batches only: ``samples()`` returns a fresh
        pass over the same data, read batch by batch for the per-sample bounds B5 and B10.sup
        (:func:`ptqtheory.torch_backend.certify`). Numpy runs always read the data whole.

    Returns
    -------
    Certificate
    """
    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run returned by an algorithm; got {type(run).__name__}")
    p, full_pivot_check, bounds = _check_options(p, full_pivot_check, bounds)
    if X is None:
        raise ValueError("X is required: the calibration inputs the run was computed with, shape (m, N)")
    if run.backend == "torch":
        from .torch_backend import certify as _torch_certify

        return _torch_certify(run, X, Xt, p, full_pivot_check, bounds, samples=samples)
    if samples is not None:
        raise ValueError("samples is for torch runs certified from statistics; a numpy run's certificate "
                         "reads the data X (and Xt) whole: leave samples out")
    if run.transform is not None:
        V = run.transform.V
        Xv = as_matrix("X", X, V.shape[0]) @ V.T
        Xtv = None if Xt is None else as_matrix("Xt", Xt, V.shape[0]) @ V.T
        inner = certify(run.inner, Xv, Xtv, p, full_pivot_check, bounds)
        return Certificate(**{**inner.__dict__, "transformed": True})

    from . import bounds as _bounds

    # The run's own factorization (OPTQ, LDLQ) is reused, not recomputed: I1 below checks it against
    # H formed from X, and I2/I3 compare its pivots with the error measured on X. Qronos refits w_LS
    # from a QR of the data, which also gives the pivots.
    reuse = run.pivots if run.algorithm in ("optq", "ldlq") else None
    ctx = RunContext.build(run, X, Xt, piv=reuse)
    exact = ctx.exact
    W, Q, E = ctx.W, ctx.Q, ctx.E
    N = W.shape[1]
    out = ctx.out
    err_sq = ctx.err_sq
    err_l2 = np.sqrt(np.asarray(err_sq, dtype=float))
    err_inf = np.max(np.abs(np.asarray(out, dtype=float)), axis=1)
    weight_err_inf = np.max(np.abs(np.asarray(E, dtype=float)), axis=1)
    n_clipped = np.count_nonzero(np.atleast_2d(run.clipped), axis=1)
    full = (N <= 128) if full_pivot_check is None else bool(full_pivot_check)
    # First-order float64 rounding allowance (Certificate notes; ptqtheory.tolerances): 16 eps
    # times the sizes involved, 0 in exact arithmetic.
    eps = allowance_unit("exact" if exact else "float64")
    w_q = _norms(W) + _norms(Q)
    checks = _bounds.evaluate(ctx, p) if bounds else []
    common = dict(err_l2=err_l2, err_inf=err_inf, weight_err_inf=weight_err_inf,
                  n_clipped=n_clipped, algorithm=run.algorithm, variant=run.variant, bounds=checks)
    none = dict(structure_gap=None, structure_scale=None, structure_atol=None, structure_residual=None)

    if run.algorithm == "rtn":
        return Certificate(identity=None, statement=STATEMENT[None], identity_lhs=None,
                           identity_rhs=None, identity_gap=None, identity_atol=None,
                           pivots=None, **none, **common)
    if run.algorithm == "gpfq":
        u = np.atleast_2d(run.residual)
        lhs = np.sqrt(np.asarray(_row_dot(u, u), dtype=float))
        diff = u - out
        gap_num = np.sqrt(np.asarray(_row_dot(diff, diff), dtype=float))
        den = np.maximum(lhs, err_l2)
        gap = np.where(den > 0, gap_num / np.where(den > 0, den, 1.0), 0.0)
        atol = gpfq_allowance(eps, N, _fro(ctx.X), _norms(W), _fro(ctx.Xt), _norms(Q))
        return Certificate(identity="I6", statement=STATEMENT["I6"], identity_lhs=lhs,
                           identity_rhs=err_l2, identity_gap=gap, identity_atol=atol,
                           pivots=None, **none, **common)

    piv = ctx.piv
    Hp = ctx.Hf_p
    pcheck = _pivot_check(piv, Hp, ctx.Xfh if full else None, ctx.lam, ctx.Gram_p, full)
    D = piv.D
    eta_p = ctx.eta_p
    weighted = ctx.weighted
    E_p = E[:, ctx.order]
    lhs_data = ctx.lhs_sq
    L_eta = _fro(piv.L) * _norms(eta_p)
    xh_norm = ctx.xfh_norm

    if run.algorithm in ("optq", "ldlq"):
        lhs = _row_dot(_linalg.dot(E_p, Hp), E_p) if run.algorithm == "ldlq" else lhs_data
        res, scale = _structure(E_p, piv.L, eta_p)
        # The paper iteration solves a least-squares problem per step (E3 of ptqtheory.tolerances).
        ls = least_squares_allowance(eps, pcheck.cond, _fro(piv.L), _norms(eta_p), N) \
            if run.method == "iteration" and not exact else 0.0
        s_atol = structure_allowance(eps, w_q, L_eta) + ls
        # |lhs - rhs| <= ||X_hat nu|| (||X_hat e|| + ||X_hat L eta||), nu the rounding of e - L eta;
        # the least-squares error lies along directions X_hat shrinks: the identity does not see it.
        atol = identity_allowance(xh_norm, structure_allowance(eps, w_q, L_eta), lhs, weighted)
        if run.algorithm == "ldlq" and not exact:  # I3 reads the formed H
            atol = atol + formed_quadratic_allowance(eps, N, np.abs(E_p), np.abs(Hp),
                                                     np.abs(np.asarray(ctx.X, float)[:, ctx.order]))
        ident = IDENTITY[run.algorithm]
        return Certificate(identity=ident, statement=STATEMENT[ident], identity_lhs=lhs,
                           identity_rhs=weighted, identity_gap=relative_gap(lhs, weighted),
                           identity_atol=atol, structure_gap=_ratio(res, scale),
                           structure_scale=scale, structure_atol=s_atol, structure_residual=res,
                           pivots=pcheck, **common)

    # Qronos: r_0 = Xh w - Xth w_LS, with w_LS fitted from the data (not read from the run).
    W_ls = ctx.W_ls
    r0_sq = _row_dot(ctx.r0, ctx.r0)
    # w_LS solves a least-squares problem, once in the run and once here. The two solutions may
    # differ by its forward error, eps (kappa ||w_LS|| + kappa^2 ||r_0|| / ||Xt_hat||) with
    # kappa = sqrt(cond(Ht)) (the structure relation reads w_LS itself); the fitted values
    # Xt_hat w_LS, which the identity reads, only by about eps kappa ||X_hat w||.
    ls_w = ls_out = 0.0
    if not exact:
        ls_w, ls_out = qr_refit_allowance(
            pcheck.cond, _norms(W_ls), np.sqrt(np.asarray(r0_sq, float)),
            xh_norm / np.sqrt(N),  # ||Xt_hat||_2 >= ||Xt_hat||_F / sqrt(N)
            _norms(_linalg.dot(W[:, ctx.order], ctx.Xh.T)))
    ls_steps = least_squares_allowance(eps, pcheck.cond, _fro(piv.L), _norms(eta_p), N) \
        if run.method == "iteration" and not exact else 0.0
    s_atol = structure_allowance(eps, w_q, L_eta, _norms(W_ls) + ls_w) + ls_steps
    if run.variant == "ls":
        rhs = r0_sq + weighted
        res, scale = _structure(W_ls - Q[:, ctx.order], piv.L, eta_p)
        ident = "I4"
        structure = dict(structure_gap=_ratio(res, scale), structure_scale=scale, structure_atol=s_atol,
                         structure_residual=res)
    else:
        first = W_ls[:, 0] - Q[:, ctx.order][:, 0]
        rhs = r0_sq + first * first * D[0] + _linalg.dot(eta_p[:, 1:] ** 2, D[1:])
        ident, structure = "I5", none
    sides = np.sqrt(np.abs(np.asarray(lhs_data, float))) + np.sqrt(np.abs(np.asarray(rhs, float)))
    atol = ((ctx.xh_norm + xh_norm) * structure_allowance(eps, w_q, L_eta, _norms(W_ls))
            + eps * ls_out) * sides
    if run.variant != "ls" and not exact:
        atol = atol + qronos_first_allowance(eps, first, ls_w, float(D[0]))
    return Certificate(identity=ident, statement=STATEMENT[ident], identity_lhs=lhs_data,
                       identity_rhs=rhs, identity_gap=relative_gap(lhs_data, rhs), identity_atol=atol,
                       pivots=pcheck, **structure, **common)


def _check_options(p, full_pivot_check, bounds):
    """The options of :func:`certify` (both backends), checked before any work."""
    p = check_probability("p", p)
    if full_pivot_check is not None:
        full_pivot_check = check_bool("full_pivot_check", full_pivot_check)
    return p, full_pivot_check, check_bool("bounds", bounds)


def _structure(E_p, L, eta_p):
    r"""Per row :math:`\|(w-q) - L\eta\|` and :math:`\|w - q\|` (squared for exact inputs)."""
    resid = E_p - _linalg.dot(eta_p, L.T)  # rows: (w - q) - L eta
    num = np.asarray(_row_dot(resid, resid))
    den = np.asarray(_row_dot(E_p, E_p))
    if num.dtype == object:
        return num, den
    return np.sqrt(num), np.sqrt(den)


def _ratio(res, scale) -> np.ndarray:
    """``res / scale``, 0 where both are 0 (exact for rationals)."""
    if np.asarray(res).dtype == object:
        return np.array([0 if d == 0 else r / d for r, d in zip(res, scale, strict=True)], dtype=object)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, res / np.where(scale > 0, scale, 1.0), np.where(res > 0, np.inf, 0.0))
