"""A4 / A4': Qronos, which also corrects the error that comes from quantized inputs."""

from __future__ import annotations

import numpy as np

from .. import _linalg
from .._validate import check_choice
from ..alphabets import Alphabet
from ..engine import (
    STARTS,
    VARIANTS,
    Method,
    Order,
    Rounding,
    Start,
    Trace,
    Variant,
    check_method,
    optq_blocked,
)
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import finish, optq_iteration, setup


def qronos(
    W, X, Xt=None, lam=0.0, grid: Grid | Alphabet | None = None, rounding: Rounding = "nearest",
    order: Order = "natural", seed: SeedLike = None, variant: Variant = "paper", start: Start = "w",
    block_size: int = 128, method: Method = "blocked", *, factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""Qronos (THEORY.md A4 ``variant="paper"``, A4' ``"ls"``): also corrects the error of quantized inputs.

    With :math:`\hat X = [X; \sqrt\lambda I]`, :math:`\hat{\tilde X} = [\tilde X; \sqrt\lambda I]`,
    :math:`\tilde H = \tilde X^T\tilde X + \lambda I`, :math:`G = \tilde X^T X + \lambda I` and
    :math:`w_{LS} = \tilde H^{-1} G w` (the least-squares fit of :math:`\hat X w` by
    :math:`\hat{\tilde X}`). A4 (paper iteration), step 1 from the start iterate :math:`w^{(0)}`
    (``start="w"``: the weights; ``start="ls"``: :math:`w_{LS}`):

    .. math::
        y_1 = \frac{\hat{\tilde X}_1^T(\hat X w - \hat{\tilde X}_{>1} w^{(0)}_{>1})}
                   {\|\hat{\tilde X}_1\|^2},\quad q_1 = Q(y_1),\quad
        w^{(1)}_{>1} = \arg\min_v \|\hat X w - \hat{\tilde X}_1 q_1 - \hat{\tilde X}_{>1} v\|^2,

    then OPTQ (A2) on :math:`\tilde H` for :math:`t \ge 2`. Identity I5:
    :math:`\|Xw - \tilde Xq\|^2 + \lambda\|w-q\|^2 = \|r_0\|^2 + ((w_{LS})_1 - q_1)^2\tilde D_1
    + \sum_{t\ge2}\eta_t^2\tilde D_t`, :math:`r_0 = \hat Xw - \hat{\tilde X}w_{LS}`.

    A4' (least squares, then OPTQ): :math:`q = \mathrm{OPTQ}(w_{LS}; \tilde H)`; identity I4 with
    :math:`\sum_t \eta_t^2 \tilde D_t`. A4 from :math:`w_{LS}` equals A4'; both equal OPTQ when
    :math:`\tilde X = X`.

    Parameters
    ----------
    Xt : array_like or torch.Tensor, shape (m, N), optional
        Inputs of this layer in the partly quantized model, row for row the same samples as ``X``
        (``Xt=X`` if not quantized). Required on both backends (``None`` raises ``ValueError("Xt is
        required ...")``) unless ``X`` is a ``TorchAccumulator(..., with_mismatch=True)`` (it holds both).
    variant : {"paper", "ls"}
    start : {"w", "ls"}
        Start iterate of the paper iteration (ignored by ``"ls"``).
    method : {"blocked", "iteration"}
        As for :func:`ptqtheory.optq`, with :math:`\hat{\tilde X}` and :math:`\tilde H`.

    Other parameters are as for :func:`ptqtheory.optq`.

    References
    ----------
    Zhang, Colbert & Saab, "Qronos", arXiv 2505.11695; Zhang, Zhang, Colbert & Saab, arXiv 2508.04853.
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("start", start, STARTS)
    if Xt is None:
        raise ValueError("Xt is required: the inputs from the partly quantized model (use Xt=X if none)")
    bs = check_method(method, block_size)
    s = setup(W, X, lam, grid, rounding, order, seed, Xt=Xt, factor="Ht", keep_qr=method == "blocked")
    assert s.Xp is not None and s.Xtp is not None  # setup factored Ht from them (it fails without X)
    Xh, Xth = s.augmented(s.Xp), s.augmented(s.Xtp)
    targets = _linalg.dot(s.Wp, Xh.T)  # row i: (X_hat w_i)^T

    def fit_trailing(rhs_rows, first: int):
        # argmin_V ||Xth_{>=first} V - rhs||, by the QR of Xth when kept (its error is
        # eps*sqrt(cond(Ht)), not the eps*cond(Ht) of solving with Ht), else by least squares.
        if s.qr is not None:
            return s.qr.lstsq_trailing(rhs_rows.T, first).T
        return _linalg.lstsq(Xth[:, first:], rhs_rows.T).T

    W_ls = fit_trailing(targets, 0)
    rounder, trace = s.rounder(), Trace.empty(s.Wp)
    if variant == "ls":
        cur, t0 = W_ls.copy(), 0
    else:
        W0 = s.Wp if start == "w" else W_ls
        resid = targets - _linalg.dot(W0[:, 1:], Xth[:, 1:].T)
        y1 = _linalg.dot(resid, Xth[:, 0]) / _linalg.sq_norms(Xth[:, 0], axis=0)
        if rounder.group_start(0):
            first = W0[:, : rounder.group_end(0)].copy()
            first[:, 0] = y1
            rounder.refit(0, first)
        q1 = rounder(0, y1)
        trace.record(0, y1, q1)
        cur = _linalg.zeros_like(s.Wp)
        cur[:, 0] = q1
        cur[:, 1:] = fit_trailing(targets - np.outer(q1, Xth[:, 0]), 1)
        t0 = 1
    if method == "iteration":
        optq_iteration(cur, Xth, rounder, trace, t0=t0)
    else:
        assert bs is not None  # check_method gives the block size for method="blocked"
        optq_blocked(cur, s.piv.L_T, rounder, trace, bs, t0=t0)
    return finish(
        s, trace, rounder, "qronos", variant, block_size=bs, method=method, w_ls=W_ls,
        start=start if variant == "paper" else None,
    )


__all__ = ["qronos"]
