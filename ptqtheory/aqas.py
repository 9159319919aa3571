r"""AQAS: activation-quantization-aware scaling of a linear layer's input channels (W4A8).

A linear layer computes :math:`XW^T` (:math:`X` is :math:`m\times N`, :math:`W` is :math:`n\times N`). For any
positive per-input-channel scales :math:`s\in\mathbb R^N_{>0}`, :math:`S=\operatorname{diag}(s)`,

.. math:: (XS^{-1})\,(WS)^T = X S^{-1} S W^T = XW^T

(theory.md §7, "The scaled problem"), so the layer may be quantized as the *scaled problem*
:math:`(X_s, W_s) = (XS^{-1}, WS)` instead: the weights :math:`WS` on their per-row min-max grid, the
activations :math:`XS^{-1}` on theirs (in a model, :math:`S^{-1}` is folded into the preceding
normalization or linear layer). Large :math:`s_j` shrinks activation channel :math:`j` (good for
activation quantization when channel :math:`j` holds outliers) and stretches weight column :math:`j`
(bad for the weight grid when it sets a row's range); AQAS (Lee et al. 2023) chooses :math:`s` with both
quantizers in the objective:

.. math:: J(s) = \big\| XW^T - Q_a(XS^{-1})\,Q_w(WS)^T \big\|_F^2,

:math:`Q_w` round-to-nearest on the per-row (or per-group) min-max grid of :math:`WS`
(:meth:`ptqtheory.Grid.minmax`, :func:`ptqtheory.rtn`), :math:`Q_a` the dynamic symmetric INT quantizer of
:func:`ptqtheory.quantize_activations`. ``a_bits=None`` drops :math:`Q_a` (AWQ's weight-only objective).

**Search** (the paper's text was not available here; docs/methods.md lists the choices): a grid over
one exponent :math:`\alpha\in\{0, 1/n, \dots, 1\}` of a one-parameter family,

* ``family="smoothquant"`` (default): :math:`s_j(\alpha) = \max_i|X_{ij}|^{\alpha} / \max_r|W_{rj}|^{1-\alpha}`
  (SmoothQuant's migration strength: :math:`\alpha = 1/2` equalizes the two ranges per channel);
* ``family="awq"``: :math:`s_j(\alpha) = (\tfrac1m\sum_i|X_{ij}|)^{\alpha}` (AWQ's activation statistic),

each normalized to :math:`\sqrt{\max_j s_j \min_j s_j} = 1` (as AWQ does; :math:`J` is not invariant to a
global factor because the activation and weight grids are refitted, but the normalization keeps
:math:`s` near 1), plus the identity :math:`s = 1`, which is always a candidate: the returned
objective is never worse than the unscaled one. Ties go to the earlier candidate (:math:`s=1` first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._validate import as_matrix, as_weights, check_choice, check_positive_int
from .activations import GRANULARITIES, Granularity, act_levels, quantize_activations

__all__ = ["AQASResult", "aqas", "aqas_objective", "aqas_scales"]

Family = Literal["smoothquant", "awq"]
FAMILIES = ("smoothquant", "awq")


@dataclass(frozen=True)
class AQASResult:
    r"""The chosen scales and the scaled problem.

    ``scales``: :math:`s` (length :math:`N`); ``W``, ``X``: the scaled problem :math:`WS` and
    :math:`XS^{-1}` (run any algorithm and :func:`ptqtheory.certify` on them: an ordinary certificate);
    ``alpha``: the chosen exponent (``None`` when :math:`s = 1` won); ``objective``: :math:`J(s)`;
    ``objective_unscaled``: :math:`J(1)`; ``alphas``, ``objectives``: the search (``alphas[i]`` and
    :math:`J(s(\alpha_i))`).
    """

    scales: np.ndarray
    W: np.ndarray
    X: np.ndarray
    alpha: float | None
    objective: float
    objective_unscaled: float
    alphas: np.ndarray
    objectives: np.ndarray


def _check_problem(W, X):
    W2, _ = as_weights(W)
    W2 = np.atleast_2d(np.asarray(W2, dtype=float))
    X2 = np.asarray(as_matrix("X", X, W2.shape[1]), dtype=float)
    dead = np.flatnonzero(~np.any(X2 != 0, axis=0))
    if dead.size:
        raise ValueError(f"X has all-zero columns {dead[:8].tolist()}: their scales are undefined; drop those "
                         "input channels (their weights never act) before scaling")
    return W2, X2


def aqas_scales(W, X, alpha: float, family: Family = "smoothquant") -> np.ndarray:
    r"""The candidate scales :math:`s(\alpha)` of ``family``, normalized to
    :math:`\sqrt{\max s\,\min s} = 1`."""
    W2, X2 = _check_problem(W, X)
    check_choice("family", family, FAMILIES)
    a = float(alpha)
    if not 0 <= a <= 1:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha!r}")
    if family == "smoothquant":
        wmax = np.abs(W2).max(axis=0)
        wmax = np.where(wmax > 0, wmax, 1.0)  # a zero weight column: only the activation side counts
        s = np.abs(X2).max(axis=0) ** a / wmax ** (1 - a)
    else:
        s = np.abs(X2).mean(axis=0) ** a
    return s / np.sqrt(s.max() * s.min())


def aqas_objective(W, X, scales, w_bits: int = 4, a_bits: int | None = 8, sym: bool = False,
                   group_size: int | None = None, a_granularity: Granularity = "tensor", per_row: bool = False):
    r""":math:`J(s) = \|XW^T - Q_a(XS^{-1})\,Q_w(WS)^T\|_F^2` (``a_bits=None``: without :math:`Q_a`).

    ``per_row=True`` returns the :math:`n` terms of the sum, one per row :math:`r` of :math:`W`
    (:math:`\|Xw_r - Q_a(XS^{-1})\,Q_w(WS)_r\|^2`: the grid is per row, so a layer's share of a stacked
    group's objective is the sum over its rows).
    """
    W2, X2 = _check_problem(W, X)
    s = np.asarray(scales, dtype=float)
    if s.shape != (W2.shape[1],) or not np.all(np.isfinite(s)) or not np.all(s > 0):
        raise ValueError(f"scales must be {W2.shape[1]} finite positive numbers; got shape {s.shape}")
    rows = _objective_rows(X2 @ W2.T, W2, X2, s, w_bits=w_bits, a_bits=a_bits, sym=sym, group_size=group_size,
                           a_granularity=a_granularity)
    return rows if per_row else float(np.sum(rows))


def _objective_rows(Y: np.ndarray, W2: np.ndarray, X2: np.ndarray, s: np.ndarray, *, w_bits: int,
                    a_bits: int | None, sym: bool, group_size: int | None,
                    a_granularity: Granularity) -> np.ndarray:
    """The per-row terms of :math:`J(s)` given :math:`Y = XW^T` (computed once per search)."""
    from .algorithms import rtn
    from .grids import Grid

    Ws, Xs = W2 * s, X2 / s
    Qw = rtn(Ws, grid=Grid.minmax(Ws, bits=w_bits, sym=sym, group_size=group_size)).Q
    Xq = Xs if a_bits is None else quantize_activations(Xs, bits=a_bits, granularity=a_granularity)
    return np.sum((Y - Xq @ np.atleast_2d(Qw).T) ** 2, axis=0)


def aqas(W, X, w_bits: int = 4, a_bits: int | None = 8, *, n_grid: int = 20, family: Family = "smoothquant",
         sym: bool = False, group_size: int | None = None, a_granularity: Granularity = "tensor") -> AQASResult:
    r"""Choose per-input-channel scales by AQAS's joint objective and return the scaled problem.

    Parameters
    ----------
    W : array_like, shape (n, N)
    X : array_like, shape (m, N)
        Calibration inputs (no all-zero column).
    w_bits : int
        Weight bits (per-row min-max grid, or per group with ``group_size``; ``sym`` symmetric).
    a_bits : int or None
        Activation bits (dynamic symmetric INT, ``a_granularity`` per tensor or token); ``None``: the
        weight-only objective (AWQ's).
    n_grid : int
        Exponents :math:`\alpha = 0, 1/n, \dots, 1` (``n + 1`` candidates, plus :math:`s = 1`).
    family : {"smoothquant", "awq"}
        The one-parameter family searched (module notes).

    Returns
    -------
    AQASResult
        ``result.W``, ``result.X`` is the scaled problem; ``result.objective <= result.objective_unscaled``.
    """
    W2, X2 = _check_problem(W, X)
    check_positive_int("w_bits", w_bits)
    if a_bits is not None:
        act_levels(a_bits)
    check_positive_int("n_grid", n_grid, maximum=1000)
    check_choice("family", family, FAMILIES)
    check_choice("a_granularity", a_granularity, GRANULARITIES)
    kw: dict[str, Any] = {"w_bits": w_bits, "a_bits": a_bits, "sym": sym, "group_size": group_size,
                          "a_granularity": a_granularity}
    Y = X2 @ W2.T  # once: the reference output of every candidate
    base = float(np.sum(_objective_rows(Y, W2, X2, np.ones(W2.shape[1]), **kw)))
    alphas = np.arange(n_grid + 1) / n_grid
    objs = np.array([np.sum(_objective_rows(Y, W2, X2, aqas_scales(W2, X2, a, family), **kw)) for a in alphas])
    best_i = int(np.argmin(objs))
    if objs[best_i] < base:
        alpha: float | None = float(alphas[best_i])
        s = aqas_scales(W2, X2, alphas[best_i], family)
        obj = float(objs[best_i])
    else:
        alpha, s, obj = None, np.ones(W2.shape[1]), base
    return AQASResult(scales=s, W=W2 * s, X=X2 / s, alpha=alpha, objective=obj, objective_unscaled=base,
                      alphas=alphas, objectives=objs)
