r"""How far from optimal: the lower bound L1 for every quantizer and OPTQ's optimality ratio.

With :math:`\hat X = [X; \sqrt\lambda I]`, :math:`H = \hat X^T\hat X` and one row :math:`w` on the
unbounded grid :math:`\delta_t(\mathbb Z - z_t)` (steps per column allowed), the errors
:math:`\hat X(w - q)` a quantizer can reach are the points of the shifted lattice :math:`y - \Lambda`,
:math:`y = \hat Xw`, :math:`\Lambda = \hat X\operatorname{diag}(\delta)\mathbb Z^N`, an N-dimensional
lattice of volume :math:`V = \prod_t\delta_t \det(H)^{1/2}`.

**L1** (lower bound, every quantizer). If :math:`w` is uniform modulo the grid (each
:math:`w_t \bmod \delta_t` uniform, independent), then for *any* map :math:`w \mapsto q(w)` onto the
grid (unbounded or finite)

.. math:: E\|\hat X(w - q)\|^2 \ \ge\ N\,G_N\,V^{2/N} = N\,G_N\,\operatorname{GM}_t(\delta_t^2D_t),

with :math:`G_N = \Gamma(N/2+1)^{2/N}/((N+2)\pi)` the normalized second moment of the N-ball
(:math:`G_1 = 1/12`, decreasing to :math:`1/(2\pi e)`) and :math:`\prod_t D_t = \det H` (I1).

**Optimality ratio.** On the same distribution, without clipping, OPTQ's mean error is
:math:`\sum_t \delta_t^2D_t/12` (each :math:`\eta_t` uniform on :math:`[-\delta_t/2, \delta_t/2)` and
independent of the past), stochastic OPTQ's :math:`\sum_t\delta_t^2D_t/6`. Divided by L1:

.. math:: \rho = \frac{\operatorname{AM}_t(\delta_t^2D_t)}{c\,G_N\operatorname{GM}_t(\delta_t^2D_t)},
   \qquad c = 12 \text{ (nearest)},\ 6 \text{ (stochastic)},

an upper bound on OPTQ's expected error over the best possible quantizer's. The order of the columns
changes only the arithmetic mean of the pivots, never their geometric mean (their product is
:math:`\det H` for every order). Proofs: ``docs/theory.md`` section L1; algebra: ``proofs_check``.

References
----------
Conway & Sloane, "Sphere Packings, Lattices and Groups", ch. 2 and 21 (normalized second moment;
the ball's is the least); Chen et al., "The Geometry of LLM Quantization: GPTQ as Babai's Nearest
Plane Algorithm", arXiv 2507.18553.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

__all__ = ["ball_second_moment", "l1_bound", "mean_error", "optimality_ratio", "ratio_floor", "scaled_pivots"]

RATIO_CONSTANT = {"nearest": 12.0, "stochastic": 6.0}
"""``c`` in the ratio: :math:`E\\,\\eta^2 = \\delta^2/c` for :math:`x` uniform modulo :math:`\\delta`
(nearest: :math:`\\delta^2/12`; unbiased stochastic: :math:`E\\,r(\\delta - r) = \\delta^2/6`)."""


def ball_second_moment(N: int) -> float:
    r""":math:`G_N = \Gamma(N/2 + 1)^{2/N} / ((N + 2)\pi)`, the normalized second moment of the N-ball.

    Computed through ``lgamma`` (no overflow for large N). :math:`G_1 = 1/12`, :math:`G_2 = 1/(4\pi)`,
    and :math:`G_N \downarrow 1/(2\pi e)`.
    """
    if isinstance(N, bool) or not isinstance(N, int | np.integer) or N < 1:
        raise ValueError(f"N must be an integer >= 1 (the lattice dimension); got {N!r}")
    return math.exp(2.0 / N * math.lgamma(N / 2 + 1)) / ((N + 2) * math.pi)


def scaled_pivots(D, delta) -> np.ndarray:
    r""":math:`\delta_t^2 D_t` per row: ``D`` the pivots ``(N,)`` and ``delta`` the steps ``(n, N)``
    (or ``(N,)`` for one row), both in processing order."""
    D = np.asarray(D, dtype=float)
    d = np.atleast_2d(np.asarray(delta, dtype=float))
    if D.ndim != 1 or d.shape[-1] != D.shape[0]:
        raise ValueError(f"D must have shape (N,) and delta (n, N) with the same N; got {D.shape} and "
                         f"{d.shape}")
    if not (np.all(np.isfinite(D)) and np.all(D > 0)):
        raise ValueError("every pivot D_t must be finite and > 0 (H positive definite); damp H (lam > 0)")
    if not (np.all(np.isfinite(d)) and np.all(d > 0)):
        raise ValueError("every grid step delta must be finite and > 0")
    return d * d * D[None, :]


def _log_gm(S: np.ndarray) -> np.ndarray:
    # The geometric mean through logs: prod_t delta_t^2 D_t over- or underflows for N in the thousands.
    return np.mean(np.log(S), axis=1)


def l1_bound(D, delta) -> np.ndarray:
    r"""L1 per row: :math:`N\,G_N\,\operatorname{GM}_t(\delta_t^2D_t)`, a lower bound on
    :math:`E\|\hat X(w - q)\|^2` of every quantizer onto the grid when :math:`w` is uniform modulo the grid."""
    S = scaled_pivots(D, delta)
    N = S.shape[1]
    return N * ball_second_moment(N) * np.exp(_log_gm(S))


def mean_error(D, delta, rounding: Literal["nearest", "stochastic"] = "nearest") -> np.ndarray:
    r"""OPTQ's mean :math:`E\|\hat X(w - q)\|^2 = \sum_t\delta_t^2D_t / c` per row for :math:`w` uniform
    modulo the grid, without clipping (``c`` from :data:`RATIO_CONSTANT`)."""
    if rounding not in RATIO_CONSTANT:
        raise ValueError(f"rounding must be 'nearest' or 'stochastic'; got {rounding!r}")
    return np.sum(scaled_pivots(D, delta), axis=1) / RATIO_CONSTANT[rounding]


def ratio_floor(N: int, rounding: Literal["nearest", "stochastic"] = "nearest") -> float:
    r""":math:`1/(c\,G_N)`: the optimality ratio when all :math:`\delta_t^2D_t` are equal (AM = GM), the
    least any order can reach (the scalar quantizer's space-filling loss for nearest rounding)."""
    if rounding not in RATIO_CONSTANT:
        raise ValueError(f"rounding must be 'nearest' or 'stochastic'; got {rounding!r}")
    return 1.0 / (RATIO_CONSTANT[rounding] * ball_second_moment(N))


def optimality_ratio(D, delta, rounding: Literal["nearest", "stochastic"] = "nearest") -> np.ndarray:
    r""":math:`\rho = \operatorname{AM}(\delta_t^2D_t) / (c\,G_N\operatorname{GM}(\delta_t^2D_t))` per row:
    OPTQ's mean error over L1, so at least its mean error over the best quantizer's (uniform model)."""
    if rounding not in RATIO_CONSTANT:
        raise ValueError(f"rounding must be 'nearest' or 'stochastic'; got {rounding!r}")
    S = scaled_pivots(D, delta)
    N = S.shape[1]
    # AM / GM with the scale divided out first: both are homogeneous of degree one in S.
    scale = np.max(S, axis=1, keepdims=True)
    T = S / scale
    am = np.mean(T, axis=1)
    gm = np.exp(_log_gm(T))
    return am / (RATIO_CONSTANT[rounding] * ball_second_moment(N) * gm)
