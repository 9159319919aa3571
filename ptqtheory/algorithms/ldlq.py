r"""A3, QuIP's LDLQ, optionally with incoherence processing (A3i)."""

from __future__ import annotations

import numpy as np

from .. import _linalg
from ..alphabets import Alphabet
from ..engine import Incoherence, Order, Rounding, Trace
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import finish, setup
from .incoherence import incoherent


def ldlq(
    W, X, lam=0.0, grid: Grid | Alphabet | None = None, rounding: Rounding = "nearest",
    order: Order = "natural",
    seed: SeedLike = None, incoherence: Incoherence | None = None, *, block_size: int = 128,
    factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""LDLQ (THEORY.md A3): adaptive rounding with linear feedback from the LDL factor of ``H``.

    With :math:`H = (\mathring U + I) D (\mathring U + I)^T` (:math:`\mathring U` strictly upper),
    column by column

    .. math:: \hat W_k = Q\big(W_k + (W_{<k} - \hat W_{<k})\,\mathring U_{<k,k}\big).

    Since :math:`\mathring U + I = L^{-T}` and :math:`D_t = C_{tt}^{-2}`, LDLQ is OPTQ (same order
    and grid); identity I3: :math:`\operatorname{tr}((\hat W - W)H(\hat W - W)^T)
    = \sum_{rows}\sum_t \eta_t^2 D_t`. The numpy reference runs this recursion.

    Parameters
    ----------
    incoherence : {None, "kron", "hadamard"}
        Incoherence processing (A3i, :mod:`ptqtheory.algorithms.incoherence`); needs ``seed``.
    block_size : int
        Torch only: it runs LDLQ as the blocked OPTQ sweep A2' of this width (``variant="blocked"``).

    Other parameters are as for :func:`ptqtheory.optq`.

    References
    ----------
    Chee, Cai, Kuleshov & De Sa, "QuIP", arXiv 2307.13304.
    """
    if incoherence is not None:
        return incoherent(ldlq, W, X, kind=incoherence, seed=seed, lam=lam, grid=grid, rounding=rounding,
                          order=order)
    s = setup(W, X, lam, grid, rounding, order, seed)
    U0 = s.piv.U1 - np.eye(s.piv.U1.shape[0], dtype=s.piv.U1.dtype)
    rounder, trace = s.rounder(), Trace.empty(s.Wp)
    E = _linalg.zeros_like(s.Wp)  # W - W_hat, filled column by column
    for k in range(s.Wp.shape[1]):
        if rounder.group_start(k):
            # The current weights of the group's columns are OPTQ's iterate w_j - sum_{t<k} L_jt eta_t
            # (LDLQ's partial feedback sum is not that for columns j > k).
            g1 = rounder.group_end(k)
            rounder.refit(k, s.Wp[:, k:g1] - _linalg.dot(trace.eta[:, :k], s.piv.L[k:g1, :k].T))
        x = s.Wp[:, k] + _linalg.dot(E[:, :k], U0[:k, k])
        q = rounder(k, x)
        trace.record(k, x, q)
        E[:, k] = s.Wp[:, k] - q
    return finish(s, trace, rounder, "ldlq", "reference")


__all__ = ["ldlq"]
