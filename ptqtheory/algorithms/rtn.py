r"""A1, round to nearest (or stochastic rounding) with no error feedback: :math:`q = Q(w)`."""

from __future__ import annotations

from ..engine import Rounding, rtn_run
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import finish, setup


def rtn(W, *, grid: Grid | None = None, rounding: Rounding = "nearest", seed: SeedLike = None) -> Run:
    r"""RTN (THEORY.md A1), :math:`q = Q(w)` entry by entry, on numpy arrays; see :func:`ptqtheory.rtn`."""
    return rtn_run(setup(W, None, 0.0, grid, rounding, "natural", seed, factor=None), grid, finish)


__all__ = ["rtn"]
