r"""A1, round to nearest (or stochastic rounding) with no error feedback: :math:`q = Q(w)`."""

from __future__ import annotations

from .._validate import is_torch
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import Trace, finish, setup


def rtn(W, grid: Grid | None = None, rounding: str = "nearest", seed: SeedLike = None) -> Run:
    r"""Round every weight independently (THEORY.md A1).

    Parameters
    ----------
    W : array_like, shape (n, N) or (N,)
        Weights (rows are output channels).
    grid : Grid
        The alphabet; groups are taken as fitted (RTN moves no weights, so nothing is refitted).
    rounding : {"nearest", "stochastic"}
        Stochastic rounding needs ``seed``.
    seed : int or numpy Generator, optional

    Returns
    -------
    Run
        With ``eta = w - q`` and ``x = w``.

    Notes
    -----
    Comparison bounds (THEORY.md): :math:`E\|X\eta\|^2 \le (\delta^2/4)\|X\|_F^2` (stochastic) and
    :math:`\|X\eta\|^2 \le \|X\|_{op}^2 N \delta^2/4` (nearest).
    """
    if is_torch(W):
        from ..torch_backend import rtn as _torch_rtn

        return _torch_rtn(W, grid, rounding, seed)
    s = setup(W, None, 0.0, grid, rounding, "natural", seed, factor=None)
    s.grid = grid.frozen()
    rounder = s.rounder()
    trace = Trace.empty(s.Wp)
    for t in range(s.Wp.shape[1]):
        trace.record(t, s.Wp[:, t], rounder(t, s.Wp[:, t]))
    run = finish(s, trace, rounder, "rtn", "reference")
    run.grid.rule = grid.rule
    return run


__all__ = ["rtn"]
