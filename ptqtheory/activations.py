r"""Activation quantization: symmetric round-to-nearest INT fake quantization of a layer's inputs.

W4A8 (Lee et al., EMNLP 2023) quantizes a linear layer's *input* as well as its weights: the layer
computes :math:`Q_a(X)\,Q^T` instead of :math:`XW^T`. Here :math:`Q_a` is the symmetric, restricted-range
INT quantizer with :math:`b` bits and levels :math:`k\Delta`, :math:`k\in\{-K,\dots,K\}`,
:math:`K = 2^{b-1}-1` (so INT8 is :math:`\{-127,\dots,127\}`; the level :math:`-128` is not used, which
keeps the grid symmetric, as in SmoothQuant's and the W4A8 paper's INT8 activations):

.. math:: Q_a(x) = \Delta\,\operatorname{clip}\big(\operatorname{round}(x/\Delta), -K, K\big).

``round`` is round-half-to-even (``numpy.rint``, ``torch.round``). "Fake" quantization: the result is
returned in the input's floating type, as the values :math:`k\Delta`.

**Scales.** ``granularity="tensor"``: one :math:`\Delta` for the whole array; ``"token"``: one per token
(per row of the flattened ``(tokens, N)`` view: the last axis is the feature axis).
``mode="dynamic"``: :math:`\Delta = \max|x| / K` over the tensor or the token, computed from the ``X``
given, so nothing is clipped (:math:`|x|/\Delta \le K`). A tensor or token that is all zeros gets
:math:`\Delta = 0` and is returned as zeros (exactly). ``mode="static"``: :math:`\Delta` is given
(``scale=``; calibrated once, e.g. by :class:`ActivationQuantizer`), per tensor only; entries with
:math:`|x| > (K+\frac12)\Delta` (more than half a step beyond the last level) are **clipped by definition** and
their fraction is reported (:class:`ActivationInfo`, :attr:`ActivationQuantizer.clipped_fraction`).

**Error bound** (theory.md §7, "Activation quantization"): for every entry that is not clipped,
:math:`|x - Q_a(x)| \le \Delta/2`; hence for dynamic quantization of a token :math:`x\in\mathbb R^N`,
:math:`\|x - Q_a(x)\|_\infty \le \|x\|_\infty / (2K)` and
:math:`\|x - Q_a(x)\|_2 \le \sqrt N\,\|x\|_\infty/(2K)`.

References
----------
Lee, Kim, Baek, Hwang, Sung & Choi, "Enhancing Computation Efficiency in Large Language Models through
Weight and Activation Quantization", EMNLP 2023 (arXiv 2311.05161).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._validate import check_choice, check_positive_int, is_torch

__all__ = ["ActivationInfo", "ActivationQuantizer", "act_levels", "quantize_activations"]

Granularity = Literal["tensor", "token"]
Mode = Literal["dynamic", "static"]
GRANULARITIES = ("tensor", "token")
MODES = ("dynamic", "static")
MAX_ACT_BITS = 16


def act_levels(bits: int) -> int:
    """:math:`K = 2^{b-1} - 1`, the largest level of the symmetric ``bits``-bit INT grid."""
    bits = check_positive_int("bits", bits, minimum=2, maximum=MAX_ACT_BITS,
                              why=" (activation quantization is simulated up to 16 bits)")
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class ActivationInfo:
    """What one call of :func:`quantize_activations` did.

    ``scale``: the step :math:`\\Delta` (a float per tensor, or a float64 array of one per token);
    ``clipped``: entries with :math:`|x| > (K + 1/2)\\Delta` (0 for dynamic scales); ``total``: entries.
    """

    scale: Any
    clipped: int
    total: int

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / self.total if self.total else 0.0


def _check_input(X) -> tuple[Any, bool]:
    """``(X, is_torch)``; a real floating (or integer, widened to float64 for numpy) array, finite."""
    if is_torch(X):
        import torch

        if not isinstance(X, torch.Tensor):
            raise TypeError(f"X must be a numpy array or a torch tensor; got {type(X).__name__}")
        if not X.is_floating_point():
            raise TypeError(f"X must be a floating-point tensor; got dtype {X.dtype} (cast it with .float())")
        if X.dim() < 1 or X.numel() == 0:
            raise ValueError(f"X must hold at least one token with at least one feature (shape (..., N)); "
                             f"got shape {tuple(X.shape)}")
        if not bool(torch.isfinite(X).all()):
            raise ValueError("X contains NaN or Inf; activation quantization needs finite inputs")
        return X, True
    if isinstance(X, np.ndarray | list | tuple | numbers.Real) and not isinstance(X, bool):
        a = np.asarray(X)
        if a.dtype.kind in "iu":
            a = a.astype(np.float64)
        if a.dtype.kind != "f":
            raise TypeError(f"X must hold real numbers; got dtype {a.dtype}")
        if a.ndim < 1 or a.size == 0:
            raise ValueError(f"X must hold at least one token with at least one feature (shape (..., N)); "
                             f"got shape {a.shape}")
        if not np.all(np.isfinite(a)):
            raise ValueError("X contains NaN or Inf; activation quantization needs finite inputs")
        return a, False
    raise TypeError(f"X must be a numpy array or a torch tensor; got {type(X).__name__}")


def _check_scale(scale) -> float:
    if isinstance(scale, bool | np.bool_) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a real number > 0 (the static step); got {scale!r}")
    s = float(scale)
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"scale must be a finite number > 0 (the static step; calibrate it with "
                         f"ActivationQuantizer.calibrate); got {scale!r}")
    return s


def quantize_activations(X, bits: int = 8, granularity: Granularity = "tensor", mode: Mode = "dynamic",
                         scale: float | None = None, return_info: bool = False):
    r"""Symmetric round-to-nearest INT fake quantization of activations (see the module notes).

    Parameters
    ----------
    X : numpy.ndarray or torch.Tensor, shape (..., N)
        Layer inputs; the last axis is the feature axis. Integer numpy arrays are widened to float64;
        floating inputs keep their dtype (and device).
    bits : int
        Bits :math:`b` in ``[2, 16]``; levels :math:`\{-K,\dots,K\}`, :math:`K = 2^{b-1}-1`.
    granularity : {"tensor", "token"}
        One step for the whole array, or one per token (row of the ``(tokens, N)`` view).
    mode : {"dynamic", "static"}
        ``dynamic``: :math:`\Delta = \max|x|/K` from ``X`` (never clips). ``static``: :math:`\Delta` =
        ``scale`` (per tensor); entries beyond :math:`(K+\frac12)\Delta` are clipped and counted.
    scale : float, optional
        The static step (required with ``mode="static"``, refused with ``"dynamic"``).
    return_info : bool
        Also return an :class:`ActivationInfo` (steps, clipped count).

    Returns
    -------
    Xq : same type, dtype and shape as ``X``
        :math:`Q_a(X)`; with ``return_info``, ``(Xq, info)``.
    """
    X, torch_in = _check_input(X)
    K = act_levels(bits)
    check_choice("granularity", granularity, GRANULARITIES)
    check_choice("mode", mode, MODES)
    if mode == "dynamic" and scale is not None:
        raise ValueError("scale is for mode='static'; drop it, or pass mode='static'")
    if mode == "static":
        if scale is None:
            raise ValueError("mode='static' needs scale= (the calibrated step); calibrate one with "
                             "ActivationQuantizer(...).calibrate(X)")
        if granularity != "tensor":
            raise ValueError("mode='static' is per tensor (a token's range is not known before it is seen); "
                             "pass granularity='tensor', or use mode='dynamic' for per-token steps")
        step = _check_scale(scale)
    if torch_in:
        import torch

        rows = X.reshape(-1, X.shape[-1])
        if mode == "static":
            d = torch.full((1, 1), step, dtype=X.dtype, device=X.device)
        elif granularity == "tensor":
            d = (rows.abs().amax() / K).reshape(1, 1)
        else:
            d = rows.abs().amax(dim=1, keepdim=True) / K
        safe = torch.where(d > 0, d, torch.ones_like(d))
        ratio = rows / safe
        codes = torch.round(ratio)
        clipped = int((ratio.abs() > K + 0.5).sum())  # beyond half a step past the last level
        Xq = (torch.clamp(codes, -K, K) * d).reshape(X.shape)
        d_out: Any = float(d) if d.numel() == 1 and granularity == "tensor" else \
            d.reshape(-1).double().cpu().numpy()
    else:
        rows = X.reshape(-1, X.shape[-1])
        if mode == "static":
            dn = np.full((1, 1), step, dtype=X.dtype)
        elif granularity == "tensor":
            dn = np.asarray(np.abs(rows).max() / K, dtype=X.dtype).reshape(1, 1)
        else:
            dn = (np.abs(rows).max(axis=1, keepdims=True) / K).astype(X.dtype)
        safe_n = np.where(dn > 0, dn, np.ones_like(dn))
        ratio_n = rows / safe_n
        codes_n = np.rint(ratio_n)
        clipped = int(np.count_nonzero(np.abs(ratio_n) > K + 0.5))  # beyond half a step past the last level
        Xq = (np.clip(codes_n, -K, K) * dn).reshape(X.shape).astype(X.dtype, copy=False)
        d_out = float(dn[0, 0]) if granularity == "tensor" else dn.reshape(-1).astype(np.float64)
    if return_info:
        return Xq, ActivationInfo(scale=d_out, clipped=clipped, total=int(np.prod(X.shape)))
    return Xq


class ActivationQuantizer:
    r"""Activation quantization as a callable: dynamic, or static with a step calibrated once.

    ``ActivationQuantizer(bits=8, mode="static").calibrate(X_cal)`` sets
    :math:`\Delta = \max|X_{\mathrm{cal}}|/K` (a running maximum over repeated ``calibrate`` calls);
    calling it on later inputs quantizes them with that step, clipping what lies beyond the calibrated
    range and counting it (:attr:`clipped`, :attr:`total`, :attr:`clipped_fraction`, accumulated over
    calls; :meth:`reset_counts`). With ``mode="dynamic"`` no calibration is needed and nothing clips.
    """

    def __init__(self, bits: int = 8, granularity: Granularity = "tensor", mode: Mode = "dynamic"):
        self.K = act_levels(bits)
        self.bits = int(bits)
        self.granularity = check_choice("granularity", granularity, GRANULARITIES)
        self.mode = check_choice("mode", mode, MODES)
        if mode == "static" and granularity != "tensor":
            raise ValueError("mode='static' is per tensor; pass granularity='tensor'")
        self.scale: float | None = None
        self.clipped = 0
        self.total = 0

    def calibrate(self, X) -> ActivationQuantizer:
        """Raise the static step to cover ``X`` (:math:`\\Delta = \\max|X|/K`, running maximum)."""
        if self.mode != "static":
            raise ValueError("calibrate is for mode='static'; a dynamic quantizer needs no calibration")
        X, torch_in = _check_input(X)
        top = float(X.abs().max()) if torch_in else float(np.abs(X).max())
        new = top / self.K
        self.scale = new if self.scale is None else max(self.scale, new)
        return self

    def __call__(self, X):
        if self.mode == "static":
            if self.scale is None:
                raise ValueError("this static ActivationQuantizer is not calibrated: call .calibrate(X) first")
            if self.scale == 0:
                raise ValueError("the calibration data were all zeros (step 0); calibrate on real inputs")
        Xq, info = quantize_activations(X, self.bits, self.granularity, self.mode,
                                        scale=self.scale if self.mode == "static" else None, return_info=True)
        self.clipped += info.clipped
        self.total += info.total
        return Xq

    @property
    def clipped_fraction(self) -> float:
        """Fraction of the entries quantized so far that were clipped (static mode; 0 when dynamic)."""
        return self.clipped / self.total if self.total else 0.0

    def reset_counts(self) -> None:
        self.clipped = 0
        self.total = 0

    def __repr__(self) -> str:
        return (f"ActivationQuantizer(bits={self.bits}, granularity={self.granularity!r}, mode={self.mode!r}, "
                f"scale={self.scale})")
