r"""The small set of array operations the engine is written against, one backend object per library.

The column sweeps (:mod:`ptqtheory.engine`), rounding rules and min-max fit (:mod:`ptqtheory.grids`)
use only these; :func:`get_backend` picks the implementation from the arrays' type:

* :class:`NumpyBackend`: float64 *and* exact ``sympy.Rational`` arrays (the latter: no ``@``, exact ``floor``);
* :class:`TorchBackend`: tensors on any device, with in-place BLAS updates (``addr_``, ``addmm_``).

Both backends do the same arithmetic, operation for operation: in float64, torch and numpy give the
same bits.
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np
import sympy

from ._validate import is_exact

__all__ = ["Backend", "NumpyBackend", "TorchBackend", "get_backend"]


class Backend:
    r"""The operations interface; :class:`NumpyBackend` and :class:`TorchBackend` implement every one.

    In-place operations end in ``_`` and update a view of their first argument (``add_outer_`` and
    ``sub_outer_``: :math:`A \mathrel{\pm}= uv^T`; ``sub_matmul_``: :math:`A \mathrel{-}= BC`);
    ``block(A, i1, i2)`` copies columns ``i1:i2`` keeping the memory order. ``clip`` returns the
    clipped values and the boolean mask of entries that were clipped; ``select(mask, a, b)`` is ``b`` (an
    array or a scalar) where ``mask`` holds and ``a`` elsewhere; ``indicator(mask, like)`` is the mask as
    0/1 numbers that add to ``like``; ``row_min``/``row_max`` reduce over columns; ``to_host`` gives a
    numpy array.
    """

    def zeros_like(self, a, shape=None): ...
    def copy(self, a): ...
    def block(self, A, i1: int, i2: int): ...
    def add_outer_(self, A, u, v) -> None: ...
    def sub_outer_(self, A, u, v) -> None: ...
    def sub_matmul_(self, A, B, C) -> None: ...
    def dot(self, A, B): ...
    def hcat(self, parts): ...
    def floor(self, a): ...
    def half(self, a): ...
    def clip(self, k, lo, hi): ...
    def indicator(self, mask, like): ...
    def row_min(self, a): ...
    def row_max(self, a): ...
    def minimum(self, a, s: float, /): ...  # positional: numpy's ufuncs take no keywords
    def maximum(self, a, b): ...
    def full_like(self, a, s: float, /): ...
    def to_host(self, a) -> np.ndarray: ...  # type: ignore[empty-body]  # interface only: both backends define it
    def interval(self, values, y): ...  # index i in [0, m-2] of the alphabet interval [v_i, v_i+1] holding y
    def select(self, mask, a, b): ...  # b where mask else a (exact: no arithmetic on the values)


class NumpyBackend(Backend):
    """numpy float64 and exact object arrays (``sympy.Rational``): LAPACK/BLAS or exact arithmetic."""

    hcat, minimum, maximum = staticmethod(np.hstack), staticmethod(np.minimum), staticmethod(np.maximum)
    full_like, to_host = staticmethod(np.full_like), staticmethod(np.asarray)

    def zeros_like(self, a, shape=None):
        # Exact or float64, and with shape=None in a's memory order (the sweeps read columns).
        order = "F" if (shape is None and a.flags.f_contiguous and not a.flags.c_contiguous) else "C"
        shape = a.shape if shape is None else shape
        if is_exact(a):
            out = np.empty(shape, dtype=object, order=order)
            out.fill(sympy.Integer(0))
            return out
        return np.zeros(shape, order=order)

    def copy(self, a):
        return a.copy()

    def block(self, A, i1, i2):
        return np.array(A[:, i1:i2], order="F")

    def add_outer_(self, A, u, v):
        A += np.outer(u, v)

    def sub_outer_(self, A, u, v):
        A -= np.outer(u, v)

    def sub_matmul_(self, A, B, C):
        A -= self.dot(B, C)

    def dot(self, A, B):
        # numpy's matmul refuses object arrays; np.dot multiplies rationals exactly.
        return np.dot(A, B) if (is_exact(A) or is_exact(B)) else A @ B

    def floor(self, a):
        if is_exact(a):
            return np.vectorize(lambda v: sympy.Integer(math.floor(v)), otypes=[object])(a)
        return np.floor(a)

    def half(self, a):
        return sympy.Rational(1, 2) if is_exact(np.asarray(a)) else 0.5

    def clip(self, k, lo, hi):
        kc = np.where(k < lo, lo, k)
        kc = np.where(kc > hi, hi, kc)
        return kc, np.asarray((k < lo) | (k > hi), dtype=bool)

    def indicator(self, mask, like):
        return mask  # numpy adds booleans to floats (and to rationals) as 0 and 1

    def row_min(self, a):
        return np.asarray(a, dtype=float).min(axis=1)

    def row_max(self, a):
        return np.asarray(a, dtype=float).max(axis=1)

    def select(self, mask, a, b):
        return np.where(mask, b, a)


    def interval(self, values, y):
        # searchsorted(side="right") - 1 is the last v_i <= y; clamped so that [v_i, v_{i+1}] exists.
        return np.clip(np.searchsorted(values, y, side="right") - 1, 0, values.shape[0] - 2)


class TorchBackend(Backend):
    """torch tensors on any device; torch is imported by this class only (on first use)."""

    def __init__(self):
        import torch

        self.torch = torch
        self.dot, self.floor, self.full_like = torch.matmul, torch.floor, torch.full_like

    def zeros_like(self, a, shape=None):
        if shape is None:
            return self.torch.zeros_like(a)  # keeps a's strides (column-major stays column-major)
        return self.torch.zeros(shape, dtype=a.dtype, device=a.device)

    def copy(self, a):
        return a.clone()  # keeps the strides

    def block(self, A, i1, i2):
        return A[:, i1:i2].clone()  # clone keeps the column-major strides

    def add_outer_(self, A, u, v):
        A.addr_(u, v)

    def sub_outer_(self, A, u, v):
        A.addr_(u, v, alpha=-1)

    def sub_matmul_(self, A, B, C):
        A.addmm_(B, C, alpha=-1)

    def hcat(self, parts):
        return self.torch.cat(parts, dim=1)

    def half(self, a):
        return 0.5

    def clip(self, k, lo, hi):
        kc = self.torch.clamp(k, lo, hi)  # lo <= hi (checked by Grid): min(max(k, lo), hi)
        return kc, kc != k

    def indicator(self, mask, like):
        return mask.to(like.dtype)

    def row_min(self, a):
        return a.amin(dim=1)

    def row_max(self, a):
        return a.amax(dim=1)

    def minimum(self, a, s):
        return self.torch.clamp(a, max=s)

    def maximum(self, a, b):
        return self.torch.clamp(a, min=b) if isinstance(b, float) else self.torch.maximum(a, b)

    def to_host(self, a):
        return a.detach().to("cpu", self.torch.float64).numpy()

    def interval(self, values, y):
        i = self.torch.searchsorted(values, y.contiguous(), right=True) - 1
        return i.clamp_(0, values.shape[0] - 2)

    def select(self, mask, a, b):
        return self.torch.where(mask, b, a)


NUMPY = NumpyBackend()
@functools.cache
def _torch_backend() -> TorchBackend:
    return TorchBackend()


def _is_tensor(a) -> bool:
    torch = sys.modules.get("torch")  # if torch was never imported, nothing is a tensor
    return torch is not None and isinstance(a, torch.Tensor)


def get_backend(*arrays) -> Backend:
    """The backend of ``arrays`` (``None`` entries and Python scalars are ignored).

    Raises
    ------
    TypeError
        When numpy arrays and torch tensors are mixed: convert one side first (``torch.as_tensor``
        or ``t.cpu().numpy()``), so that no copy between devices happens behind the caller's back.
    """
    if len(arrays) == 1:  # the hot loops ask about one array per step
        return _torch_backend() if _is_tensor(arrays[0]) else NUMPY
    kinds = {"torch" if _is_tensor(a) else "numpy" for a in arrays
             if isinstance(a, np.ndarray) or _is_tensor(a)}
    if len(kinds) > 1:
        raise TypeError(
            "numpy arrays and torch tensors cannot be mixed in one call; convert them to one kind first "
            "(torch.as_tensor(a) or t.cpu().numpy())"
        )
    return _torch_backend() if kinds == {"torch"} else NUMPY
