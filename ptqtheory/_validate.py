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

from .tolerances import HOMOGENEOUS_FIX, check_magnitude, data_range, lam_range, precision_name, weight_range

__all__ = [
    "as_matrix",
    "as_weights",
    "check_bool",
    "check_choice",
    "check_data_shape",
    "check_lam",
    "check_nonnegative_real",
    "check_permutation",
    "check_positive_int",
    "check_probability",
    "check_real",
    "check_seed",
    "check_weight_rows",
    "check_weight_shape",
    "is_exact",
    "is_torch",
    "largest",
]


def is_torch(*objs) -> bool:
    """True when any of ``objs`` is a torch tensor or a torch-backend accumulator (the public algorithms
    hand those to :mod:`ptqtheory.torch_backend`). Never imports torch: without it nothing is a tensor."""
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
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
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
        return np.vectorize(lambda v: _to_rational(v, name), otypes=[object])(arr)
    if arr.dtype.kind == "b":
        raise TypeError(
            f"{name} has dtype bool; pass a real floating or integer array ({name}.astype(float) if "
            "0/1 values are really meant): booleans are refused rather than read as 0 and 1"
        )
    if arr.dtype.kind not in "fiu":
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
    vector = check_weight_shape(arr.shape)
    return (arr[None, :] if vector else arr), vector


def check_weight_shape(shape) -> bool:
    """``W`` of shape ``(n, N)`` or ``(N,)`` with ``n, N >= 1`` (any backend); True for a single row."""
    if len(shape) not in (1, 2):
        raise ValueError(f"W must have shape (n, N) or (N,); got shape {tuple(shape)}")
    if 0 in shape:
        shape2 = (1, *shape) if len(shape) == 1 else tuple(shape)
        raise ValueError(f"W must have at least one row and one column; got shape {shape2}")
    return len(shape) == 1


def check_weight_rows(row_max, precision="float64") -> None:
    """R1 per row (each row has its own certificate): ``row_max`` (``max_j |W_ij|`` per row) zero or in
    :func:`ptqtheory.tolerances.weight_range`. A row of tiny weights would have its identity and bounds
    formed from subnormal numbers, where rounding is no longer relative."""
    row_max = np.asarray(row_max, dtype=float)
    lo, hi = weight_range(precision)
    bad = np.flatnonzero((row_max != 0) & ((row_max < lo) | (row_max > hi)))
    if bad.size:
        i = int(bad[0])
        name = precision_name(precision)
        check_magnitude("W", float(row_max[i]), (lo, hi), precision=name, what=f"max |W[{i}, :]| (row {i})",
                        fix=HOMOGENEOUS_FIX["W"] + (" (or work in float64)" if name == "float32" else ""))


def as_matrix(name: str, X, N: int, m: int | None = None) -> np.ndarray:
    """Return a 2-D float64 (or exact) array with ``N`` columns (and ``m`` rows if given)."""
    arr = _as_array(name, X)
    check_data_shape(name, arr.shape, N, m)
    if not is_exact(arr):
        check_magnitude(name, largest(arr), data_range(), fix=f"scale {name} by a power of two, 2.0**k "
                        "(X and Xt together): Q is unchanged when lam is scaled by 4.0**k")
    return arr


def check_data_shape(name: str, shape, N: int, m: int | None = None) -> None:
    """Calibration data ``(m, N)`` (any backend): one column per input feature, at least one row, and
    the rows of ``X`` when ``m`` is given (``Xt``: the same samples, row for row)."""
    if len(shape) != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (m, N); got shape {tuple(shape)}")
    if shape[1] != N:
        raise ValueError(
            f"{name} has {shape[1]} columns but W has {N}: {name} must have shape (m, N) "
            f"with one column per input feature (the layer computes {name} @ W.T)"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} has no rows; at least one calibration sample is needed")
    if m is not None and shape[0] != m:
        raise ValueError(
            f"{name} has {shape[0]} rows but X has {m}: the quantized-model inputs must be the "
            "same samples as the float-model inputs, row for row"
        )


def largest(a) -> float:
    """Largest magnitude of a float array (0 for an empty one)."""
    a = np.asarray(a)
    return float(np.max(np.abs(a))) if a.size else 0.0


def check_lam(lam, exact: bool = False):
    """Validate an absolute damping ``lam >= 0`` (and, in float64, inside the range R1)."""
    if exact:
        lam = _to_rational(lam, "lam")
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
    check_magnitude("lam", lam, lam_range(), what="lam")
    return lam


def check_positive_int(name: str, value, minimum: int = 1, maximum: int | None = None,
                       why: str = "") -> int:
    """An integer (not a bool) in ``[minimum, maximum]``; ``why`` explains the upper limit in the message."""
    span = f">= {minimum}" if maximum is None else f">= {minimum} and <= {maximum}"
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer {span}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer {span}; got {value}")
    if maximum is not None and int(value) > maximum:  # int(): numbers.Integral's stubs declare no __gt__
        raise ValueError(f"{name} must be an integer {span}; got {value}{why}")
    return int(value)


def check_bool(name: str, value) -> bool:
    """``True`` or ``False`` (numpy booleans too); anything else is refused, not read as truthy."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__})")


def check_real(name: str, value, span: str) -> float:
    """A real number (not a bool, not a string) as a float; the ``TypeError`` says it must be one ``span``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number {span}; got {value!r} ({type(value).__name__})")
    return float(value)


def check_nonnegative_real(name: str, value) -> float:
    """A finite real number >= 0 (not a bool, not a string)."""
    v = check_real(name, value, ">= 0")
    if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a finite real number >= 0; got {value!r}")
    return v


def check_probability(name: str, value) -> float:
    """A failure probability in the open interval (0, 1)."""
    v = check_real(name, value, "in (0, 1)")
    if not 0 < v < 1:
        raise ValueError(f"{name} must be in (0, 1) (a failure probability); got {value!r}")
    return v


def check_choice(name: str, value, choices: tuple) -> str:
    """One of ``choices`` (strings); the message lists them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")
    return value


def check_permutation(order, N: int) -> np.ndarray:
    """An explicit column order: a permutation of ``0..N-1`` (int64), or ``ValueError``."""
    perm = np.asarray(order)
    if perm.dtype.kind not in "iu" or perm.shape != (N,) or not np.array_equal(np.sort(perm), np.arange(N)):
        raise ValueError(
            f"order must be a permutation of 0..{N - 1} (an integer array of length {N}); "
            f"got {perm.dtype} array of shape {perm.shape}"
        )
    return perm.astype(np.int64)


def check_seed(seed) -> None:
    """``None``, a non-negative int, a numpy ``SeedSequence`` or ``Generator``, checked up front
    (also where the run draws nothing at random, so a wrong seed never passes silently)."""
    if seed is None or isinstance(seed, np.random.SeedSequence | np.random.Generator):
        return
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool | np.bool_):
        if seed < 0:
            raise ValueError(f"seed must be a non-negative int; got {seed}")
        return
    raise TypeError(
        f"seed must be None, a non-negative int, a numpy SeedSequence or a numpy Generator; got {seed!r}"
    )
