r"""Constructions that attain the bounds, so that tightness is shown, not assumed.

:func:`midpoint_weights` builds weights for which every value OPTQ rounds,
:math:`x_t = w_t - \sum_{s<t} L_{ts}\eta_s` (I2), sits at a midpoint of the grid. Then
:math:`|\eta_t| = \delta_t/2` at every step and I2 turns B1 into an equality:
:math:`\|X(w-q)\|^2 + \lambda\|w-q\|^2 = \frac14\sum_t\delta_t^2 D_t`.

Construction: draw integers :math:`k_t`, aim at :math:`x_t = (k_t + \tfrac12 - \epsilon)\delta_t` with a
tiny offset :math:`\epsilon` (default 1e-12), so that :math:`\eta_t = (\tfrac12 - \epsilon)\delta_t`, and set
:math:`w_t = x_t + \sum_{s<t} L_{ts}\eta_s`. The offset keeps every :math:`x_t` off the exact tie, where
float rounding may send :math:`x_t` to either neighbour, flipping the sign of :math:`\eta_t` and moving
all later :math:`x_t` off their midpoints. With :math:`\epsilon` above the float noise of :math:`x_t`, the
bound is attained up to a factor :math:`(1 - 2\epsilon)^2`.
"""

from __future__ import annotations

import numpy as np

from ._validate import as_matrix
from .factor import pivots_from_data
from .orders import resolve_order
from .random import SeedLike, generator

__all__ = ["midpoint_weights"]


def midpoint_weights(
    X, lam: float, delta, n: int = 1, order="natural", seed: SeedLike = 0, k_range: int = 8,
    offset: float = 1e-12,
) -> np.ndarray:
    r"""Weights ``(n, N)`` whose OPTQ run on the grid ``delta * Z`` rounds a midpoint at every step.

    Parameters
    ----------
    X : array_like (m, N)
    lam : float
        Absolute damping (the run must use the same).
    delta : float or array_like (n,) or (n, N)
        Grid step (zero point 0, unbounded grid).
    order : str or array_like
        The order the run will use (``"random"`` needs ``seed``).
    k_range : int
        The integers ``k_t`` are drawn from ``[-k_range, k_range)``.
    offset : float
        :math:`\epsilon`: the targets sit :math:`\epsilon\delta_t` below the midpoints.
    """
    Xa = np.asarray(X, dtype=float)
    N = Xa.shape[1]
    Xa = as_matrix("X", Xa, N)
    gram_diag = np.sum(Xa**2, axis=0)
    H = Xa.T @ Xa + lam * np.eye(N)
    perm = resolve_order(order, N, gram_diag=gram_diag, H=H, seed=seed)
    L = pivots_from_data(Xa[:, perm], lam).L
    d = np.broadcast_to(np.asarray(delta, dtype=float).reshape((-1, 1) if np.ndim(delta) == 1
                                                                else np.shape(delta)), (n, N))
    d_p = d[:, perm]
    k = generator(seed, "data", "midpoint_weights").integers(-k_range, k_range, size=(n, N))
    x_p = (k + 0.5 - offset) * d_p
    eta_p = (0.5 - offset) * d_p
    W_p = x_p + eta_p @ np.tril(L, -1).T
    return np.ascontiguousarray(W_p[:, np.argsort(perm)])  # column perm[j] of W: column j of W_p
