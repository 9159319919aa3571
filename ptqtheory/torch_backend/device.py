"""Devices, working precision, input checks and the TF32 guard of the torch backend.

The working dtype is ``W``'s, float16 and bfloat16 widened to float32 (exactly). Checks run on the
tensors' device and raise the numpy reference's kind of error (``ValueError`` / ``TypeError`` naming
the argument). TF32: :func:`tf32_guard` (DESIGN.md "Numerics", peer complaint 5).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .._validate import check_bool, check_data_shape, check_weight_rows, check_weight_shape
from ..tolerances import HOMOGENEOUS_FIX, check_magnitude, data_range

__all__ = [
    "all_finite",
    "as_data",
    "as_weights",
    "check_data_range",
    "check_finite",
    "dtype_name",
    "mixed_error",
    "tf32_guard",
    "weights_device",
]

_WIDENED = (torch.float16, torch.bfloat16)


def dtype_name(dtype: torch.dtype) -> str:
    """``"float32"`` / ``"float64"``: the precision string recorded in every run."""
    return str(dtype).removeprefix("torch.")


def _kind(obj) -> str:
    return f"{type(obj).__module__}.{type(obj).__name__}".removeprefix("builtins.")


def mixed_error(name: str, obj) -> TypeError:
    """The error for a non-tensor argument next to torch tensors."""
    return TypeError(
        f"{name} is a {_kind(obj)} but the other inputs are torch tensors: the torch backend takes "
        f"torch tensors on one device (torch.as_tensor({name}, device=W.device)); pass every input "
        "as a numpy array instead to use the float64 numpy reference"
    )


def weights_device(W, **others) -> torch.device:
    """The device of ``W``; ``TypeError`` when ``W`` is not a tensor but another input is."""
    if not isinstance(W, torch.Tensor):
        torch_args = [k for k, v in others.items() if isinstance(v, torch.Tensor)
                      or getattr(type(v), "__ptqtheory_torch__", False)]
        hint = f" ({', '.join(torch_args)} {'is' if len(torch_args) == 1 else 'are'} torch)" \
            if torch_args else ""
        raise TypeError(f"W is a {_kind(W)} but the torch backend was selected{hint}: pass W as a torch tensor "
                        "on the device of the other inputs, or pass every input as a numpy array to use the "
                        "float64 numpy reference")
    return W.device


def all_finite(t: torch.Tensor) -> torch.Tensor:
    """Whether every entry of a floating ``t`` is finite, as a device bool (no sync). ``torch.aminmax``
    propagates NaN, and an Inf is an extreme: one pass and no temporary, unlike ``isfinite(t).all()``."""
    if t.numel() == 0:
        return torch.ones((), dtype=torch.bool, device=t.device)
    lo, hi = torch.aminmax(t)
    return torch.isfinite(lo) & torch.isfinite(hi)


def check_finite(name: str, t: torch.Tensor) -> None:
    """``ValueError`` naming ``name`` when ``t`` holds NaN or Inf (checked on the device)."""
    if bool(all_finite(t)):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{name} contains NaN or Inf ({int(bad.sum())} entries, first at index {first}); "
                         "clean the data before quantizing")


def _float_dtype(name: str, t: torch.Tensor) -> torch.dtype:
    if t.dtype == torch.bool:
        raise TypeError(f"{name} has dtype torch.bool; pass floating point values ({name}.float() if 0/1 "
                        "values are really meant): booleans are refused rather than read as 0 and 1")
    if t.dtype in (torch.float32, torch.float64):
        return t.dtype
    if t.dtype in _WIDENED:
        return torch.float32
    raise TypeError(f"{name} has dtype {t.dtype}; the torch backend works in float32 or float64 "
                    f"(convert it: {name}.float() or {name}.double())")


def as_weights(W) -> tuple[torch.Tensor, bool]:
    """``(W as an (n, N) tensor in the working dtype, was_vector)``; always a fresh copy: callers write
    ``run.Q`` back into ``layer.weight``, and a record aliasing the weights would then lose ``W``."""
    dtype = _float_dtype("W", W)
    vector = check_weight_shape(tuple(W.shape))
    W2 = W[None, :] if vector else W
    W2 = W2.detach().to(dtype=dtype, copy=True)
    check_finite("W", W2)
    return W2, vector


def check_weight_scale(W2: torch.Tensor) -> None:
    """R1 for the weights in their working dtype, row by row (one reduction, one sync)."""
    lo, hi = torch.aminmax(W2, dim=1)  # one pass, no |W| temporary
    check_weight_rows(torch.maximum(-lo, hi).to("cpu", torch.float64).numpy(), dtype_name(W2.dtype))


def check_data_range(name: str, t: torch.Tensor) -> float:
    """Finite, and inside the data range R1 of :mod:`ptqtheory.tolerances` (one reduction, one sync:
    NaN/Inf propagate into the maximum); returns the largest magnitude."""
    top = 0.0
    if t.numel():
        lo, hi = torch.aminmax(t)  # one pass without a |t| temporary (a tenth of the time); NaN propagates
        top = float(torch.maximum(-lo, hi))
    if not math.isfinite(top):
        check_finite(name, t)
    check_magnitude(name, top, data_range(), fix=HOMOGENEOUS_FIX["X"])
    return top


def as_data(name: str, X, N: int, device: torch.device, m: int | None = None) -> torch.Tensor:
    """A 2-D floating tensor with ``N`` columns (and ``m`` rows) on ``device``, checked finite."""
    if not isinstance(X, torch.Tensor):
        raise mixed_error(name, X)
    if X.device != device:
        raise ValueError(f"{name} is on {X.device} but W is on {device}; move it ({name}.to(W.device))")
    _float_dtype(name, X)
    check_data_shape(name, tuple(X.shape), N, m)
    check_data_range(name, X.detach())
    return X.detach()


@contextmanager
def tf32_guard(device, allow_tf32: bool = False) -> Iterator[bool]:
    """Run a block (one call) with TF32 off (or on, if asked) on CUDA; yields whether TF32 may be used.

    Sets ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` to ``allow_tf32``,
    then restores them and the float32 matmul precision in ``finally`` (even on an exception).
    """
    allow_tf32 = check_bool("allow_tf32", allow_tf32)
    if torch.device(device).type != "cuda":
        yield False
        return
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    with warnings.catch_warnings():
        # torch >= 2.9 announces the deprecation of these flags; their meaning is unchanged.
        warnings.simplefilter("ignore", UserWarning)
        saved = (matmul.allow_tf32, cudnn.allow_tf32, torch.get_float32_matmul_precision())
    try:  # flags set inside the try: whatever part of the setting happened is undone in finally
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            matmul.allow_tf32 = cudnn.allow_tf32 = bool(allow_tf32)
        yield bool(allow_tf32)
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            matmul.allow_tf32, cudnn.allow_tf32 = saved[0], saved[1]
            # The precision string also covers "medium" (bf16), which allow_tf32 alone cannot restore.
            torch.set_float32_matmul_precision(saved[2])
