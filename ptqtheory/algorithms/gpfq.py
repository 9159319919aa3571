r"""A5, GPFQ (greedy path-following quantization, Lybrand & Saab)."""

from __future__ import annotations

import numpy as np

from .. import _linalg
from .._validate import check_choice, is_torch
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import Trace, finish, setup


def gpfq(
    W,
    X,
    Xt,
    grid: Grid | None = None,
    rounding: str = "nearest",
    seed: SeedLike = None,
    order="natural",
    dead_columns: str = "raise",
) -> Run:
    r"""GPFQ (THEORY.md A5): follow the output path, one column at a time.

    .. math::
        u_0 = 0,\quad q_t = Q\Big(\frac{\tilde X_t^T(u_{t-1} + w_t X_t)}{\|\tilde X_t\|^2}\Big),\quad
        u_t = u_{t-1} + w_t X_t - q_t \tilde X_t,

    so that :math:`u_N = Xw - \tilde X q` (identity I6). All rows run together; the state
    :math:`u` has shape ``(n, m)`` and is returned as ``run.residual``.

    Parameters
    ----------
    X, Xt : array_like, shape (m, N)
        Float-model and quantized-model inputs (pass ``Xt=X`` when they agree).
    dead_columns : {"raise", "round"}
        A column with :math:`\tilde X_t = 0` leaves the step undefined. ``"raise"`` refuses;
        ``"round"`` rounds :math:`w_t` itself there and records the columns in ``run.notes``.

    Notes
    -----
    There is no damping in GPFQ (``run.lam`` is 0). The grid is used as fitted: GPFQ moves no
    weights, so min-max groups are not refitted.

    References
    ----------
    Lybrand & Saab, "A greedy algorithm for quantizing neural networks", JMLR 2021;
    Zhang & Saab, "SPFQ", arXiv 2309.10975.
    """
    if is_torch(W, X, Xt):
        from ..torch_backend import gpfq as _torch_gpfq

        return _torch_gpfq(W, X, Xt, grid, rounding, seed, order, dead_columns)
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
