r"""The algorithms of THEORY.md on torch tensors (CPU or CUDA): A1 RTN, A2'/A2s OPTQ, A3 LDLQ (+A3i),
A4/A4' Qronos, A5 GPFQ.

Called by :func:`ptqtheory.api.public` (parameters: the public functions; ``X`` may also be a
:class:`~ptqtheory.torch_backend.TorchAccumulator`, ``factor_dtype``: :mod:`ptqtheory.torch_backend.factor`).
Results equal the numpy reference up to float rounding (bit for bit in float64 for OPTQ).
"""

from __future__ import annotations

import numpy as np
import torch

from .._validate import check_choice
from ..alphabets import Alphabet
from ..engine import STARTS, VARIANTS, check_method, gpfq_run, rtn_run
from ..engine import dead_columns as check_dead
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ..tolerances import quadratic_range
from .device import dtype_name, tf32_guard, weights_device
from .engine import Trace, finish, optq_blocked, setup
from .grids import column_major
from .incoherence import incoherent
from .stats import sym_perm

__all__ = ["gpfq", "ldlq", "optq", "qronos", "rtn"]

F64 = torch.float64


def optq(
    W, X, *, lam=0.0, grid: Grid | Alphabet | None = None, rounding: str = "nearest", order="natural",
    seed: SeedLike = None, block_size: int = 128, method: str = "blocked", factor_dtype=None,
    allow_tf32: bool = False,
) -> Run:
    r"""OPTQ (THEORY.md A2', A2s) on tensors: :math:`H = X^TX + \lambda I = U_H U_H^T`,
    :math:`L^T = U_1^{-1}`, then :math:`q_t = Q(x_t)`, :math:`w_{>t} \mathrel{-}= \eta_t L_{>t,t}` with lazy
    block updates (:func:`~ptqtheory.engine.optq_blocked`); see :func:`ptqtheory.optq`."""
    return _optq_like("optq", W, X, lam, grid, rounding, order, seed, block_size, method,
                      factor_dtype, allow_tf32)


def ldlq(
    W, X, *, lam=0.0, grid: Grid | Alphabet | None = None, rounding: str = "nearest", order="natural",
    seed: SeedLike = None, incoherence: str | None = None, block_size: int = 128,
    factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""LDLQ (THEORY.md A3, A3i) on tensors: since :math:`\mathring U + I = L^{-T}`, LDLQ is OPTQ with the
    same order and grid, and runs the blocked OPTQ sweep (``variant="blocked"``); ``incoherence`` runs
    :func:`ptqtheory.torch_backend.incoherence.incoherent`. See :func:`ptqtheory.ldlq`."""
    if incoherence is not None:
        return incoherent(
            ldlq, W, X, kind=incoherence, seed=seed, lam=lam, grid=grid, rounding=rounding,
            order=order, block_size=block_size, factor_dtype=factor_dtype, allow_tf32=allow_tf32,
        )
    return _optq_like("ldlq", W, X, lam, grid, rounding, order, seed, block_size, "blocked",
                      factor_dtype, allow_tf32)


def _optq_like(algorithm, W, X, lam, grid, rounding, order, seed, block_size, method, factor_dtype,
               allow_tf32) -> Run:
    bs = check_method(method, block_size, ("blocked",))
    with tf32_guard(weights_device(W, X=X), allow_tf32) as tf32:
        s = setup(W, X, lam, grid, rounding, order, seed, factor="H", factor_dtype=factor_dtype or F64,
                  tf32=tf32, algorithm=algorithm)
        rounder, trace = s.rounder(), Trace.empty(s.Wp)
        assert bs is not None  # check_method gives the block size for method="blocked"
        optq_blocked(s.Wp.clone(), s.L_T(), rounder, trace, bs)
        return finish(s, trace, rounder, algorithm, "blocked", block_size=bs)


def qronos(
    W, X, Xt=None, *, lam=0.0, grid: Grid | Alphabet | None = None, rounding: str = "nearest", order="natural",
    seed: SeedLike = None, variant: str = "paper", start: str = "w", block_size: int = 128,
    method: str = "blocked", factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""Qronos (THEORY.md A4, A4') from statistics; see :func:`ptqtheory.qronos`.

    With :math:`\Delta = X - \tilde X`, :math:`\tilde H = \tilde X^T\tilde X + \lambda I` and
    :math:`G = \tilde X^TX + \lambda I = \tilde H + \tilde X^T\Delta`:

    .. math::
        w_{LS} = \tilde H^{-1}Gw = w + \tilde H^{-1}\tilde X^T\Delta w,\qquad
        y_1 = \frac{G_{1,:}w - \tilde H_{1,>1}w^{(0)}_{>1}}{\tilde H_{11}}
            = w_1 + \frac{(\tilde X^T\Delta)_{1,:}w + \tilde H_{1,>1}(w - w^{(0)})_{>1}}{\tilde H_{11}},

    :math:`q_1 = Q(y_1)`, then the least-squares step
    :math:`w^{(1)}_{>1} = (w_{LS})_{>1} - ((w_{LS})_1 - q_1)\tilde L_{>1,1}` and the blocked OPTQ
    sweep on :math:`\tilde H` for :math:`t \ge 2`; :math:`w_{LS}` and :math:`y_1` in float64 from
    :math:`\tilde X^T\Delta`, small when :math:`\tilde X \approx X` (no cancellation of large terms).
    """
    check_choice("variant", variant, VARIANTS)
    check_choice("start", start, STARTS)
    bs = check_method(method, block_size, ("blocked",))
    with tf32_guard(weights_device(W, X=X, Xt=Xt), allow_tf32) as tf32:
        s = setup(W, X, lam, grid, rounding, order, seed, Xt=Xt, factor="Ht", mismatch=True,
                  factor_dtype=factor_dtype or F64, tf32=tf32, algorithm="qronos")
        W64 = s.Wp.to(F64)
        assert s.acc is not None  # setup factored Ht from it (it fails without X)
        cross_Xt_mismatch = sym_perm(s.acc.cross_Xt_mismatch, s.order)
        corr = s.piv.solve((cross_Xt_mismatch @ W64.T).to(s.factor_dtype)).to(F64).T
        W_ls = W64 + corr
        rounder, trace = s.rounder(), Trace.empty(s.Wp)
        if variant == "ls":
            cur, t0 = column_major(W_ls.to(s.dtype, copy=True)), 0  # the sweep updates cur in place
        else:
            W0 = W64 if start == "w" else W_ls
            y1 = W64[:, 0] + (W64 @ cross_Xt_mismatch[0] + (W64 - W0)[:, 1:] @ s.Hp[0, 1:]) / s.Hp[0, 0]
            y1 = y1.to(s.dtype)
            if rounder.group_start(0):
                first = W0[:, : rounder.group_end(0)].to(s.dtype, copy=True)
                first[:, 0] = y1
                rounder.refit(0, first)
            q1 = rounder(0, y1)
            trace.record(0, y1, q1)
            cur64 = W_ls.clone()
            cur64[:, 0] = q1.to(F64)
            cur64[:, 1:].addr_(W_ls[:, 0] - q1.to(F64), s.piv.L_T[0, 1:].to(F64), alpha=-1)
            cur, t0 = column_major(cur64.to(s.dtype)), 1
        assert bs is not None  # check_method gives the block size for method="blocked"
        optq_blocked(cur, s.L_T(), rounder, trace, bs, t0=t0)
        return finish(s, trace, rounder, "qronos", variant, block_size=bs, w_ls=W_ls.to(s.dtype),
                      start=start if variant == "paper" else None)


def gpfq(
    W, X, Xt, *, grid: Grid | Alphabet | None = None, rounding: str = "nearest", seed: SeedLike = None,
    order="natural", dead_columns: str = "raise", allow_tf32: bool = False,
) -> Run:
    r"""GPFQ (THEORY.md A5) on the device, all rows together (:func:`~ptqtheory.engine.gpfq_run`); see
    :func:`ptqtheory.gpfq`. The column norms and :math:`X_t^T\tilde X_t` are computed in float64."""
    policy = check_choice("dead_columns", dead_columns, ("raise", "round"))
    with tf32_guard(weights_device(W, X=X, Xt=Xt), allow_tf32) as tf32:
        s = setup(W, X, 0.0, grid, rounding, order, seed, Xt=Xt, factor=None, data=True, tf32=tf32,
                  algorithm="gpfq")
        # setup refused anything but a Grid, and with data=True it required X and Xt.
        assert grid is not None and s.X is not None and s.Xt is not None
        XT = s.X.index_select(1, s.order).T.contiguous()  # row t is column t: contiguous per step
        XtT = s.Xt.index_select(1, s.order).T.contiguous()
        norms = (XtT.to(F64) ** 2).sum(1)
        cross = (XT.to(F64) * XtT.to(F64)).sum(1)
        alive = (norms > 0).tolist()
        check_dead(alive, s.order.tolist(), policy, s.notes)
        if s.dtype != F64:
            _check_working_state(norms, (XT.to(F64) ** 2).sum(1), s.Wp, grid, dtype_name(s.dtype))
        XT, XtT, norms, cross = (a.to(s.dtype) for a in (XT, XtT, norms, cross))
        return gpfq_run(s, grid, finish, XT, XtT, norms, cross, alive)


def _check_working_state(norms: torch.Tensor, x_norms: torch.Tensor, Wp: torch.Tensor, grid: Grid | Alphabet,
                         precision: str) -> None:
    r"""GPFQ keeps :math:`\|\tilde X_t\|^2`, :math:`X_t^T\tilde X_t` and its state
    :math:`u = X_{\le t}w_{\le t} - \tilde X_{\le t}q_{\le t}` in the working dtype. In float32 the
    degree-two quantities must stay in :func:`ptqtheory.tolerances.quadratic_range`: the column norms,
    and :math:`|u^T\tilde X_t| \le 2N(\max|w| + \max\delta)\max_s\|X_s\|\,\|\tilde X_t\|`."""
    lo, hi = quadratic_range(precision)
    alive = norms[norms > 0]
    small = float(alive.min()) if alive.numel() else lo
    big = max(float(alive.max()) if alive.numel() else 0.0, float(x_norms.max()))
    step = float(np.max(grid.delta)) if isinstance(grid, Grid) else float(np.max(grid.scale)) * grid.max_gap
    state = 2 * Wp.shape[1] * (float(Wp.abs().max()) + step) * big
    if small >= lo and max(big, state) <= hi:
        return
    which = "small" if small < lo else "large"
    raise ValueError(
        f"X and Xt are too {which} for GPFQ in {precision}: its column norms ||Xt_t||^2 (min "
        f"{small:.3g}, max {big:.3g}) and its state products u^T Xt_t (up to {state:.3g}) are formed in "
        f"{precision} and must stay within [{lo:.3g}, {hi:.3g}] (no overflow, no subnormals). Fix: pass W as "
        "float64 (GPFQ then runs in float64), or rescale X and Xt by a power of two, 2.0**k"
    )


def rtn(W, *, grid: Grid | Alphabet | None = None, rounding: str = "nearest", seed: SeedLike = None,
        allow_tf32: bool = False) -> Run:
    r"""RTN (THEORY.md A1), :math:`q = Q(w)`, all entries at once; see :func:`ptqtheory.rtn`."""
    with tf32_guard(weights_device(W), allow_tf32) as tf32:
        s = setup(W, None, 0.0, grid, rounding, "natural", seed, factor=None, tf32=tf32, algorithm="rtn")
        return rtn_run(s, grid, finish)
