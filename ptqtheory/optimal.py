r"""The exact optimum on the grid: Schnorr-Euchner enumeration started from OPTQ's solution.

For one row :math:`w`, the problem

.. math:: \min_{q \in \text{grid}} \|\hat X(w - q)\|^2 = \|X(w - q)\|^2 + \lambda\|w - q\|^2

is a closest-vector problem in the lattice :math:`\hat X\operatorname{diag}(\delta)\mathbb Z^N`
(restricted to a box when the grid is finite). In processing order, the QR factorization of
:math:`\hat X` with its columns reversed gives a *lower* triangular :math:`T` with
:math:`H = T^TT` (``docs/theory.md``, section "The exact optimum"), so

.. math:: \|\hat X e\|^2 = \sum_t D_t\,(c_t - q_t)^2,\qquad
   c_t = w_t + \sum_{s<t} \frac{T_{ts}}{T_{tt}}\,e_s,\qquad D_t = T_{tt}^2,\quad e = w - q :

the cost is a sum of nonnegative terms, term :math:`t` depending on :math:`q_1..q_t` only. Deciding
:math:`q_t` greedily (the nearest grid point to :math:`c_t`) is OPTQ: :math:`c_t = x_t` and the
terms are I2's :math:`\eta_t^2D_t` (Babai's nearest-plane algorithm in this order). A depth-first
search that tries at every level the grid points in order of distance to :math:`c_t`
(Schnorr & Euchner's zig-zag) and prunes every partial sum that reaches the best cost found so far
visits every point that could be better, so when it finishes the incumbent is optimal. It starts
from OPTQ's solution, the first leaf of the zig-zag, as the first radius.

Practical up to a few dozen columns: the number of nodes grows exponentially with N, at a rate set by
how far OPTQ is from optimal (``benchmarks/optimal_scaling.py`` measures where one second suffices).

References
----------
Schnorr & Euchner, "Lattice basis reduction: improved practical algorithms and solving subset sum
problems", Math. Programming 66 (1994); Agrell, Eriksson, Vardy & Zeger, "Closest point search in
lattices", IEEE Trans. Inf. Theory 48 (2002); Chen et al., arXiv 2507.18553 (GPTQ as Babai).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .grids import Grid

__all__ = ["Optimum", "optimal"]

OrderName = Literal["natural", "decreasing_norm", "increasing_norm", "min_pivot", "random"]


@dataclass(frozen=True)
class Optimum:
    r"""The result of :func:`optimal` (original column order).

    Attributes
    ----------
    Q : ndarray, shape (n, N) or (N,)
        The best grid point found per row (the optimum where ``proven``).
    cost : ndarray, shape (n,)
        :math:`\|X(w - q)\|^2 + \lambda\|w - q\|^2` of ``Q``, evaluated from the data.
    start_cost : ndarray, shape (n,)
        The same for OPTQ's solution (the first radius).
    proven : ndarray of bool, shape (n,)
        The search finished within the budget: no grid point is better than ``Q`` (up to the float64
        rounding of the costs, a relative :math:`O(N\epsilon)`).
    nodes : ndarray of int, shape (n,)
        Search-tree nodes visited per row (grid values tried that passed the radius test).
    order : ndarray
        The processing order of the search (OPTQ's order).
    lam : float
        The absolute damping used.
    """

    Q: np.ndarray
    cost: np.ndarray
    start_cost: np.ndarray
    proven: np.ndarray
    nodes: np.ndarray
    order: np.ndarray
    lam: float

    @property
    def ratio(self) -> np.ndarray:
        """OPTQ's cost over the optimum's, per row (1 where OPTQ is optimal; ``inf`` if the optimum is 0
        and OPTQ's is not)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            r = self.start_cost / self.cost
        return np.where(self.start_cost == self.cost, 1.0, r)


def optimal(
    W,
    X,
    lam=0.0,
    *,
    grid: Grid,
    order: OrderName | np.ndarray = "natural",
    budget: int = 1_000_000,
    seed=None,
) -> Optimum:
    r"""The exact minimizer of :math:`\|X(w - q)\|^2 + \lambda\|w - q\|^2` over the grid, per row.

    Parameters
    ----------
    W : array_like, shape (n, N) or (N,)
        Weights (rows are output channels).
    X : array_like, shape (m, N)
        Calibration inputs.
    lam : float or Damping
        Damping, as for :func:`ptqtheory.optq`.
    grid : Grid
        A fixed grid, finite or unbounded, per row or per entry. A min-max grid that refits groups
        from the current weights is refused: the optimum is over one fixed set of points (pass
        ``run.grid`` of a finished run, or ``grid.frozen()``).
    order : str or array_like
        Processing order of OPTQ (the start) and of the search; the optimum does not depend on it.
    budget : int
        Most nodes per row; a row whose search is cut off keeps its best point, ``proven=False``.
    seed : int, optional
        Only for ``order="random"``.

    Returns
    -------
    Optimum
    """
    from .algorithms import optq

    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pt.Grid, e.g. pt.Grid(delta) or pt.Grid.minmax(W, bits=4); got "
                        f"{type(grid).__name__}")
    if grid.refits_groups:
        raise ValueError("grid refits its groups from the current weights (Grid.minmax(..., group_size=g)), so "
                         "its points depend on the run; the optimum is over a fixed grid: pass grid.frozen() "
                         "or run.grid of a finished run")
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (nodes per row); got {budget!r}")
    run = optq(W, X, lam=lam, grid=grid, order=order, seed=seed)
    Wa = np.atleast_2d(np.asarray(run.W, dtype=float))
    Q0 = np.atleast_2d(np.asarray(run.Q, dtype=float))
    n, N = Wa.shape
    perm = np.asarray(run.order)
    lam_abs = float(run.lam)
    # OPTQ's own factorization H = U_1 diag(D) U_1^T (from the data by QR) is the search's: the lower
    # factor is T = U_H^T, so T_ts / T_tt = (U_1)_st and D_t = T_tt^2 (docs/optimality.md, section 1).
    D = np.asarray(run.pivots.D, dtype=float)
    Ts = np.asarray(run.pivots.U1, dtype=float).T  # row t: T_ts / T_tt; the diagonal (1) is never read
    delta, zero, lo, hi = (np.asarray(a, dtype=float)[:, perm] for a in grid.views(n, N))
    Qp = np.empty((n, N))
    proven = np.zeros(n, dtype=bool)
    nodes = np.zeros(n, dtype=np.int64)
    for i in range(n):
        Qp[i], proven[i], nodes[i] = _search_row(
            Wa[i, perm], Ts, D, delta[i], zero[i], lo[i], hi[i], Q0[i, perm], int(budget))
    Q = np.empty_like(Qp)
    Q[:, perm] = Qp
    Xa = np.asarray(X, dtype=float)

    def cost(Qm):
        E = Wa - Qm
        return np.sum((E @ Xa.T) ** 2, axis=1) + lam_abs * np.sum(E * E, axis=1)

    vector = np.ndim(run.W) == 1
    return Optimum(Q=Q[0] if vector else Q, cost=cost(Q), start_cost=cost(Q0), proven=proven, nodes=nodes,
                   order=perm, lam=lam_abs)


def _search_row(w, Ts, D, delta, zero, lo, hi, q_start, budget: int):
    """Depth-first Schnorr-Euchner search for one row; returns ``(q, proven, nodes)``."""
    N = w.shape[0]
    e = np.zeros(N)
    codes = np.zeros(N)
    best_codes = q_start / delta + zero  # the start's codes (exact: q = delta (k - z))
    best_codes = np.round(best_codes)
    e_start = w - q_start
    best = float(sum(D[t] * (e_start[t] + Ts[t, :t] @ e_start[:t]) ** 2 for t in range(N)))
    partial = [0.0] * (N + 1)
    kc = [0.0] * N  # the centre c_t in code units: c_t / delta_t + z_t
    up = [0.0] * N  # next code to try above the centre
    dn = [0.0] * N  # next code to try below
    Dl, dl, zl, lol, hil = D.tolist(), delta.tolist(), zero.tolist(), lo.tolist(), hi.tolist()

    def enter(t: int) -> None:
        c = w[t] + (Ts[t, :t] @ e[:t] if t else 0.0)
        kc[t] = c / dl[t] + zl[t]
        k0 = min(max(math.floor(kc[t] + 0.5), lol[t]), hil[t])
        up[t], dn[t] = k0, k0 - 1

    def step_cost(t: int, k: float) -> float:
        g = dl[t] * (kc[t] - k)
        return Dl[t] * g * g

    nodes = 0
    t = 0
    enter(0)
    while True:
        # The nearer of the two next candidates; the farther one costs at least as much, so when the
        # nearer one reaches the radius the level is exhausted.
        ku = up[t] if up[t] <= hil[t] else None
        kd = dn[t] if dn[t] >= lol[t] else None
        if ku is None and kd is None:
            k = None
        elif kd is None or (ku is not None and abs(ku - kc[t]) <= abs(kc[t] - kd)):
            k = ku
        else:
            k = kd
        inc = step_cost(t, k) if k is not None else math.inf
        if k is None or partial[t] + inc >= best:
            if t == 0:
                return _values(best_codes, delta, zero), True, nodes
            t -= 1
            continue
        if k == up[t]:
            up[t] += 1
        else:
            dn[t] -= 1
        nodes += 1
        if nodes > budget:
            return _values(best_codes, delta, zero), False, nodes - 1
        codes[t] = k
        e[t] = w[t] - dl[t] * (k - zl[t])
        partial[t + 1] = partial[t] + inc
        if t == N - 1:
            best = partial[N]
            best_codes = codes.copy()
        else:
            t += 1
            enter(t)


def _values(codes: np.ndarray, delta: np.ndarray, zero: np.ndarray) -> np.ndarray:
    return delta * (codes - zero)
