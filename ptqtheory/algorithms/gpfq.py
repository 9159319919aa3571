r"""A5, GPFQ (greedy path-following quantization, Lybrand & Saab)."""

from __future__ import annotations

import numpy as np

from .. import _linalg
from .._validate import check_choice
from ..engine import DeadColumns, Rounding
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
    check_choice("dead_columns", dead_columns, ("raise", "round"))
    if Xt is None:
        raise ValueError("Xt is required: the inputs from the partly quantized model (use Xt=X if none)")
    s = setup(W, X, 0.0, grid, rounding, order, seed, Xt=Xt, factor=None)
    s.grid = grid.frozen()
    X_, Xt_ = s.Xp, s.Xtp
    norms = _linalg.sq_norms(Xt_, axis=0)
    dead = [int(s.order[t]) for t in range(len(norms)) if not norms[t] > 0]
    if dead and dead_columns == "raise":
        raise ValueError(
            f"Xt has zero columns {dead[:10]} (dead inputs): GPFQ's step divides by ||Xt_t||^2. "
            "Pass dead_columns='round' to round those weights to nearest (recorded), or drop the columns."
        )
    if dead:
        s.notes.append(f"dead columns {dead} of Xt: their weights were rounded directly")
    rounder = s.rounder()
    trace = Trace.empty(s.Wp)
    n, m = s.Wp.shape[0], X_.shape[0]
    u = _linalg.zeros_like(s.Wp, (n, m))
    for t in range(s.Wp.shape[1]):
        w_t = s.Wp[:, t]
        if norms[t] > 0:
            cross = _linalg.dot(X_[:, t], Xt_[:, t])
            x = (_linalg.dot(u, Xt_[:, t]) + w_t * cross) / norms[t]
        else:
            x = w_t.copy()
        q = rounder(t, x)
        trace.record(t, x, q)
        u = u + np.outer(w_t, X_[:, t]) - np.outer(q, Xt_[:, t])
    run = finish(s, trace, rounder, "gpfq", "reference", residual=u[0] if s.vector else u)
    run.grid.rule = grid.rule
    return run


__all__ = ["gpfq"]
