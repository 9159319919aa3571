"""Input checks shared by every public function.

Every check raises a ``ValueError`` (or ``TypeError``) whose message names the argument and says how
to fix it. Nothing is clipped, damped, skipped or cast silently: float16/float32/integer inputs are
widened to float64, which is exact; anything else is refused.
"""

from __future__ import annotations

import numbers
import sys
from fractions import Fraction

import numpy as np
import sympy

__all__ = [
    "as_matrix",
    "as_weights",
    "check_lam",
    "check_positive_int",
    "is_exact",
    "is_torch",
]


def is_torch(*objs) -> bool:
    """True when any of ``objs`` is a torch tensor or a torch-backend accumulator.

    Never imports torch: if torch was not imported, nothing can be a tensor. The public algorithms
    call this first and hand torch inputs to :mod:`ptqtheory.torch_backend`.
    """
    torch = sys.modules.get("torch")
    for a in objs:
        if getattr(type(a), "__ptqtheory_torch__", False):
            return True
        if torch is not None and isinstance(a, torch.Tensor):
            return True
    return False


def is_exact(a: np.ndarray) -> bool:
    """True when ``a`` holds exact rationals (object dtype), the mode used by the T6 tests."""
    return isinstance(a, np.ndarray) and a.dtype == object


def _to_rational(v, name: str):
    if isinstance(v, sympy.Rational):
        return v
    if isinstance(v, Fraction):
        return sympy.Rational(v.numerator, v.denominator)
    if isinstance(v, numbers.Integral):
        return sympy.Integer(int(v))
    raise TypeError(
        f"{name} has object dtype, which selects exact arithmetic, but holds {type(v).__name__}; "
        "exact mode takes sympy.Rational, fractions.Fraction or int entries only"
    )


def _as_array(name: str, a) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "device"):
        raise TypeError(
            f"{name} is a torch tensor; the numpy reference takes numpy arrays "
            f"(pass {name}.detach().cpu().numpy())"
        )
    arr = np.asarray(a)
    if arr.dtype == object:
        flat = [_to_rational(v, name) for v in arr.ravel()]
        out = np.empty(arr.shape, dtype=object)
        out.ravel()[:] = flat
        return out
    if arr.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; pass a real floating or integer array "
            "(complex and string data have no meaning here)"
        )
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; converting it to float64 would round it. "
            "Convert it yourself if that is intended."
        )
    if arr.dtype.kind in "iu" and arr.size and np.max(np.abs(arr)) > 2**53:
        raise ValueError(f"{name} has integers beyond 2**53 that float64 cannot hold exactly")
    out = arr.astype(np.float64)
    if not np.all(np.isfinite(out)):
        bad = np.argwhere(~np.isfinite(out))
        raise ValueError(
            f"{name} contains NaN or Inf ({len(bad)} entries, first at index "
            f"{tuple(int(i) for i in bad[0])}); clean the data before quantizing"
        )
    return out


def as_weights(W) -> tuple[np.ndarray, bool]:
    """Return ``(W as a float64 (n, N) array, was_vector)``; a 1-D ``w`` becomes one row."""
    arr = _as_array("W", W)
    if arr.ndim == 1:
        arr = arr[None, :]
        vector = True
    elif arr.ndim == 2:
        vector = False
    else:
        raise ValueError(f"W must have shape (n, N) or (N,); got shape {arr.shape}")
    if arr.shape[1] == 0 or arr.shape[0] == 0:
        raise ValueError(f"W must have at least one row and one column; got shape {arr.shape}")
    return arr, vector


def as_matrix(name: str, X, N: int, m: int | None = None) -> np.ndarray:
    """Return a 2-D float64 (or exact) array with ``N`` columns (and ``m`` rows if given)."""
    arr = _as_array(name, X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (m, N); got shape {arr.shape}")
    if arr.shape[1] != N:
        raise ValueError(
            f"{name} has {arr.shape[1]} columns but W has {N}: {name} must have shape (m, N) "
            f"with one column per input feature (the layer computes {name} @ W.T)"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no rows; at least one calibration sample is needed")
    if m is not None and arr.shape[0] != m:
        raise ValueError(
            f"{name} has {arr.shape[0]} rows but X has {m}: the quantized-model inputs must be the "
            "same samples as the float-model inputs, row for row"
        )
    return arr


def check_lam(lam, exact: bool = False):
    """Validate an absolute damping ``lam >= 0``."""
    if exact:
        lam = _to_rational(lam, "lam") if not isinstance(lam, sympy.Rational) else lam
        if lam < 0:
            raise ValueError(f"lam must be >= 0; got {lam}")
        return lam
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam must be a real number or a pt.Damping; got {type(lam).__name__}")
    lam = float(lam)
    if not np.isfinite(lam):
        raise ValueError(f"lam must be finite; got {lam}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (it is added to the diagonal of X^T X); got {lam}")
    return lam


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)
