r"""A5, GPFQ (greedy path-following quantization, Lybrand & Saab)."""

from __future__ import annotations

from typing import cast

import numpy as np

from .. import _linalg
from .._validate import check_choice
from ..alphabets import Alphabet
from ..engine import DeadColumns, Order, Rounding, gpfq_run
from ..engine import dead_columns as check_dead
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import finish, setup


def gpfq(
    W, X, Xt, grid: Grid | Alphabet | None = None, rounding: Rounding = "nearest", seed: SeedLike = None,
    order: Order = "natural", dead_columns: DeadColumns = "raise", *, allow_tf32: bool = False,
) -> Run:
    r"""GPFQ (THEORY.md A5): follow the output path, one column at a time.

    .. math::
        u_0 = 0,\quad q_t = Q\Big(\frac{\tilde X_t^T(u_{t-1} + w_t X_t)}{\|\tilde X_t\|^2}\Big),\quad
        u_t = u_{t-1} + w_t X_t - q_t \tilde X_t,

    so that :math:`u_N = Xw - \tilde X q` (identity I6). All rows run together; the state
    :math:`u` has shape ``(n, m)`` and is returned as ``run.residual``.

    Parameters
    ----------
    X, Xt : array_like or torch.Tensor, shape (m, N)
        Float-model and quantized-model inputs (pass ``Xt=X`` when they agree). GPFQ's state lives in
        :math:`\mathbb R^m`, so it needs the data (a ``TorchAccumulator`` is refused).
    dead_columns : {"raise", "round"}
        A column with :math:`\tilde X_t = 0` leaves the step undefined. ``"raise"`` refuses;
        ``"round"`` rounds :math:`w_t` itself there and records the columns in ``run.notes``.

    Other parameters are as for :func:`ptqtheory.optq`.

    Notes
    -----
    There is no damping in GPFQ (``run.lam`` is 0); GPFQ moves no weights, so no group is refitted.

    References
    ----------
    Lybrand & Saab, "A greedy algorithm for quantizing neural networks", JMLR 2021;
    Zhang & Saab, "SPFQ", arXiv 2309.10975.
    """
    policy = check_choice("dead_columns", dead_columns, ("raise", "round"))
    if Xt is None:
        raise ValueError("Xt is required: the inputs from the partly quantized model (use Xt=X if none)")
    s = setup(W, X, 0.0, grid, rounding, order, seed, Xt=Xt, factor=None)
    # None only without X, which nothing checks before this: sq_norms then fails.
    X_, Xt_ = cast(np.ndarray, s.Xp), cast(np.ndarray, s.Xtp)
    norms = _linalg.sq_norms(Xt_, axis=0)
    alive = [bool(v > 0) for v in norms]
    check_dead(alive, s.order, policy, s.notes)
    # X_^T[t] is column t; X_t^T Xt_t by the same product as a step would form it.
    cross = [_linalg.dot(X_[:, t], Xt_[:, t]) if alive[t] else 0 for t in range(len(norms))]
    return gpfq_run(s, grid, finish, X_.T, Xt_.T, norms, cross, alive)


__all__ = ["gpfq"]
