r"""A5, GPFQ (greedy path-following quantization, Lybrand & Saab)."""

from __future__ import annotations

from .. import _linalg
from .._validate import check_choice
from ..engine import DeadColumns, Rounding, gpfq_sweep
from ..engine import dead_columns as check_dead
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import Trace, finish, setup


def gpfq(
    W, X, Xt, *, grid: Grid | None = None, rounding: Rounding = "nearest", seed: SeedLike = None,
    order="natural", dead_columns: DeadColumns = "raise",
) -> Run:
    r"""GPFQ (THEORY.md A5) on numpy arrays, float64 or exact; see :func:`ptqtheory.gpfq`.

    .. math::
        u_0 = 0,\quad q_t = Q\Big(\frac{\tilde X_t^T(u_{t-1} + w_t X_t)}{\|\tilde X_t\|^2}\Big),\quad
        u_t = u_{t-1} + w_t X_t - q_t \tilde X_t .
    """
    policy = check_choice("dead_columns", dead_columns, ("raise", "round"))
    if Xt is None:
        raise ValueError("Xt is required: the inputs from the partly quantized model (use Xt=X if none)")
    s = setup(W, X, 0.0, grid, rounding, order, seed, Xt=Xt, factor=None)
    s.grid = grid.frozen()
    X_, Xt_ = s.Xp, s.Xtp
    norms = _linalg.sq_norms(Xt_, axis=0)
    alive = [bool(v > 0) for v in norms]
    check_dead(alive, s.order, policy, s.notes)
    # X_^T[t] is column t; X_t^T Xt_t by the same product as a step would form it.
    cross = [_linalg.dot(X_[:, t], Xt_[:, t]) if alive[t] else 0 for t in range(len(norms))]
    rounder = s.rounder()
    trace = Trace.empty(s.Wp)
    u = gpfq_sweep(s.Wp, X_.T, Xt_.T, norms, cross, alive, rounder, trace)
    run = finish(s, trace, rounder, "gpfq", "reference", residual=u[0] if s.vector else u)
    run.grid.rule = grid.rule
    return run


__all__ = ["gpfq"]
