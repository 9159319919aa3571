r"""A-priori bounds B1-B12 of THEORY.md, checked against a run: value, empirical, hypotheses, holds.

Each ``b*`` function takes a :class:`~ptqtheory._context.RunContext` (built by :func:`ptqtheory.certify`,
or :func:`context`) and returns :class:`BoundCheck` records, one per form of the bound (e.g. the sharp
``B1`` and the data-only ``B1.data``), with the hypotheses it needs and whether each held *per row*; where
one fails nothing is claimed (``holds`` is ``None`` in :meth:`BoundCheck.records`). Proofs: ``docs/theory.md``.

Steps may differ per column (groups): every :math:`\delta^2 D_t` below is :math:`\delta_t^2 D_t`, with
:math:`\delta_t` the step the run used at step :math:`t` (``run.grid``). On a
:class:`~ptqtheory.Alphabet`, :math:`\delta_t` is the row's largest gap :math:`s_iG` (every bound holds
with it, docs/theory.md section 7); ``B1.local`` reads the local gap of each :math:`x_t`, and B8 and
L1 (statements about a uniform grid) fail their hypothesis "uniform grid".

Comparisons allow rounding: ``empirical <= value * (1 + RTOL_BOUND) + atol`` (``RTOL_BOUND = 1e-9``),
``atol`` a first-order allowance (``16 eps`` times the sizes involved, as for the identities, ``eps``
of the run's working precision: float32 for float32 torch runs) from the error model of
:mod:`ptqtheory.tolerances`: the rounding of the weights the bound reads, grid slack included
(:func:`~ptqtheory.tolerances.weight_allowance`), plus that of the bound's own value when its terms
may cancel (:func:`~ptqtheory.tolerances.evaluation_allowance`: B1 and B9 can be exactly 0, e.g. at a
midpoint with :math:`X = 0`, and then compute to about :math:`\pm10^{-17}`).

Statistics-only contexts (:meth:`RunContext.from_statistics`, torch runs certified from a
``TorchAccumulator``) evaluate every bound that needs only :math:`H`, :math:`D`, :math:`L`, the steps
and the rounded values; the per-sample forms (B5, B10.sup; B5.uniform too when
:math:`\|Xw - \tilde Xq\|_\infty` was not measured) are left out and named by :func:`unavailable`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import cast

import numpy as np
import scipy.linalg

from . import _linalg
from ._context import RunContext
from ._validate import check_probability
from .identities import _ratio
from .lower_bounds import l1_bound, mean_error, optimality_ratio, ratio_floor
from .records import Run
from .tolerances import RTOL_BOUND, evaluation_allowance, singular_threshold, weight_allowance

__all__ = [
    "BoundCheck",
    "Hypothesis",
    "alphabet_size",
    "b1",
    "b2",
    "b3",
    "b4",
    "b5",
    "b6",
    "b7",
    "b8",
    "b9",
    "b10",
    "b11",
    "b12",
    "conditional_variance",
    "context",
    "evaluate",
    "owq_bounds",
    "owq_kept",
    "per_sample",
    "rtn_bounds",
    "unavailable",
]

REF = "Zhang, Zhang, Colbert & Saab, arXiv 2508.04853"


@dataclass(frozen=True, eq=False)
class Hypothesis:
    """One hypothesis of a bound and whether it held (a bool, or one per row)."""

    name: str
    holds: object
    detail: str = ""

    def per_row(self, n: int) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.holds, dtype=bool), (n,))


@dataclass(frozen=True, eq=False)
class BoundCheck:
    r"""One bound evaluated on one run, per row.

    Attributes
    ----------
    label : str
        THEORY.md label and form, e.g. ``"B1"``, ``"B1.data"``, ``"B5.uniform"``.
    quantity : str
        What is bounded, e.g. ``"||X(w-q)||_2^2"``.
    kind : str
        ``"deterministic"``, ``"probability"`` (holds with probability :math:`\ge 1 - p` per row) or
        ``"per-run"`` (a deterministic inequality between run quantities, e.g. B3's conditional variance).
    value, empirical : ndarray (n,)
        The bound and the measured quantity; for pointwise bounds (B5-B7, B10.sup: one per sample or
        weight) their largest entries, with ``ratio`` and ``holds`` computed entry by entry.
    ratio : ndarray (n,)
        Tightness: ``(empirical - atol)_+ / value`` (pointwise bounds: its largest entry), the part of the
        measurement that rounding does not explain. ``ratio <= 1 + RTOL_BOUND`` exactly when the bound held.
    hypotheses : tuple of Hypothesis
    reference : str
    p : float or None
        Failure probability of probabilistic bounds.
    atol : ndarray (n,)
        Float64 rounding allowance (see module notes).
    extra : dict
        Further per-row numbers (e.g. ``K`` and ``bits`` for B8).
    """

    label: str
    quantity: str
    kind: str
    value: np.ndarray
    empirical: np.ndarray
    ratio: np.ndarray
    hypotheses: tuple[Hypothesis, ...]
    reference: str
    p: float | None = None
    atol: np.ndarray | float = 0.0
    pointwise_holds: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def applies(self) -> np.ndarray:
        """Per row: every hypothesis held, so the bound is a theorem for that row."""
        n = np.shape(self.value)[0]
        ok = np.ones(n, dtype=bool)
        for h in self.hypotheses:
            ok &= h.per_row(n)
        return ok

    @property
    def holds(self) -> np.ndarray:
        """Per row: the inequality held (read it only where :attr:`applies`)."""
        if self.pointwise_holds is not None:
            return self.pointwise_holds
        return self.empirical <= self.value * (1 + RTOL_BOUND) + self.atol

    @property
    def violations(self) -> int:
        """Rows where the bound applies and failed: a counterexample if nonzero."""
        return int(np.count_nonzero(self.applies & ~self.holds))

    def records(self) -> list[dict]:
        """One tidy dict per row (``holds`` is ``None`` where the bound does not apply)."""
        out = []
        applies, holds = self.applies, self.holds
        for i in range(np.shape(self.value)[0]):
            missing = [h.name for h in self.hypotheses if not h.per_row(len(applies))[i]]
            out.append({
                "row": i, "quantity": self.label, "bounds": self.quantity, "kind": self.kind,
                "value": float(self.value[i]), "empirical": float(self.empirical[i]),
                "ratio": float(self.ratio[i]), "applies": bool(applies[i]),
                "holds": bool(holds[i]) if applies[i] else None,
                "failed_hypotheses": ";".join(missing), "p": self.p, "reference": self.reference,
            })
        return out


def context(run: Run, X, Xt=None) -> RunContext:
    """The data a bound reads, in processing order (also built by :func:`ptqtheory.certify`)."""
    return RunContext.build(run, X, Xt)


def _pointwise(e: np.ndarray, b: np.ndarray, atol: np.ndarray, rows: int = 32):
    """Per row: largest ratio (e - atol)_+ / b (as :func:`_ratio` forms it: 0 where both are 0, inf where
    only the bound is 0), whether e <= b (1 + RTOL_BOUND) + atol everywhere, and the row maxima of b, e, atol.
    The (n, N) or (n, m) arrays are taken ``rows`` rows at a time so that the temporaries stay in cache (a
    whole-array temporary per operation is most of a certificate's elementwise time)."""
    n = e.shape[0]
    atol = np.broadcast_to(atol, e.shape)
    ratio, b_max, e_max, atol_max = np.zeros((4, n))
    holds = np.ones(n, dtype=bool)
    for i0 in range(0, n, rows):
        i = slice(i0, i0 + rows)
        ei, bi, ai = e[i], b[i], atol[i]
        holds[i] = np.all(ei <= bi * (1 + RTOL_BOUND) + ai, axis=1)
        r = np.maximum(ei - ai, 0.0)
        pos = bi > 0
        np.divide(r, bi, out=r, where=pos)
        r[~pos & (r > 0)] = np.inf
        for out, a in ((ratio, r), (b_max, bi), (e_max, ei), (atol_max, ai)):
            out[i] = np.max(a, axis=1, initial=0.0)
    return ratio, holds, b_max, e_max, atol_max


def _rounding_no_clip(ctx: RunContext, wanted: str) -> tuple[Hypothesis, Hypothesis]:
    """``wanted`` rounding (:func:`_rounding`) and no clip, the hypotheses of most bounds."""
    # Stochastic: conditioning on "no clip" biases the rounding errors (docs/theory.md, errata); on a finite
    # grid P(bound fails and no clip) <= p holds by coupling with the infinite-grid run, equal when no clip.
    detail = "no entry of the row was clipped" + ("; the claim is P(fails and no clip) <= p"
                                                  if wanted == "stochastic" else "")
    return _rounding(ctx, wanted), Hypothesis("no clip", ~ctx.clipped_rows, detail)


def _rounding(ctx: RunContext, wanted: str) -> Hypothesis:
    rule = {"nearest": "nearest rounding: |eta_t| <= delta_t / 2",
            "stochastic": "unbiased stochastic rounding: E[eta_t | past] = 0"}[wanted]
    if ctx.alphabet is not None:
        rule += " (alphabet: delta_t is the row's largest gap s_i G, docs/theory.md section 7)"
    return Hypothesis(f"{wanted} rounding", ctx.run.rounding == wanted, rule)


def _uniform_grid(ctx: RunContext) -> tuple[Hypothesis, ...]:
    """B8 and L1 are statements about a uniform grid: on an alphabet run they carry this failed
    hypothesis (nothing is claimed); grid runs carry nothing extra."""
    if ctx.alphabet is None:
        return ()
    return (Hypothesis("uniform grid", False,
                       "the rounding points are a uniform grid delta (k - z), not a general pt.Alphabet"),)


def _row_norms(A: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row, scaled so that the squares neither overflow nor underflow."""
    A = np.asarray(A, float)
    top = np.max(np.abs(A), axis=1, initial=0.0)
    safe = np.where(top > 0, top, 1.0)
    return top * np.sqrt(np.sum((A / safe[:, None]) ** 2, axis=1))


def _D(ctx: RunContext) -> np.ndarray:
    assert ctx.piv is not None  # read only for runs with a factorization (the registry's factor)
    return np.asarray(ctx.piv.D, dtype=float)


def _sum_delta2_D(ctx: RunContext) -> np.ndarray:
    r""":math:`\sum_t \delta_t^2 D_t` per row."""
    return (ctx.delta_p**2) @ _D(ctx)


def _weight_noise(ctx: RunContext) -> np.ndarray:
    """Rounding allowance of w - q per row (weight units): :func:`ptqtheory.tolerances.weight_allowance`."""
    L_fro = ctx.L_fro if ctx.piv is not None else 1.0
    return weight_allowance(ctx.eps, np.linalg.norm(ctx.W, axis=1), np.linalg.norm(ctx.Q, axis=1),
                            L_fro, np.linalg.norm(ctx.eta_p, axis=1), ctx.code_norm)


def _sq_atol(ctx: RunContext, emp_sq, val_sq, cancel=None) -> np.ndarray:
    """Rounding allowance of a squared output norm, from the weight allowance; plus, for a bound whose
    terms may cancel (absolute sum ``cancel``), the evaluation allowance of ``cancel + emp_sq``."""
    scale = ctx.xh_norm + (ctx.xfh_norm if ctx.uses_xt else 0.0)
    atol = scale * _weight_noise(ctx) * (np.sqrt(np.abs(emp_sq)) + np.sqrt(np.abs(val_sq)))
    return atol if cancel is None else atol + evaluation_allowance(ctx.eps, cancel + emp_sq)


def _check(label, quantity, kind, value, empirical, hyps, reference, atol, p=None, extra=None):
    value, empirical = np.asarray(value, float), np.asarray(empirical, float)
    ratio = _ratio(np.maximum(empirical - atol, 0.0), value)
    return BoundCheck(label, quantity, kind, value, empirical, ratio,
                      tuple(hyps), reference, p, atol, None, extra or {})


def _check_pointwise(label, quantity, kind, e, b, hyps, reference, atol, p=None, extra=None):
    ratio, holds, b_max, e_max, atol_max = _pointwise(e, b, atol)
    return BoundCheck(label, quantity, kind, b_max, e_max, ratio, tuple(hyps), reference, p, atol_max, holds,
                      extra or {})


def conditional_variance(ctx: RunContext) -> np.ndarray:
    r"""B3's per-run form :math:`V = \sum_t r_t(\delta_t - r_t) D_t` per row.

    For unbiased, unclipped stochastic rounding :math:`E[\eta_t^2 \mid \text{past}] = r_t(\delta_t -
    r_t)` (an alphabet run: :math:`r_t(g_t - r_t)` with :math:`g_t` the local gap of :math:`x_t`,
    :attr:`RunContext.neighbours`), so :math:`\|\hat X(w-q)\|^2 - V` is a martingale with mean 0 and
    :math:`E\|\hat X(w-q)\|^2 = E[V]`.
    """
    r, g = ctx.neighbours  # grid: g = delta; alphabet: the local gap of x_t
    return (r * (g - r)) @ _D(ctx)


def b1(ctx: RunContext) -> list[BoundCheck]:
    r"""B1: :math:`\|X(w-q)\|^2 \le \frac14\sum_t\delta_t^2 D_t - \lambda\|w-q\|^2
    \le \frac14\sum_t \delta_t^2(\|X_t\|^2 + \lambda)`.

    Hypotheses: nearest rounding, no clip. From I2 with :math:`|\eta_t| \le \delta_t/2`; attained
    when every :math:`x_t` is a midpoint (:func:`ptqtheory.tightness.midpoint_weights`).
    """
    hyps = _rounding_no_clip(ctx, "nearest")
    lam_term = float(ctx.lam) * np.sum(ctx.E**2, axis=1)
    pivot_term = 0.25 * _sum_delta2_D(ctx)
    sharp = pivot_term - lam_term  # the two terms cancel exactly when every x_t is a midpoint
    col = ctx.x_col_sq + float(ctx.lam)
    data = 0.25 * (ctx.delta_p**2) @ col
    emp = ctx.err_sq
    return [
        _check("B1", "||X(w-q)||_2^2", "deterministic", sharp, emp, hyps,
               f"THEORY.md B1 (from I2); {REF}",
               _sq_atol(ctx, emp, sharp, pivot_term + lam_term)),
        _check("B1.data", "||X(w-q)||_2^2", "deterministic", data, emp, hyps,
               f"THEORY.md B1, data-only form (delta^2/4)(||X||_F^2 + N lam); {REF}",
               _sq_atol(ctx, emp, data)),
    ] + (_b1_local(ctx, hyps, lam_term, emp) if ctx.alphabet is not None else [])


def _b1_local(ctx: RunContext, hyps, lam_term, emp) -> list[BoundCheck]:
    r"""B1.local (alphabet runs): :math:`\|X(w-q)\|^2 \le \frac14\sum_t g_t^2 D_t - \lambda\|w-q\|^2`,
    :math:`g_t` the local gap of :math:`x_t` (a-posteriori: the gaps depend on the run). From I2 with
    :math:`|\eta_t| \le g_t/2` (nearest, inside the range); at most B1, which reads the largest gap."""
    g = ctx.neighbours[1]
    pivot_term = 0.25 * (g**2) @ _D(ctx)
    val = pivot_term - lam_term
    return [_check("B1.local", "||X(w-q)||_2^2", "deterministic", val, emp, hyps,
                   "docs/theory.md section 7 (alphabets): B1 with the local gap g(x_t) of each x_t",
                   _sq_atol(ctx, emp, val, pivot_term + lam_term))]


def b2(ctx: RunContext, max_k_evaluated: int = 8, max_bisection_N: int = 256) -> list[BoundCheck]:
    r"""B2: if :math:`\operatorname{rank}X_{>N-k} = \operatorname{rank}X = r`, then
    :math:`\operatorname{tr}(D) \le \sum_{t>N-k}\|X_t\|^2 + \lambda(N + \sum_{t\le N-k}
    \|X_t\|^2/\sigma_r(X_{>N-k})^2)`.

    Evaluated in the run's order; no run hypotheses (a property of the data and the order). With full
    column rank (a Cholesky factorization of :math:`X^TX` decides) the only admissible ``k`` is ``N``:
    B1's data form. Otherwise the smallest value over the smallest admissible ``k`` (bisection on the
    numerical rank) and up to ``max_k_evaluated`` larger ``k`` is reported. Above ``max_bisection_N``
    columns only ``k = N`` (always admissible; the bisection costs SVDs of m x k blocks) is evaluated.
    """
    gram = np.asarray(ctx.gram_p, float)
    N = gram.shape[0]
    lam = float(ctx.lam)
    col = ctx.xf_col_sq
    if ctx.has_data:
        Xf = np.asarray(ctx.Xf_p, float)
        rank = lambda k: int(np.linalg.matrix_rank(Xf[:, N - k:])) if Xf.size else 0  # noqa: E731
        sig_sq = lambda k, r: scipy.linalg.svdvals(Xf[:, N - k:])[r - 1] ** 2  # noqa: E731
    else:  # statistics only: ranks and singular values from the trailing blocks of X^T X
        rank = lambda k: _gram_rank(gram[N - k:, N - k:])  # noqa: E731
        sig_sq = lambda k, r: np.linalg.eigvalsh(gram[N - k:, N - k:])[::-1][r - 1]  # noqa: E731
    if N > max_bisection_N:  # k = N: X_{>0} = X
        r, ks = -1, np.array([N])
    elif _full_column_rank(gram):
        r, ks = N, np.array([N])
    else:
        r = rank(N)
        lo, hi = 1, N
        while lo < hi:  # smallest k with rank X_{>N-k} = r (rank is monotone in k)
            mid = (lo + hi) // 2
            if rank(mid) >= r:
                hi = mid
            else:
                lo = mid + 1
        ks = np.unique(np.linspace(lo, N, min(max_k_evaluated, N - lo + 1)).round().astype(int))
    best, best_k = np.inf, N
    for k in ks:
        tail = col[N - k:].sum()
        head = 0.0
        if k < N and r > 0:
            head = col[: N - k].sum() / sig_sq(k, r)
        val = tail + lam * (N + head)
        if val < best:
            best, best_k = val, int(k)
    n = ctx.shape[0]
    trD = float(np.sum(_D(ctx)))
    how = "numpy.linalg.matrix_rank" if ctx.has_data else "eigenvalues of X^T X above N eps max"
    if r < 0:
        hyp = Hypothesis(f"rank X_>N-k = rank X with k = N = {N}", True,
                         "k = N holds trivially; smaller k not searched (N > max_bisection_N)")
    else:
        hyp = Hypothesis(f"rank X_>N-k = rank X = {r} with k = {best_k}", True,
                         f"rank decided numerically (Cholesky of X^T X, else {how})")
    return [_check("B2", "tr(D)", "deterministic", np.full(n, best), np.full(n, trD), (hyp,),
                   "THEORY.md B2", ctx.eps * N * (col.sum() + lam * N))]


def _gram_rank(gram: np.ndarray) -> int:
    """Numerical rank of X from X^T X: eigenvalues above N eps times the largest."""
    if gram.size == 0:
        return 0
    ev = np.linalg.eigvalsh(gram)
    return int(np.count_nonzero(ev > singular_threshold(gram.shape[0], max(float(ev[-1]), 0.0))))


def _full_column_rank(gram: np.ndarray) -> bool:
    """X^T X numerically definite (pivots above N eps max diag, as for singular H)."""
    N = gram.shape[0]
    try:
        c = scipy.linalg.cholesky(gram, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return False
    d = np.diag(c) ** 2
    return bool(N == 0 or d.min() > singular_threshold(N, float(np.max(np.diag(gram)))))


def b7(ctx: RunContext) -> list[BoundCheck]:
    r"""B7: :math:`|x_t - w_t| \le \frac12\sum_{s<t}|L_{ts}|\delta_s` and
    :math:`|w_j - q_j| \le \frac12\sum_s |L_{js}|\delta_s`; also
    :math:`\|w-q\|_\infty \le \frac12(\sum_t\delta_t^2 D_t/\lambda)^{1/2}` (:math:`\lambda>0`).

    Hypotheses: nearest rounding, no clip.
    """
    hyps = _rounding_no_clip(ctx, "nearest")
    noise = _weight_noise(ctx)[:, None]
    drift_b, err_b = ctx.half_delta_absL
    drift_e = np.abs(ctx.x_p - ctx.W_p)
    err_e = np.abs(ctx.E_p)
    out = [
        _check_pointwise("B7.drift", "|x_t - w_t|", "deterministic", drift_e, drift_b, hyps,
                         "THEORY.md B7", noise + ctx.eps * np.abs(ctx.W_p)),
        _check_pointwise("B7", "|w_j - q_j|", "deterministic", err_e, err_b, hyps,
                         "THEORY.md B7", noise),
    ]
    lam = float(ctx.lam)
    if lam > 0:
        val = 0.5 * np.sqrt(_sum_delta2_D(ctx) / lam)
        out.append(_check("B7.lam", "||w-q||_inf", "deterministic", val, np.max(err_e, axis=1),
                          hyps, "THEORY.md B7, (delta/2) sqrt(tr(D)/lam) form", noise[:, 0]))
    return out


def alphabet_size(W, L: np.ndarray, delta, rounding: str = "nearest") -> np.ndarray:
    r"""B8: per row the smallest :math:`K` with :math:`K\delta \ge \|w\|_\infty + B + \delta`,
    :math:`B = c\,\delta \max_j \sum_s |L_{js}|` (B7; :math:`c = 1/2` nearest, 1 stochastic).

    Then :math:`\mathcal A_K = \delta\{-K..K\}` cannot clip and the finite-grid run equals the
    infinite-grid run (THEORY.md T5); ``bits = log2(2K + 1)``. ``delta`` is one step per row.
    """
    W2 = np.atleast_2d(np.asarray(W, dtype=float))
    n = W2.shape[0]
    d = np.broadcast_to(np.asarray(delta, dtype=float).reshape(-1), (n,))
    c = {"nearest": 0.5, "stochastic": 1.0}[rounding]
    row_sums = np.max(np.sum(np.abs(np.tril(np.asarray(L, dtype=float))), axis=1))
    return np.ceil((np.max(np.abs(W2), axis=1) + c * d * row_sums + d) / d).astype(np.int64)


def _alphabet_check(ctx: RunContext, B: np.ndarray, hyps, label: str, reference: str, p=None):
    d = ctx.delta_p
    w_inf = np.max(np.abs(ctx.W), axis=1)
    K = np.ceil(np.max((w_inf[:, None] + B[:, None] + d) / d, axis=1))
    used = np.max(np.abs(np.asarray(ctx.Q_p, float)) / d, axis=1)
    bits = np.log2(2 * K + 1)
    return _check(label, "max_t |q_t| / delta_t", "deterministic" if p is None else "probability",
                  K, used, hyps, reference, ctx.eps * (used + K), p,
                  extra={"K": K, "bits": bits, "max|x_t|": np.max(np.abs(ctx.x_p), axis=1)})


def b8(ctx: RunContext, p: float | None = None) -> list[BoundCheck]:
    r"""B8: the alphabet index each row needs, against :math:`K` as in :func:`alphabet_size` with B from
    B7 (from B6 w.p. :math:`1-p` for stochastic rounding). ``extra`` holds ``K`` and ``bits = log2(2K+1)``."""
    if ctx.run.rounding == "nearest":
        B = np.max(ctx.half_delta_absL[1], axis=1, initial=0.0)
        return [_alphabet_check(ctx, B, (*_rounding_no_clip(ctx, "nearest"), *_uniform_grid(ctx)), "B8",
                                "THEORY.md B8 with B from B7")]
    p = 1e-3 if p is None else p
    N = ctx.shape[1]
    L = np.asarray(ctx.factorization.L, float)
    B = np.max(np.sqrt((ctx.delta_p**2) @ (L**2).T * math.log(2 * N / p) / 2), axis=1)
    hyps = (*_rounding_no_clip(ctx, "stochastic"), *_uniform_grid(ctx))
    return [_alphabet_check(ctx, B, hyps, "B8.stochastic", "THEORY.md B8 with B from B6", p)]


def b11(ctx: RunContext) -> list[BoundCheck]:
    r"""B11 (LDLQ/QuIP): per row the proxy loss :math:`(q-w)^T H (q-w) \le \frac14\sum_t\delta_t^2D_t`
    (summed over rows: :math:`\frac n4\delta^2\operatorname{tr}(D)`), and the incoherence bound
    :math:`\operatorname{tr}(D) \le (\mu^2/N)(\operatorname{tr}H^{1/2})^2` (QuIP, a property of H).
    """
    hyps = _rounding_no_clip(ctx, "nearest")
    proxy = np.asarray(ctx.h_quadratic, float)  # I3's left side, computed once per context
    val = 0.25 * _sum_delta2_D(ctx)
    H = np.asarray(ctx.Hf_p, float)
    N = H.shape[0]
    ev, V = np.linalg.eigh(H)
    mu = float(np.sqrt(N) * np.max(np.abs(V)))
    inc = mu**2 / N * float(np.sum(np.sqrt(np.clip(ev, 0, None)))) ** 2
    n = ctx.shape[0]
    trD = float(np.sum(_D(ctx)))
    quip = "THEORY.md B11; Chee, Cai, Kuleshov & De Sa, QuIP, arXiv 2307.13304"
    return [
        _check("B11", "(q-w)^T H (q-w)", "deterministic", val, proxy, hyps, quip,
               _sq_atol(ctx, proxy, val)),
        _check("B11.incoherence", "tr(D)", "deterministic", np.full(n, inc), np.full(n, trD),
               (Hypothesis("H positive definite", True, f"mu(H) = {mu:.4g}"),), quip,
               ctx.eps * N * float(np.sum(np.abs(ev)))),
    ]


def b3(ctx: RunContext) -> list[BoundCheck]:
    r"""B3 per run: :math:`V = \sum_t r_t(\delta_t - r_t)D_t \le \frac14\sum_t \delta_t^2 D_t`; ``empirical``
    is :math:`V` (:func:`conditional_variance`) and ``extra["lhs"]`` is :math:`\|\hat X(w-q)\|^2`, whose mean
    :math:`E[V]` the tests check by Monte Carlo."""
    hyps = (_rounding(ctx, "stochastic"),)
    V = conditional_variance(ctx)
    val = 0.25 * _sum_delta2_D(ctx)
    return [_check("B3", "sum_t r_t(delta_t - r_t) D_t", "per-run", val, V, hyps,
                   f"THEORY.md B3; {REF}", ctx.eps * val, extra={"lhs": ctx.lhs_sq})]


def b4(ctx: RunContext, p: float) -> list[BoundCheck]:
    r"""B4: w.p. :math:`\ge 1-p`, :math:`\|\hat X(w-q)\|^2 \le \frac14\sum_t\delta_t^2D_t +
    (\sum_t \delta_t^4 D_t^2)^{1/2}\sqrt{\log(1/p)/2}` (Azuma-Hoeffding on :math:`\eta_t^2 D_t`).
    """
    hyps = _rounding_no_clip(ctx, "stochastic")
    # (sum_t (delta_t^2 D_t)^2)^(1/2) as a scaled norm: its squares (degree eight in the scales) would leave R1.
    dev = _row_norms(ctx.delta_p**2 * _D(ctx)[None, :]) * math.sqrt(math.log(1 / p) / 2)
    val = 0.25 * _sum_delta2_D(ctx) + dev
    return [_check("B4", "||X(w-q)||^2 + lam||w-q||^2", "probability", val, ctx.lhs_sq, hyps,
                   f"THEORY.md B4; {REF}", _sq_atol(ctx, ctx.lhs_sq, val), p)]


def _sup_bound(coef: np.ndarray, delta_p: np.ndarray, count: int, p: float) -> np.ndarray:
    r""":math:`(\sum_t c_{it}^2 \delta_t^2 \log(2\,count/p)/2)^{1/2}` for each row and index i.

    Runs of adjacent columns with the same steps in every row (one per row with per-channel grids, one
    per group with groups; O(nN) to find, no sort) are summed first:
    :math:`\sum_g \delta_g^2 \sum_{t\in g} c_{it}^2`, a product with G columns instead of N."""
    d2 = np.asarray(delta_p, float) ** 2
    scale = math.log(2 * count / p) / 2
    same = np.all(d2[:, 1:] == d2[:, :-1], axis=0)
    starts = np.flatnonzero(np.r_[True, ~same])
    if 2 * starts.size <= d2.shape[1]:
        per_run = np.add.reduceat(np.asarray(coef, float) ** 2, starts, axis=1)  # (count, runs)
        return np.sqrt(d2[:, starts] @ per_run.T * scale)
    return np.sqrt(d2 @ (coef**2).T * scale)


def b5(ctx: RunContext, p: float) -> list[BoundCheck]:
    r"""B5: w.p. :math:`\ge 1-p`, for all samples i,
    :math:`|(X(w-q))_i| \le (\sum_t (XL)_{it}^2\delta_t^2\log(2m/p)/2)^{1/2}`
    (:math:`= \delta\sqrt{S_i\log(2m/p)/2}`, :math:`S_i = (XLL^TX^T)_{ii}`); uniform form with
    :math:`S_i \le \max_t D_t`.
    """
    hyps = _rounding_no_clip(ctx, "stochastic")
    m = ctx.m
    atol = (ctx.xh_norm * _weight_noise(ctx))[:, None]
    uni = np.max(ctx.delta_p, axis=1) * math.sqrt(float(np.max(_D(ctx))) * math.log(2 * m / p) / 2)
    out = []
    if ctx.has_data:
        out.append(_per_sample_check(ctx, "B5", [(ctx.X, None)], p))
    if ctx.err_inf is not None:
        out.append(_check("B5.uniform", "||X(w-q)||_inf", "probability", uni, ctx.err_inf, hyps,
                          "THEORY.md B5 with S_i <= max_t D_t", atol[:, 0], p))
    return out


def b6(ctx: RunContext, p: float) -> list[BoundCheck]:
    r"""B6: w.p. :math:`\ge 1-p`, :math:`|w_j - q_j| \le (\sum_t L_{jt}^2\delta_t^2\log(2N/p)/2)^{1/2}`
    for all j, and (maximal inequality) every iterate: :math:`|x_t - w_t|` obeys the same bound;
    :math:`\lambda` form: :math:`\|w-q\|_\infty \le \delta\sqrt{(1 + \max_t\|X_t\|^2/\lambda)\log(2N/p)/2}`.
    """
    hyps = _rounding_no_clip(ctx, "stochastic")
    L = np.asarray(ctx.factorization.L, float)
    N = L.shape[0]
    b = _sup_bound(L, ctx.delta_p, N, p)  # (n, N)
    noise = _weight_noise(ctx)[:, None]
    out = [
        _check_pointwise("B6", "|w_j - q_j| for every j", "probability",
                         np.abs(ctx.E_p), b, hyps, f"THEORY.md B6; {REF}", noise, p),
        _check_pointwise("B6.iterates", "|x_t - w_t| for every t", "probability",
                         np.abs(ctx.x_p - ctx.W_p), b, hyps, "THEORY.md B6 (maximal inequality)",
                         noise + ctx.eps * np.abs(ctx.W_p), p),
    ]
    lam = float(ctx.lam)
    if lam > 0:
        col = np.max(ctx.xf_col_sq)
        val = np.max(ctx.delta_p, axis=1) * math.sqrt((1 + col / lam) * math.log(2 * N / p) / 2)
        out.append(_check("B6.lam", "||w-q||_inf", "probability", val,
                          np.max(np.abs(ctx.E), axis=1), hyps, "THEORY.md B6, lam form",
                          noise[:, 0], p))
    return out


def _qronos_first(ctx: RunContext) -> np.ndarray:
    r""":math:`a = (w_{LS})_1 - y_1` per row (0 for A4' and for A4 started from :math:`w_{LS}`)."""
    if ctx.run.variant == "ls":
        return np.zeros(ctx.shape[0])
    return np.asarray(ctx.W_ls[:, 0], float) - np.asarray(ctx.x_p[:, 0], float)


def b9(ctx: RunContext) -> list[BoundCheck]:
    r"""B9: :math:`\|Xw - \tilde Xq\|^2 \le \|r_0\|^2 + \frac14\sum_t\delta_t^2\tilde D_t -
    \lambda\|w-q\|^2` (A4'); for A4 the :math:`t=1` term is
    :math:`(|(w_{LS})_1 - y_1| + \delta_1/2)^2\tilde D_1`. Hypotheses: nearest, no clip.
    """
    hyps = _rounding_no_clip(ctx, "nearest")
    D = _D(ctx)
    r0 = ctx.r0_sq
    a = np.abs(_qronos_first(ctx))
    terms = 0.25 * (ctx.delta_p[:, 1:] ** 2) @ D[1:] + (a + ctx.delta_p[:, 0] / 2) ** 2 * D[0]
    lam_term = float(ctx.lam) * np.sum(ctx.E**2, axis=1)
    val = r0 + terms - lam_term  # may cancel exactly (a midpoint with r_0 = 0)
    return [_check("B9", "||Xw - Xt q||_2^2", "deterministic", val, ctx.err_sq, hyps,
                   "THEORY.md B9 (from I4/I5); Zhang, Colbert & Saab, Qronos, arXiv 2505.11695",
                   _sq_atol(ctx, ctx.err_sq, val, r0 + terms + lam_term))]


def b10(ctx: RunContext, p: float) -> list[BoundCheck]:
    r"""B10 (stochastic Qronos). Per run: :math:`\|r_0\|^2 + a^2\tilde D_1 + \sum_t r_t(\delta_t -
    r_t)\tilde D_t \le \|r_0\|^2 + a^2\tilde D_1 + \frac14\sum_t\delta_t^2\tilde D_t`
    (:math:`a = (w_{LS})_1 - y_1`, 0 for A4'; its mean is the mean error). Sup form, w.p.
    :math:`\ge 1-p`: :math:`|(Xw - \tilde Xq)_i| \le |(r_0)_i + a(\tilde X\tilde L)_{i1}| +
    (\sum_t(\tilde X\tilde L)_{it}^2\delta_t^2\log(2m/p)/2)^{1/2}` for every sample i.
    """
    hyps = _rounding_no_clip(ctx, "stochastic")
    a = _qronos_first(ctx)
    base = ctx.r0_sq + a**2 * _D(ctx)[0]
    V = base + conditional_variance(ctx)
    val = base + 0.25 * _sum_delta2_D(ctx)
    out = [_check("B10", "||r_0||^2 + a^2 Dt_1 + sum_t r_t(delta_t - r_t) Dt_t", "per-run", val, V,
                  hyps[:1], "THEORY.md B10 (mean, per-run conditional form)", ctx.eps * val,
                  extra={"lhs": ctx.lhs_sq})]
    if ctx.has_data:  # the per-sample form needs the samples (see unavailable() and per_sample())
        out.append(_per_sample_check(ctx, "B10.sup", [(ctx.X, ctx.Xt)], p))
    return out


def _b5_samples(ctx: RunContext, X_b: np.ndarray, Xt_b, p: float) -> tuple[np.ndarray, np.ndarray]:
    r"""B5 on samples ``X_b`` (rows, original column order): ``(|X_b(w - q)|, bound)``, each (n, b)."""
    XL = X_b[:, ctx.order] @ np.asarray(ctx.factorization.L, float)
    return np.abs(_linalg.dot(ctx.E, X_b.T)), _sup_bound(XL, ctx.delta_p, ctx.m, p)


def _b10_samples(ctx: RunContext, X_b: np.ndarray, Xt_b: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    r"""B10.sup (:func:`b10`) on samples, as :func:`_b5_samples`; :math:`(r_0)_i = x_i^Tw - \tilde x_i^Tw_{LS}`
    (the sample rows of :math:`r_0`)."""
    Xp, Xtp = X_b[:, ctx.order], Xt_b[:, ctx.order]
    XL = Xtp @ np.asarray(ctx.factorization.L, float)
    a = _qronos_first(ctx)
    r0 = _linalg.dot(ctx.W_p, Xp.T) - _linalg.dot(np.asarray(ctx.W_ls, float), Xtp.T)
    shift = np.abs(r0 + a[:, None] * XL[:, 0][None, :])
    # Xw - Xt q = X(w - q) + (X - Xt) q: no cancellation between two large products
    e = np.abs(_linalg.dot(ctx.E, X_b.T) + _linalg.dot(ctx.Q, (X_b - Xt_b).T))
    return e, shift + _sup_bound(XL, ctx.delta_p, ctx.m, p)


# label -> (quantity, reference, samples function, scale of the data in the rounding allowance)
_PER_SAMPLE = {
    "B5": ("|(X(w-q))_i| for every sample i", f"THEORY.md B5 (Azuma-Hoeffding); {REF}", _b5_samples,
           lambda ctx: ctx.xh_norm),
    "B10.sup": ("|(Xw - Xt q)_i| for every sample i", "THEORY.md B10 (per-sample form)", _b10_samples,
                lambda ctx: ctx.xh_norm + ctx.xfh_norm),
}


def _per_sample_check(ctx: RunContext, label: str, batches, p: float) -> BoundCheck:
    """One pointwise check over samples given in batches ``(X_b, Xt_b)`` (one batch: the data at once),
    each as :func:`_check_pointwise` forms it, combined by maxima and conjunction: batching changes nothing."""
    quantity, reference, samples, scale = _PER_SAMPLE[label]
    hyps = _rounding_no_clip(ctx, "stochastic")
    atol = (scale(ctx) * _weight_noise(ctx))[:, None]
    n = ctx.shape[0]
    value, empirical, ratio = np.zeros(n), np.zeros(n), np.zeros(n)
    holds = np.ones(n, dtype=bool)
    count = 0
    for X_b, Xt_b in batches:
        e, b = samples(ctx, np.asarray(X_b, float), None if Xt_b is None else np.asarray(Xt_b, float), p)
        r, h, b_max, e_max, _ = _pointwise(e, b, atol)
        for total, part in ((ratio, r), (value, b_max), (empirical, e_max)):
            np.maximum(total, part, out=total)
        holds &= h
        count += e.shape[1]
    if count != ctx.m:
        raise ValueError(f"the samples for {label} hold {count} rows but the run's statistics have "
                         f"m = {ctx.m}: pass the data the statistics were accumulated from")
    return BoundCheck(label, quantity, "probability", value, empirical, ratio, hyps, reference, p, atol[:, 0],
                      holds, {})


def per_sample(ctx: RunContext, batches, p: float = 1e-3) -> list[BoundCheck]:
    r"""The per-sample bounds that :func:`unavailable` lists for a statistics context, from the samples:
    B5 (:func:`b5`) for stochastic OPTQ and LDLQ, B10.sup (:func:`b10`) for stochastic Qronos.

    ``batches`` yields ``(X_b, Xt_b)`` host float64 arrays, rows of the same calibration data the
    statistics hold, in the run's input basis (``Xt_b`` is ``None`` except for Qronos); each batch is
    read once and dropped. ``B5.uniform`` needs :math:`\|X(w - q)\|_\infty`, which the certificate measures.
    """
    p = check_probability("p", p)
    labels = [lab for lab in unavailable(ctx) if lab in _PER_SAMPLE]
    if not labels:
        for _ in batches:  # nothing to evaluate, but the pass is consumed as promised
            pass
        return []
    (label,) = labels
    return [_per_sample_check(ctx, label, batches, p)]


def b12(ctx: RunContext, S: np.ndarray) -> list[BoundCheck]:
    r"""B12 (generalization to an input covariance ``S``, e.g. of held-out data).

    Stochastic, per run: :math:`(w-q)^TS(w-q)` has mean at most
    :math:`\frac14\max_t\delta_t^2 D_t\operatorname{tr}(SH^{-1})`; ``empirical`` is the realized
    value, so this record is informative only on average (kind ``"mean"``). Deterministic (nearest,
    no clip): if :math:`\lambda \ge m\|S - X^TX/m\|_{op}` then :math:`(w-q)^TS(w-q) \le
    \sum_t\delta_t^2D_t/(4m)`.
    """
    S = np.asarray(S, dtype=float)
    Sp = S[np.ix_(ctx.order, ctx.order)]
    E_p = ctx.E_p
    quad = np.sum((E_p @ Sp) * E_p, axis=1)
    m = ctx.m
    H = np.asarray(ctx.Hf_p, float)
    D = _D(ctx)
    mean_val = 0.25 * np.max(ctx.delta_p**2 * D[None, :], axis=1) * float(np.trace(np.linalg.solve(H, Sp)))
    gap = float(np.linalg.norm(Sp - np.asarray(ctx.gram_p, float) / m, 2))
    det_val = _sum_delta2_D(ctx) / (4 * m)
    lam_ok = float(ctx.lam) >= m * gap
    atol = np.linalg.norm(S) * _weight_noise(ctx) * (np.linalg.norm(E_p, axis=1) + _weight_noise(ctx))
    return [
        _check("B12", "(w-q)^T S (w-q)", "mean", mean_val, quad, (_rounding(ctx, "stochastic"),),
               "THEORY.md B12 (in the spirit of George & Saab 2026)", atol),
        _check("B12.det", "(w-q)^T S (w-q)", "deterministic", det_val, quad,
               (*_rounding_no_clip(ctx, "nearest"),
                Hypothesis("lam >= m ||S - X^T X/m||_op", lam_ok,
                           f"lam = {float(ctx.lam):.4g}, m ||S - X^TX/m|| = {m * gap:.4g}")),
               "THEORY.md B12", atol),
    ]


def rtn_bounds(ctx: RunContext) -> list[BoundCheck]:
    r"""RTN comparison: :math:`\|X\eta\|^2 \le \|X\|_{op}^2\sum_t\delta_t^2/4` (nearest, no clip);
    stochastic, per run: :math:`\sum_t r_t(\delta_t - r_t)\|X_t\|^2 \le \frac14\sum_t\delta_t^2\|X_t\|^2`
    (the conditional form of :math:`E\|X\eta\|^2 \le \frac{\delta^2}{4}\|X\|_F^2`).
    """
    col = ctx.x_col_sq
    val = ctx.x_op_sq * 0.25 * np.sum(ctx.delta_p**2, axis=1)
    r, g = ctx.neighbours
    V = (r * (g - r)) @ col
    mean_val = 0.25 * (ctx.delta_p**2) @ col
    atol = ctx.x_norm * _weight_noise(ctx) * (np.sqrt(np.abs(ctx.err_sq)) + np.sqrt(val))
    return [
        _check("RTN", "||X eta||_2^2", "deterministic", val, ctx.err_sq,
               _rounding_no_clip(ctx, "nearest"), "THEORY.md (RTN for comparison)", atol),
        _check("RTN.mean", "sum_t r_t(delta_t - r_t) ||X_t||^2", "per-run", mean_val, V,
               (_rounding(ctx, "stochastic"),), "THEORY.md (RTN for comparison)", ctx.eps * mean_val,
               extra={"lhs": ctx.err_sq}),
    ]


def l1(ctx: RunContext) -> list[BoundCheck]:
    r"""L1 and the optimality ratio of the run's factorization (OPTQ, LDLQ; Qronos on :math:`\tilde H`).

    ``value`` is L1, :math:`N G_N\operatorname{GM}_t(\delta_t^2D_t)`: a lower bound on the mean error
    :math:`E\|\hat X(w-q)\|^2` of *every* quantizer onto this grid when :math:`w` is uniform modulo the
    grid. ``empirical`` is the algorithm's own mean on that model, :math:`\sum_t\delta_t^2D_t/c`
    (:math:`c = 12` nearest, 6 stochastic; unbounded grid), so ``ratio`` is the optimality ratio
    :math:`\rho = \operatorname{AM}/(c\,G_N\operatorname{GM})`: the algorithm's mean error is at most
    :math:`\rho` times the best possible. A statement about means over the model, not about this row;
    ``holds`` checks the consistency :math:`L1 \le` the algorithm's mean (AM >= GM, :math:`12G_N \le 1`).
    For Qronos both are for the :math:`\tilde H` lattice part (the residual :math:`\|r_0\|^2` is common to
    every quantizer and left out).
    """
    D = _D(ctx)
    delta = np.asarray(ctx.delta_p, float)
    value = l1_bound(D, delta)
    mean = mean_error(D, delta, ctx.run.rounding)
    N = D.shape[0]
    # Both are sums of N positive terms (the GM through N logarithms): relative error about N u.
    atol = evaluation_allowance(4 * N * ctx.eps, value + mean)
    ratio = optimality_ratio(D, delta, ctx.run.rounding)
    model = Hypothesis("uniform model", True, "w uniform modulo the grid: a statement about means")
    floor = ratio_floor(N, ctx.run.rounding)
    return [BoundCheck("L1", "E||Xh(w-q)||^2, any quantizer (lower bound) vs this algorithm's mean",
                       "mean-lower", value, mean, ratio, (model, *_uniform_grid(ctx)),
                       "docs/optimality.md L1; Conway & Sloane ch. 21 (the ball's second moment)", None,
                       atol, value <= mean * (1 + RTOL_BOUND) + atol,
                       # rho at equal pivots (AM = GM): no order can go below it
                       {"ratio_floor": np.full(value.shape, floor)})]


class _QuantizedColumns:
    r"""A view of an OWQ run's context in which the kept columns (last in processing order, with
    :math:`\eta_t = 0`) carry the step :math:`\delta_t = 0`: every sum :math:`\sum_t \delta_t^2 D_t` and
    :math:`\sum_s |L_{js}|\delta_s` of B1 and B7 then runs over the quantized columns only. Everything
    else (the errors, the pivots, the rounding allowances of the real grid) is read from ``ctx``."""

    def __init__(self, ctx: RunContext, quantized: np.ndarray):
        self._ctx = ctx
        self.delta_p = np.asarray(ctx.delta_p, float) * quantized[None, :]

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    @property
    def half_delta_absL(self) -> tuple[np.ndarray, np.ndarray]:
        A = np.abs(np.asarray(self._ctx.factorization.L, float))  # OWQ runs are factored
        np.fill_diagonal(A, 0.0)
        drift = 0.5 * (self.delta_p @ np.tril(A, -1).T)
        return drift, drift + 0.5 * self.delta_p


class _LeadingColumns:
    """A view of a context restricted to its first ``s`` columns in processing order (B2 on :math:`X_S`)
    whose ``D`` are the run's own first ``s`` pivots: each is at most the pivot of :math:`H_{SS}` that B2
    on :math:`X_S` bounds (docs/theory.md section 7, OWQ: the kept columns only enlarge the span)."""

    def __init__(self, ctx: RunContext, s: int):
        self._ctx = ctx
        self.gram_p = np.asarray(ctx.gram_p, float)[:s, :s]
        self.xf_col_sq = np.asarray(ctx.xf_col_sq, float)[:s]
        self.Xf_p = None if ctx.Xf_p is None else np.asarray(ctx.Xf_p, float)[:, :s]
        self.piv = SimpleNamespace(D=np.asarray(_D(ctx), float)[:s])  # the pivots B2 reads, D only

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def owq_kept(ctx: RunContext) -> np.ndarray:
    """An OWQ run's kept columns in processing order (bool), checked to be the last ones."""
    kept = getattr(ctx.run, "kept", None)
    if kept is None:
        raise ValueError("an 'owq' run must carry its kept columns (run.kept): use pt.owq")
    kept_p = np.asarray(kept, dtype=bool)[np.asarray(ctx.order)]
    k = int(np.count_nonzero(kept_p))
    if not np.all(kept_p[kept_p.shape[0] - k:]):
        raise ValueError("the kept columns of an OWQ run must be last in its processing order (run.order)")
    return kept_p


def owq_bounds(ctx: RunContext) -> list[BoundCheck]:
    r"""B1, B2 and B7 for an OWQ run, restricted to the quantized columns :math:`S` (docs/theory.md 7, OWQ):

    .. math:: \|X(w-q)\|^2 \le \tfrac14\sum_{t\in S}\delta_t^2D_t - \lambda\|w-q\|^2
              \le \tfrac14\sum_{t\in S}\delta_t^2(\|X_t\|^2 + \lambda),

    B2 for :math:`\sum_{t\in S}D_t \le \operatorname{tr}D(H_{SS})` evaluated on :math:`X_S` (a pivot
    projects out the span of the later columns, which the kept columns only enlarge), and B7 with
    :math:`\delta_s = 0` on the kept columns. Hypotheses as for B1/B7 (nearest rounding, no clip; kept
    columns never clip).
    """
    kept_p = owq_kept(ctx)
    s = int(np.count_nonzero(~kept_p))
    note = "; restricted to the quantized columns (OWQ, docs/theory.md section 7)"
    view = cast(RunContext, _QuantizedColumns(ctx, (~kept_p).astype(float)))
    out = [dataclasses.replace(b, reference=b.reference + note) for b in b1(view) + b7(view)]
    if s > 0:
        lead = cast(RunContext, _LeadingColumns(ctx, s))
        out += [dataclasses.replace(b, quantity="sum_{t quantized} D_t", reference=b.reference + note)
                for b in b2(lead)]
    return out


def unavailable(ctx: RunContext) -> list[str]:
    """Labels that :func:`evaluate` leaves out because ``ctx`` holds statistics, not samples (none for
    contexts with data): the per-sample forms of the run's bounds (``Entry.per_sample``, :func:`per_sample`)
    and B5.uniform when the sup norm was not measured (module notes)."""
    if ctx.has_data or ctx.exact:
        return []
    names = ctx.entry.bound_names(ctx.run.rounding)
    out = [label for name, labels in ctx.entry.per_sample if name in names for label in labels]
    if "b5" in names and ctx.err_inf is None:
        out.append("B5.uniform")  # b5's uniform form reads the measured sup norm
    return out


# Bound functions by registry name (Entry.bounds), one signature: those without p, and b8 if nearest, ignore p.
_BOUNDS = {"b4": b4, "b5": b5, "b6": b6, "b8": b8, "b10": b10} | {
    name: lambda ctx, p, bound=bound: bound(ctx) for name, bound in {
        "b1": b1, "b2": b2, "b3": b3, "b7": b7, "b9": b9, "b11": b11, "rtn": rtn_bounds, "l1": l1,
        "owq": owq_bounds}.items()}


def evaluate(ctx: RunContext, p: float = 1e-3) -> list[BoundCheck]:
    """Every bound of THEORY.md that the run's registry row names (:mod:`ptqtheory.registry`), in its
    order, also where its hypotheses fail on some rows (``applies`` is False there, so that a report
    shows why nothing is claimed). Exact-arithmetic runs get none (square roots and logarithms)."""
    p = check_probability("p", p)
    if ctx.exact:
        return []
    out: list[BoundCheck] = []
    for name in ctx.entry.bound_names(ctx.run.rounding):
        out += _BOUNDS[name](ctx, p)
    return out
