r"""A1, round to nearest (or stochastic rounding) with no error feedback: :math:`q = Q(w)`."""

from __future__ import annotations

from ..alphabets import Alphabet
from ..engine import Rounding, rtn_run
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import finish, setup


def rtn(W, grid: Grid | Alphabet | None = None, rounding: Rounding = "nearest", seed: SeedLike = None, *,
        allow_tf32: bool = False) -> Run:
    r"""Round every weight independently (THEORY.md A1): :math:`q = Q(w)`.

    Parameters
    ----------
    grid : Grid
        Required; used as fitted (RTN moves no weights, so no group is refitted).

    Other parameters are as for :func:`ptqtheory.optq` (stochastic rounding: the same per-entry uniforms).

    Returns
    -------
    Run
        With ``eta = w - q`` and ``x = w``.

    Notes
    -----
    Comparison bounds (THEORY.md): :math:`E\|X\eta\|^2 \le (\delta^2/4)\|X\|_F^2` (stochastic) and
    :math:`\|X\eta\|^2 \le \|X\|_{op}^2 N \delta^2/4` (nearest).
    """
    return rtn_run(setup(W, None, 0.0, grid, rounding, "natural", seed, factor=None), grid, finish)


__all__ = ["rtn"]
