r"""A3, QuIP's LDLQ, optionally with incoherence processing (A3i)."""

from __future__ import annotations

import numpy as np

from .. import _linalg
from ..engine import Incoherence, Rounding
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import Trace, finish, setup


def ldlq(
    W, X, *, lam=0.0, grid: Grid | None = None, rounding: Rounding = "nearest", order="natural",
    seed: SeedLike = None, incoherence: Incoherence | None = None,
) -> Run:
    r"""LDLQ (THEORY.md A3), the column recursion on numpy arrays, float64 or exact; see :func:`ptqtheory.ldlq`.

    With :math:`H = (\mathring U + I) D (\mathring U + I)^T` (:math:`\mathring U` strictly upper):
    :math:`\hat W_k = Q\big(W_k + (W_{<k} - \hat W_{<k})\,\mathring U_{<k,k}\big)`. ``incoherence``
    runs A3i (:func:`ptqtheory.algorithms.incoherence.incoherent`).
    """
    if incoherence is not None:
        from .incoherence import incoherent

        return incoherent(
            ldlq, W, X, kind=incoherence, seed=seed, lam=lam, grid=grid, rounding=rounding,
            order=order,
        )
    s = setup(W, X, lam, grid, rounding, order, seed)
    U0 = s.piv.U1 - np.eye(s.piv.U1.shape[0], dtype=s.piv.U1.dtype)
    rounder = s.rounder()
    trace = Trace.empty(s.Wp)
    Wp = s.Wp
    E = _linalg.zeros_like(Wp)  # W - W_hat, filled column by column
    for k in range(Wp.shape[1]):
        if rounder.group_start(k):
            # The current weights of the group's columns are OPTQ's iterate w_j - sum_{t<k} L_jt eta_t
            # (LDLQ's partial feedback sum is not that for columns j > k).
            g1 = rounder.group_end(k)
            rounder.refit(k, Wp[:, k:g1] - _linalg.dot(trace.eta[:, :k], s.piv.L[k:g1, :k].T))
        x = Wp[:, k] + _linalg.dot(E[:, :k], U0[:k, k])
        q = rounder(k, x)
        trace.record(k, x, q)
        E[:, k] = Wp[:, k] - q
    return finish(s, trace, rounder, "ldlq", "reference")


__all__ = ["ldlq"]
