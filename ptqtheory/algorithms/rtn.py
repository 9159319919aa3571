r"""A1, round to nearest (or stochastic rounding) with no error feedback: :math:`q = Q(w)`."""

from __future__ import annotations

from ..engine import Rounding
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import Trace, finish, setup


def rtn(W, *, grid: Grid | None = None, rounding: Rounding = "nearest", seed: SeedLike = None) -> Run:
    r"""RTN (THEORY.md A1), :math:`q = Q(w)` entry by entry, on numpy arrays; see :func:`ptqtheory.rtn`."""
    s = setup(W, None, 0.0, grid, rounding, "natural", seed, factor=None)
    s.grid = grid.frozen()
    rounder = s.rounder()
    q = rounder.round_all(s.Wp)
    run = finish(s, Trace(x=s.Wp.copy(), q=q, eta=s.Wp - q), rounder, "rtn", "reference")
    run.grid.rule = grid.rule
    return run


__all__ = ["rtn"]
