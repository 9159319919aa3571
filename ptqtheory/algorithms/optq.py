r"""A2 / A2' / A2s: OPTQ (= GPTQ), its paper iteration, its fast blocked form, stochastic variant.

The numpy and exact reference of :func:`ptqtheory.optq` (which documents the parameters).
"""

from __future__ import annotations

from ..engine import Method, Rounding
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import Trace, check_method, finish, optq_blocked, optq_iteration, setup


def optq(
    W, X, *, lam=0.0, grid: Grid | None = None, rounding: Rounding = "nearest", order="natural",
    seed: SeedLike = None, block_size: int = 128, method: Method = "blocked",
) -> Run:
    r"""OPTQ (THEORY.md A2, A2', A2s) on numpy arrays, float64 or exact.

    ``method="iteration"`` is A2, :math:`w^{(t)}_{>t} = w^{(t-1)}_{>t} + \eta_t \hat X_{>t}^{+}\hat X_t`
    with :math:`\hat X = [X; \sqrt\lambda I]` (:func:`~ptqtheory.algorithms._engine.optq_iteration`);
    ``method="blocked"`` is A2', :math:`w_{>t} \mathrel{-}= \eta_t L_{>t,t}`
    (:func:`~ptqtheory.engine.optq_blocked`), with :math:`q_t = Q(x_t)`, :math:`\eta_t = x_t - q_t`.
    """
    bs = check_method(method, block_size)
    s = setup(W, X, lam, grid, rounding, order, seed)
    rounder = s.rounder()
    trace = Trace.empty(s.Wp)
    Wp = s.Wp.copy()
    if method == "iteration":
        optq_iteration(Wp, s.augmented(s.Xp), rounder, trace)
    else:
        optq_blocked(Wp, s.piv.Lt, rounder, trace, bs)
    return finish(s, trace, rounder, "optq", method, block_size=bs, method=method)


__all__ = ["optq"]
