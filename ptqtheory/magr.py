r"""MagR: weight magnitude reduction before quantization, with a duality-gap certificate.

Per output channel (row) :math:`w`, MagR replaces :math:`w` by

.. math:: v^\star = \arg\min_v\ \tfrac12\,(v - w)^T\hat G\,(v - w) + \alpha\|v\|_\infty,
   \qquad \hat G = X^TX / \lambda_{\max}(X^TX),

a vector that the data cannot tell apart from :math:`w` (:math:`Xv \approx Xw`) but whose largest
magnitude is smaller, so that a min-max grid fitted to :math:`v` has a smaller step. It is solved by
proximal gradient descent with step 1 (the gradient :math:`\hat G(v - w)` is 1-Lipschitz after the
normalization):

.. math:: v^{(k+1)} = \operatorname{prox}_{\alpha\|\cdot\|_\infty}\big(v^{(k)} - \hat G(v^{(k)} - w)\big),
   \qquad \operatorname{prox}_{\alpha\|\cdot\|_\infty}(x) = x - \alpha\,P_{\|\cdot\|_1\le 1}(x/\alpha),

the prox by Moreau's identity (the conjugate of :math:`\alpha\|\cdot\|_\infty` is the indicator of the
:math:`\ell_1` ball of radius :math:`\alpha`), the projection onto the :math:`\ell_1` ball by sorting
(Duchi, Shalev-Shwartz, Singer & Chandra 2008). Then :math:`v` is quantized with OPTQ or RTN.

**Certificate** (exact a-posteriori statement). For any :math:`v`, with :math:`e = v - w`,
:math:`r = \hat Ge` and :math:`s = \min(1, \alpha/\|r\|_1)`, the point :math:`u = -sr` is feasible for
the Fenchel dual :math:`\max_u -g^*(-u) - h^*(u)` (:math:`g = \frac12 e^T\hat Ge`,
:math:`h = \alpha\|\cdot\|_\infty`, :math:`h^*` the indicator of :math:`\|u\|_1\le\alpha`, and
:math:`-u = \hat G(se)` lies in the range of :math:`\hat G`), with value
:math:`-s\,r^Tw - \frac{s^2}{2}e^T\hat Ge`. The duality gap

.. math:: \mathrm{gap}(v) = \tfrac12 e^T\hat Ge + \alpha\|v\|_\infty + s\,r^Tw + \tfrac{s^2}2 e^T\hat Ge
   \ \ge\ P(v) - P(v^\star) \ \ge 0

bounds how far the returned :math:`v` is from solving its problem; it is 0 exactly at the optimum
(there :math:`s = 1` and :math:`-r^Tv = \alpha\|v\|_\infty`). Proof and the end-to-end bound
:math:`\|X(w - q)\| \le \|X(w - v)\| + \|X(v - q)\|` with B1 on :math:`v`: ``docs/methods.md``.

**Group-wise variant** (``group_size=g``, for grids with column groups): the penalty is
:math:`\alpha\sum_g\|v_g\|_\infty` over the column groups of the grid, its prox is the row prox applied
group by group, and the certificate takes :math:`s = \min(1, \min_g \alpha/\|r_g\|_1)` (feasible for
the dual, whose constraint is :math:`\|u_g\|_1\le\alpha` for every group); the gap formula is unchanged
with :math:`\alpha\|v\|_\infty` replaced by the group sum, and is again 0 at the optimum.

Choices where the paper's text was not available, following the authors' code
(``AozhongZhang/MagR``, read, not copied): the data are normalized by the largest eigenvalue of
:math:`X^TX` (so ``alpha`` is relative to that scale), step 1, 200 iterations and ``alpha = 1e-3`` per
channel, 150 iterations and ``alpha = 1e-4`` group-wise (the defaults here), no damping inside MagR. Their
code builds :math:`X^TX` from the last calibration batch only; here it is all the calibration data (the
paper's objective). Their group-wise code needs ``N`` divisible by the group size; here the last group
may be shorter, as the grid's last group is (:class:`ptqtheory.MinMax`).

References
----------
Zhang, Zhang, Saab et al., "MagR: Weight Magnitude Reduction for Enhancing Post-Training Quantization",
NeurIPS 2024 (arXiv 2406.00800); Duchi et al., "Efficient projections onto the l1-ball", ICML 2008.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_matrix, as_weights

__all__ = ["MagRResult", "end_to_end_check", "magr", "magr_bound", "magr_gram", "project_l1_ball", "prox_linf"]


@dataclass(frozen=True)
class MagRResult:
    r"""The preprocessed weights and their certificate (rows are output channels).

    Attributes
    ----------
    V : ndarray, shape (n, N) or (N,)
        The preprocessed weights :math:`v` (quantize these).
    objective : ndarray, shape (n,)
        :math:`P(v) = \frac12(v-w)^T\hat G(v-w) + \alpha\|v\|_\infty` per row.
    gap : ndarray, shape (n,)
        Duality gap per row: :math:`P(v) - P(v^\star) \le \mathrm{gap}`.
    gap_allowance : ndarray, shape (n,)
        Float64 rounding of the gap's evaluation (:mod:`ptqtheory.tolerances` E1-E2): a computed gap
        down to ``-gap_allowance`` is consistent with an exact gap of 0.
    output_change : ndarray, shape (n,)
        :math:`\|X(v - w)\|` per row, unnormalized.
    w_inf, v_inf : ndarray, shape (n,)
        :math:`\|w\|_\infty` and :math:`\|v\|_\infty` per row.
    alpha : float
    iterations : int
    scale : float
        :math:`\lambda_{\max}(X^TX)`, the normalization.
    group_size : int or None
        ``None``: one penalty per row; else the penalty :math:`\alpha\sum_g\|v_g\|_\infty` over column
        groups of this size.
    """

    V: np.ndarray
    objective: np.ndarray
    gap: np.ndarray
    gap_allowance: np.ndarray
    output_change: np.ndarray
    w_inf: np.ndarray
    v_inf: np.ndarray
    alpha: float
    iterations: int
    scale: float
    group_size: int | None = None

    @property
    def certified(self) -> np.ndarray:
        """Rows whose duality gap is consistent with a nonnegative number (always, in exact arithmetic)."""
        return self.gap >= -self.gap_allowance


def project_l1_ball(Y: np.ndarray, radius: float = 1.0) -> np.ndarray:
    r"""Euclidean projection of every row of ``Y`` onto :math:`\{u : \|u\|_1 \le \text{radius}\}`.

    Rows inside the ball are returned unchanged; otherwise :math:`u = \operatorname{sign}(y)(|y| -
    \theta)_+` with the threshold :math:`\theta > 0` that puts :math:`u` on the sphere, found by sorting
    :math:`|y|` (Duchi et al. 2008).
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    A = np.abs(Y)
    inside = np.sum(A, axis=1) <= radius
    mu = -np.sort(-A, axis=1)  # descending
    cums = np.cumsum(mu, axis=1)
    j = np.arange(1, Y.shape[1] + 1)
    # rho: the largest j with mu_j > (cumsum_j - radius) / j (mu_1 always qualifies when outside)
    ok = mu * j > cums - radius
    rho = Y.shape[1] - np.argmax(ok[:, ::-1], axis=1)
    theta = (cums[np.arange(Y.shape[0]), rho - 1] - radius) / rho
    out = np.sign(Y) * np.maximum(A - theta[:, None], 0.0)
    return np.where(inside[:, None], Y, out)


def prox_linf(Y: np.ndarray, alpha: float) -> np.ndarray:
    r""":math:`\operatorname{prox}_{\alpha\|\cdot\|_\infty}` row by row: :math:`\operatorname{sign}(y)
    \min(|y|, \tau)`.

    By Moreau's identity the prox is :math:`y - \alpha P_{\|\cdot\|_1\le1}(y/\alpha)`, and with the
    projection's threshold :math:`\theta` that is :math:`\operatorname{sign}(y)\min(|y|, \tau)`,
    :math:`\tau = \alpha\theta`, where :math:`\sum_i(|y_i| - \tau)_+ = \alpha` (:math:`\tau = 0` when
    :math:`\|y\|_1 \le \alpha`). Since the sum is at least :math:`\max|y| - \tau`, :math:`\tau \ge
    \max|y| - \alpha`: only the entries above :math:`\max|y| - \alpha` can exceed it, so only the
    :math:`k` largest magnitudes are sorted (:math:`k` the most such entries in a row) instead of whole
    rows. :func:`project_l1_ball` is the whole-row route; ``tests/test_magr.py`` compares the two.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    A = np.abs(Y)
    top = np.max(A, axis=1)
    k = max(int(np.max(np.count_nonzero(A > (top - alpha)[:, None], axis=1))), 1)
    # The k largest magnitudes of each row, in decreasing order.
    mu = -np.sort(np.partition(-A, k - 1, axis=1)[:, :k], axis=1) if k < A.shape[1] else -np.sort(-A, axis=1)
    cums = np.cumsum(mu, axis=1)
    j = np.arange(1, mu.shape[1] + 1)
    # rho: the largest j with mu_j > (cumsum_j - alpha) / j, the entries that end above tau.
    rho = mu.shape[1] - np.argmax((mu * j > cums - alpha)[:, ::-1], axis=1)
    tau = np.maximum((cums[np.arange(A.shape[0]), rho - 1] - alpha) / rho, 0.0)
    tau = np.where(np.sum(A, axis=1) <= alpha, 0.0, tau)
    return np.sign(Y) * np.minimum(A, tau[:, None])


def _groups(N: int, group_size: int | None) -> list[slice]:
    """The column groups of the penalty: the grid's (contiguous, the last one possibly shorter)."""
    if group_size is None:
        return [slice(0, N)]
    return [slice(g0, min(g0 + group_size, N)) for g0 in range(0, N, group_size)]


def _prox(Y: np.ndarray, alpha: float, groups: list[slice]) -> np.ndarray:
    r"""The prox of :math:`\alpha\sum_g\|y_g\|_\infty`: separable, so the row prox group by group."""
    if len(groups) == 1:
        return prox_linf(Y, alpha)
    return np.concatenate([prox_linf(Y[:, g], alpha) for g in groups], axis=1)


def _options(alpha, iterations, group_size, N: int) -> tuple[float, int, int | None]:
    """Checked ``(alpha, iterations, group_size)`` with the authors' defaults filled in (module notes)."""
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int | np.integer)
                                   or group_size < 1):
        raise ValueError(f"group_size must be None or an integer >= 1 (the grid's column group); got "
                         f"{group_size!r}")
    grouped = group_size is not None and int(group_size) < N
    if alpha is None:
        alpha = 1e-4 if grouped else 1e-3
    if iterations is None:
        iterations = 150 if grouped else 200
    if isinstance(alpha, bool) or not isinstance(alpha, int | float | np.floating) or not (
            np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0 (the weight of ||v||_inf); got {alpha!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1; got {iterations!r}")
    return float(alpha), int(iterations), (int(group_size) if grouped and group_size is not None else None)


def magr(W, X, *, alpha: float | None = None, iterations: int | None = None,
         group_size: int | None = None) -> MagRResult:
    r"""MagR preprocessing of every row of ``W`` on the calibration data ``X`` (see the module docstring).

    Parameters
    ----------
    W : array_like, shape (n, N) or (N,)
        Weights; rows are output channels.
    X : array_like, shape (m, N)
        Calibration inputs (the layer computes ``X @ W.T``).
    alpha : float, optional
        Weight of the infinity-norm penalty against the normalized data term (> 0). Default ``1e-3``
        per channel, ``1e-4`` with ``group_size`` (the authors' settings).
    iterations : int, optional
        Proximal gradient steps (>= 1). Default 200 per channel, 150 with ``group_size``.
    group_size : int, optional
        Penalize :math:`lpha\sum_g\|v_g\|_\infty` over column groups of this size (the grid's groups:
        ``pt.Grid.minmax(V, bits, group_size=g)``) instead of :math:`lpha\|v\|_\infty`.

    Returns
    -------
    MagRResult
        ``V`` and its certificate. Quantize ``V`` with e.g. ``pt.optq(res.V, X, grid=pt.Grid.minmax(res.V,
        bits=...))``; :func:`ptqtheory.magr_bound` gives the end-to-end bound.
    """
    Wa, vector = as_weights(W)
    N = Wa.shape[1]
    Xa = as_matrix("X", X, N)
    opts = _options(alpha, iterations, group_size, N)
    return _solve(Wa, Xa.T @ Xa, Xa, *opts, vector)


def magr_gram(W, gram, *, alpha: float | None = None, iterations: int | None = None,
              group_size: int | None = None) -> MagRResult:
    r""":func:`magr` from the statistics :math:`X^TX` alone (streamed calibration data).

    The same iteration and certificate; ``output_change`` is then :math:`\sqrt{e^TX^TXe}` (clipped at 0)
    instead of :math:`\|Xe\|` from the samples.

    Parameters
    ----------
    W : array_like, shape (n, N) or (N,)
    gram : array_like, shape (N, N)
        :math:`X^TX` (symmetric positive semidefinite; float64).
    alpha, iterations, group_size
        As in :func:`magr`.
    """
    Wa, vector = as_weights(W)
    N = Wa.shape[1]
    G = np.asarray(gram, dtype=float)
    if G.shape != (N, N):
        raise ValueError(f"gram must be X^T X of shape ({N}, {N}) for W with {N} columns; got {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ValueError("gram has non-finite entries: pass the finite statistics X^T X")
    opts = _options(alpha, iterations, group_size, N)
    return _solve(Wa, G, None, *opts, vector)


def _solve(Wa, G, Xa, alpha: float, iterations: int, group_size: int | None, vector: bool) -> MagRResult:
    scale = float(np.linalg.eigvalsh(G)[-1])
    if not scale > 0:
        raise ValueError("X is zero: MagR needs calibration data with X^T X != 0")
    Gn = G / scale
    groups = _groups(Wa.shape[1], group_size)
    V = Wa.copy()
    for _ in range(iterations):
        V = _prox(V - (V - Wa) @ Gn, alpha, groups)
    return _certificate(Wa, V, Xa, Gn, alpha, iterations, scale, vector, group_size)


def _certificate(W, V, X, Gn, alpha, iterations, scale, vector, group_size=None) -> MagRResult:
    from .tolerances import unit_roundoff

    groups = _groups(W.shape[1], group_size)
    E = V - W
    R = E @ Gn  # rows r = G_hat e (G_hat symmetric)
    quad = np.sum(R * E, axis=1)
    v_inf = np.max(np.abs(V), axis=1)
    penalty = sum(np.max(np.abs(V[:, g]), axis=1) for g in groups)  # sum_g ||v_g||_inf
    # The largest group l1 norm of r decides the dual scaling (every group's constraint must hold).
    r_l1 = np.max(np.stack([np.sum(np.abs(R[:, g]), axis=1) for g in groups]), axis=0)
    with np.errstate(divide="ignore"):
        s = np.where(r_l1 > alpha, alpha / r_l1, 1.0)
    rw = np.sum(R * W, axis=1)
    primal = 0.5 * quad + alpha * penalty
    gap = primal + s * rw + 0.5 * s * s * quad
    # E1-E2: each term is a sum of N products (the quadratic forms of about N^2), rounded with unit u.
    N = W.shape[1]
    u = unit_roundoff("float64")
    absG = np.abs(Gn)
    abs_quad = np.sum((np.abs(E) @ absG) * np.abs(E), axis=1)
    abs_rw = np.sum((np.abs(E) @ absG) * np.abs(W), axis=1)
    allowance = 4 * N * u * (abs_quad * (1 + s * s) + s * abs_rw + alpha * penalty)
    if X is not None:
        out = np.sqrt(np.sum((E @ X.T) ** 2, axis=1))
    else:
        out = np.sqrt(np.maximum(quad * scale, 0.0))
    return MagRResult(V=V[0] if vector else V, objective=primal, gap=gap, gap_allowance=allowance,
                      output_change=out, w_inf=np.max(np.abs(W), axis=1), v_inf=v_inf, alpha=alpha,
                      iterations=iterations, scale=scale, group_size=group_size)


def magr_bound(result: MagRResult, W, run, X):
    r"""End-to-end bound of MagR followed by OPTQ, per row (a :class:`~ptqtheory.bounds.BoundCheck`):

    .. math:: \|X(w - q)\| \le \|X(w - v)\| + \|X(v - q)\|
       \le \|X(w - v)\| + \Big(	frac14\sum_t\delta_t^2D_t - \lambda\|v - q\|^2\Big)^{1/2},

    the triangle inequality and B1 for the OPTQ run on :math:`v` (``run = pt.optq(result.V, X, ...)``,
    with the step :math:`\delta` of the grid fitted to :math:`v`). It holds where B1's hypotheses hold for
    that run (nearest rounding, no clipping).
    """
    from .api import certify

    Wa = np.atleast_2d(np.asarray(W, dtype=float))
    V = np.atleast_2d(np.asarray(result.V, dtype=float))
    if Wa.shape != V.shape or np.atleast_2d(np.asarray(run.W)).shape != V.shape:
        raise ValueError("W, result.V and run.W must have the same shape (run = pt.optq(result.V, X, ...))")
    if not np.array_equal(np.atleast_2d(np.asarray(run.W, dtype=float)), V):
        raise ValueError("run must quantize result.V (run = pt.optq(result.V, X, ...)), not other weights")
    Xa = np.asarray(X, dtype=float)
    Q = np.atleast_2d(np.asarray(run.Q, dtype=float))
    change = np.sqrt(np.sum(((Wa - V) @ Xa.T) ** 2, axis=1))
    empirical = np.sqrt(np.sum(((Wa - Q) @ Xa.T) ** 2, axis=1))
    m, N = Xa.shape
    return end_to_end_check(certify(run, Xa).bound("B1"), change, empirical, terms=m * N)


def end_to_end_check(b1, change, empirical, terms: int):
    r"""The MagR + OPTQ check from its parts: B1 of the run on :math:`v` (a ``BoundCheck``),
    :math:`\|X(w - v)\|` and :math:`\|X(w - q)\|` per row, each evaluated in float64 from ``terms``
    products (:math:`mN` from samples, :math:`N^2` from :math:`X^TX`)."""
    from .bounds import BoundCheck
    from .tolerances import evaluation_allowance, unit_roundoff

    step = np.sqrt(np.maximum(np.asarray(b1.value, float), 0.0))
    value = change + step
    # B1's own allowance enters under the square root (sqrt(a + b) <= sqrt(a) + sqrt(b)); the norms are
    # each evaluated with a relative error of about (terms) u.
    atol = np.sqrt(np.maximum(np.asarray(b1.atol, float), 0.0)) + evaluation_allowance(
        2 * terms * unit_roundoff("float64"), change + step + empirical)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(value > 0, np.maximum(empirical - atol, 0.0) / value, 0.0)
    return BoundCheck("MagR", "||X(w-q)||_2", "deterministic", value, empirical, ratio, b1.hypotheses,
                      "MagR + OPTQ: triangle inequality and B1 on v (docs/methods.md)", atol=atol,
                      extra={"output_change": change, "B1_sqrt": step})
