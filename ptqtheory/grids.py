r"""Quantization grids (alphabets) and the two rounding rules of THEORY.md.

A grid is :math:`\mathcal A = \{\delta (k - z) : lo \le k \le hi\}` with step :math:`\delta > 0`,
zero point :math:`z` and integer range :math:`[lo, hi]` (either end may be infinite). ``delta``,
``zero``, ``lo`` and ``hi`` may be scalars, per row (shape ``(n,)``) or per entry (shape ``(n, N)``,
which is how groups of columns are stored).

Rounding (THEORY.md, "Rounding") is :func:`round_nearest` or :func:`round_stochastic` (uniforms from a
seeded generator); a finite grid then clips :math:`k` into :math:`[lo, hi]`; every clip is reported,
because the a-priori bounds (B1-B12) assume that none happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import _as_array, as_weights, check_bool, check_choice, check_positive_int, check_seed, is_exact
from .backend import get_backend
from .random import uniforms
from .tolerances import HOMOGENEOUS_FIX, max_bits, max_code, precision_name, step_range

__all__ = ["Grid", "MinMax", "quantize_nearest", "quantize_stochastic", "round_nearest", "round_stochastic"]

ROUNDINGS = ("nearest", "stochastic")


def bits_limit_reason(precision="float64") -> str:
    """Why ``bits`` is capped (R2 of :mod:`ptqtheory.tolerances`), for error messages."""
    name = precision_name(precision)
    return (f" ({name} rounds onto a grid exactly enough only while every code k and zero point z "
            f"satisfy |k| + |z| + 1 <= {max_code(name):.0f}, so that the rounding error 5u(|k| + |z| + 1) "
            "stays below 2**-10 of a step and the codes are exact integers; a min-max grid with b bits "
            f"needs 2**(b+1) - 1 <= that, so b <= {max_bits(name)})")


@dataclass(frozen=True)
class MinMax:
    """How a min-max grid was built (GPTQ's quantizer), so algorithms can refit groups.

    Attributes
    ----------
    bits : int
        Bit width; the integer range is ``[0, 2**bits - 1]``.
    sym : bool
        Symmetric grid: ``zero = 2**(bits-1)`` and ``delta = 2 max|w| / (2**bits - 1)``.
    group_size : int or None
        Columns per group; ``None`` means one grid per row.
    """

    bits: int
    sym: bool
    group_size: int | None

    def __post_init__(self):
        check_positive_int("bits", self.bits, 1, max_bits(), why=bits_limit_reason())
        object.__setattr__(self, "sym", check_bool("sym", self.sym))
        if self.group_size is not None:
            check_positive_int("group_size", self.group_size)

    @classmethod
    def of(cls, bits, sym, group_size, precision="float64") -> MinMax:
        """The rule with its arguments checked, ``bits`` against what ``precision`` rounds exactly (R2)."""
        bits = check_positive_int("bits", bits, 1, max_bits(precision), why=bits_limit_reason(precision))
        return cls(bits, sym, None if group_size is None else check_positive_int("group_size", group_size))

    def fit_all(self, W2):
        """Step and zero point per row, or per entry when the rule has groups (each fitted alone)."""
        if self.group_size is None:
            return self.fit(W2)
        delta, zero = (get_backend(W2).zeros_like(W2) for _ in range(2))
        for g0 in range(0, W2.shape[1], self.group_size):
            g1 = g0 + self.group_size
            d, z = self.fit(W2[:, g0:g1])
            delta[:, g0:g1], zero[:, g0:g1] = d[:, None], z[:, None]
        return delta, zero

    def fit(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Step and zero point for each row of ``block`` (GPTQ's ``find_params``).

        With :math:`m_- = \min(\min_j w_j, 0)`, :math:`m_+ = \max(\max_j w_j, 0)` and
        ``maxq = 2**bits - 1``: asymmetric :math:`\delta = (m_+ - m_-)/maxq`,
        :math:`z = \lfloor -m_-/\delta + 1/2 \rfloor`; symmetric :math:`m = \max(|m_-|, m_+)`,
        :math:`\delta = 2m/maxq`, :math:`z = 2^{b-1}`. A row of zeros uses :math:`m_\pm = \pm 1`
        as GPTQ does. Unlike GPTQ, the symmetric grid always spans :math:`[-m, m]`: GPTQ keeps
        :math:`m_- = 0` for a row without negative entries and then clips half of that row. Any
        backend (a tensor's fit stays on its device).
        """
        nx = get_backend(block)
        maxq = 2**self.bits - 1
        lo = nx.minimum(nx.row_min(block), 0.0)
        hi = nx.maximum(nx.row_max(block), 0.0)
        if self.sym:
            hi = nx.maximum(-lo, hi)
            lo = -hi
        empty = (lo == 0) & (hi == 0)
        lo = nx.select(empty, lo, -1.0)
        hi = nx.select(empty, hi, 1.0)
        delta = (hi - lo) / maxq
        if self.sym:
            zero = nx.full_like(delta, float(2 ** (self.bits - 1)))
        else:
            zero = nx.floor(-lo / delta + 0.5)
        return delta, zero


def _param(name: str, value) -> np.ndarray:
    """``lo`` or ``hi``: integers or +-inf (``None`` is unbounded); NaN and booleans are refused."""
    if value is None:
        return np.asarray(np.inf if name == "hi" else -np.inf)
    if _has_inf(value):
        arr = np.asarray(value)
        if arr.dtype.kind == "b":
            _as_array(name, arr)  # raises, naming the argument
        arr = arr.astype(float)
        if np.any(np.isnan(arr)):
            raise ValueError(f"grid {name} contains NaN; pass integers, or -inf/inf for an unbounded end")
    else:
        arr = _as_array(name, value)
    return _at_most_2d(name, arr)


def _at_most_2d(name: str, arr: np.ndarray) -> np.ndarray:
    """A grid parameter ``arr`` when it is a scalar, per row or per entry, else ``ValueError``."""
    if arr.ndim > 2:
        raise ValueError(f"grid {name} must be a scalar, per row (n,) or per entry (n, N)")
    return arr


def _has_inf(value) -> bool:
    try:
        return bool(np.any(np.isinf(np.asarray(value, dtype=float))))
    except (TypeError, ValueError):
        return False


def as_2d(a) -> np.ndarray:
    """A grid parameter as a 2-D array with the grid's broadcasting rule (1-D means per row)."""
    a = np.asarray(a)
    return a.reshape(1, 1) if a.ndim == 0 else (a[:, None] if a.ndim == 1 else a)


def _broadcast(*arrays):
    """The parameters broadcast together, or ``None`` when their shapes only fit a given ``W``
    (then :meth:`Grid.views` reports the mismatch)."""
    try:
        return np.broadcast_arrays(*(as_2d(a) for a in arrays))
    except ValueError:
        return None


def check_steps(delta, precision="float64", name: str = "grid delta") -> None:
    """Steps inside the range R1 (normal numbers; see :func:`check_normal_steps`)."""
    d = np.asarray(delta, dtype=float)
    lo, hi = step_range(precision)
    small, large = float(np.min(d)), float(np.max(d))
    fix = HOMOGENEOUS_FIX["W"]
    pname = precision_name(precision)
    if small < lo:
        sub = "; it is subnormal" if small < np.finfo(pname).tiny else ""
        raise ValueError(
            f"{name} is too small for {pname}: min delta = {small:.4g} is below 2**{np.log2(lo):.0f} ~ "
            f"{lo:.3g} (R1 of ptqtheory.tolerances{sub}): x/delta would overflow and delta (k - z) "
            f"lose its precision. Fix: {fix}"
        )
    if large > hi:
        raise ValueError(
            f"{name} is too large for {pname}: max delta = {large:.4g} exceeds 2**{np.log2(hi):.0f} ~ "
            f"{hi:.3g} (R1 of ptqtheory.tolerances): delta (k - z) and delta^2 D_t would overflow. "
            f"Fix: {fix}"
        )


def check_normal_steps(delta, precision="float64", name: str = "grid delta") -> None:
    """Any grid, whatever the data: normal steps (a subnormal one has lost relative precision and makes
    ``x/delta`` overflow) small enough that ``delta (k - z)`` is finite for every code of R2."""
    d = np.asarray(delta, dtype=float)
    pname = precision_name(precision)
    small, large = float(np.min(d)), float(np.max(d))
    if small < np.finfo(pname).tiny:
        raise ValueError(
            f"{name} must be a normal {pname} number (>= {np.finfo(pname).tiny:.3g}); got min delta = "
            f"{small:.4g}, which is subnormal: x/delta overflows and delta (k - z) loses its relative "
            f"precision. Fix: {HOMOGENEOUS_FIX['W']}"
        )
    top = float(np.finfo(pname).max) / max_code(pname)
    if large > top:
        raise ValueError(
            f"{name} is too large for {pname}: max delta = {large:.4g} exceeds {top:.3g}, beyond which "
            f"delta (k - z) overflows for codes float64 rounds exactly. Fix: {HOMOGENEOUS_FIX['W']}"
        )


def check_code_range(lo, hi, zero, precision="float64", rule: MinMax | None = None) -> None:
    """R2: every code the grid can use has ``|k| + |z| + 1 <= max_code(precision)``; an unbounded end
    is checked when rounding (:func:`check_codes`). The message names ``bits`` for a min-max grid, else
    ``lo``/``hi``/``zero``."""
    arrays = _broadcast(lo, hi, zero)
    if arrays is None:
        return
    lo2, hi2, z2 = (np.asarray(a, dtype=float) for a in arrays)
    limit = max_code(precision)
    az = np.abs(z2)
    for name, end in (("lo", lo2), ("hi", hi2)):
        size = np.where(np.isfinite(end), np.abs(end), 0.0) + az + 1.0
        if np.all(size <= limit):
            continue
        if rule is not None:
            raise ValueError(f"bits must be an integer >= 1 and <= {max_bits(precision)}; got {rule.bits}"
                             + bits_limit_reason(precision))
        worst = float(np.max(size))
        raise ValueError(
            f"grid {name} and zero need codes of size |k| + |zero| + 1 = {worst:.4g}, beyond "
            f"{limit:.0f}{bits_limit_reason(precision)}. Fix: a coarser grid (fewer codes), "
            "or a larger delta"
        )


def check_codes(q, delta, zero, precision="float64", what: str = "the run") -> None:
    """R2 and R3 after rounding: ``q`` finite and every code used has ``|k| + |z| + 1 <= max_code``
    (codes read back from ``q = delta (k - z)``, to within rounding); ``ValueError`` says where."""
    q = np.asarray(q, dtype=float)
    with np.errstate(all="ignore"):
        size = np.abs(q / delta + zero) + np.abs(zero) + 1.0
    limit = max_code(precision)
    ok = np.isfinite(q) & (size <= limit)
    if ok.all():
        return
    bad = tuple(int(i) for i in np.argwhere(~ok)[0])
    if not np.all(np.isfinite(q)):
        raise ValueError(
            f"{what} produced a non-finite quantized value at index {bad}: the values to round "
            f"overflowed {precision_name(precision)} (x/delta or the error feedback). Fix: keep W within "
            "its range and the grid step comparable to W (or use float64), and damp H (lam > 0) "
            "so that the feedback L eta stays bounded"
        )
    with np.errstate(all="ignore"):
        k = float(np.broadcast_to(q / delta + zero, q.shape)[bad])
    raise ValueError(
        f"{what} needed the code k = {k:.4g} at index {bad}, beyond what {precision_name(precision)} "
        f"rounds exactly (|k| + |zero| + 1 <= {limit:.0f}, R2 of ptqtheory.tolerances): the values to "
        "round grew too large for the grid step. Fix: a larger delta or a bounded grid (lo, hi), "
        "or float64"
    )


def check_values(name: str, x, delta, zero, lo, hi, precision="float64") -> None:
    """Before rounding ``x`` (e.g. the weights ``W``): the code each entry would get, after the
    clip, must satisfy R2; an unbounded grid with ``x/delta`` beyond it is refused up front."""
    x = np.asarray(x, dtype=float)
    with np.errstate(all="ignore"):
        k = np.clip(np.floor(x / delta + zero + 0.5), lo, hi)
        size = np.abs(k) + np.abs(zero) + 1.0
    limit = max_code(precision)
    ok = size <= limit
    if ok.all():
        return
    bad = tuple(int(i) for i in np.argwhere(~ok)[0])
    with np.errstate(all="ignore"):
        ratio = float(np.broadcast_to(x / delta, ok.shape)[bad])
    raise ValueError(
        f"{name} / grid delta reaches {ratio:.4g} at index {bad}: the code it rounds to would exceed "
        f"{limit:.0f}, the largest that {precision_name(precision)} rounds exactly (|k| + |zero| + 1; "
        "the rounding error 5u(|k| + |zero| + 1) must stay below 2**-10 of a step). Fix: a larger "
        f"grid delta (comparable to {name}), or a bounded grid (lo, hi) that clips"
    )


class Grid:
    r"""A quantization grid :math:`\{\delta (k - z) : lo \le k \le hi\}` (THEORY.md "Grid").

    Parameters
    ----------
    delta : float or array_like
        Step :math:`\delta > 0`: scalar, per row ``(n,)`` or per entry ``(n, N)``.
    zero : float or array_like, default 0.0
        Zero point :math:`z`, same shapes as ``delta``.
    lo, hi : int, array_like or None
        Integer range of :math:`k`; ``None`` (or :math:`\mp\infty`) means unbounded.
        ``Grid(delta)`` is the infinite grid :math:`\delta\mathbb Z`.

    A 1-D parameter is one value per row: per-column steps of a single vector ``w`` are ``(1, N)``.
    """

    def __init__(self, delta, zero=0.0, lo=None, hi=None, *, rule: MinMax | None = None):
        if rule is not None and not isinstance(rule, MinMax):
            raise TypeError(f"rule must be a pt.MinMax or None; got {type(rule).__name__}")
        d = _at_most_2d("delta", _as_array("delta", delta))
        positive = all(v > 0 for v in d.ravel()) if d.dtype == object else bool(np.all(d > 0))
        if d.size == 0 or not positive:
            raise ValueError(f"grid delta must be > 0 everywhere; got min {np.min(d) if d.size else None}")
        z = _at_most_2d("zero", _as_array("zero", zero))
        if z.size == 0:
            raise ValueError("grid zero is empty; pass a scalar, one value per row or one per entry")
        lo_a, hi_a = _param("lo", lo), _param("hi", hi)
        lof, hif = np.asarray(lo_a, float), np.asarray(hi_a, float)
        for name, a, af in (("lo", lo_a, lof), ("hi", hi_a, hif)):
            if a.size == 0:
                raise ValueError(f"grid {name} is empty; pass an integer, -inf/inf, or None")
            fin = af[np.isfinite(af)]
            if fin.size and np.any(fin != np.round(fin)):
                raise ValueError(f"grid {name} must hold integers (the range of k); got {a}")
        if np.any(lof == np.inf) or np.any(hif == -np.inf):
            raise ValueError(
                "grid lo must be < inf and hi > -inf (lo = inf or hi = -inf leaves an empty alphabet, "
                "which cannot be rounded onto); use None (or -inf/inf) for an unbounded end"
            )
        pair = _broadcast(lof, hif)
        if pair is not None and np.any(pair[0] > pair[1]):
            raise ValueError("grid lo must be <= hi (an empty alphabet cannot be rounded onto)")
        if d.dtype != object:
            check_normal_steps(d)
            if z.dtype != object:
                check_code_range(lof, hif, z, rule=rule)
        self._delta, self._zero, self._lo, self._hi = d, z, lo_a, hi_a
        self.rule = rule

    @classmethod
    def minmax(
        cls, W, bits: int = 4, sym: bool = False, group_size: int | None = None
    ) -> Grid:
        """GPTQ-style min-max grid per row, or per group of ``group_size`` columns.

        Parameters
        ----------
        W : array_like, shape (n, N) or (N,)
            The weights the grid is fitted to.
        bits, sym, group_size : int, bool, int or None
            As the attributes of :class:`MinMax` (the last group may be shorter).

        Notes
        -----
        The arrays are fitted in ``W``'s column order. OPTQ, LDLQ and Qronos, which move the weights,
        *refit* each group from the current weights at its first column, as GPTQ does, so groups are
        contiguous in *processing* order (with act-order, not in ``W``'s). RTN, GPFQ and a
        :meth:`frozen` grid use the arrays fitted here. ``run.grid`` records the grid each entry used.
        """
        rule = MinMax.of(bits, sym, group_size)
        delta, zero = rule.fit_all(np.asarray(as_weights(W)[0], dtype=float))
        return cls(delta, zero, lo=0, hi=2**rule.bits - 1, rule=rule)

    @classmethod
    def alphabet(cls, delta, K: int) -> Grid:
        r"""The theory's symmetric alphabet :math:`\mathcal A_K = \delta\{-K, \dots, K\}` (B8)."""
        limit = int(max_code()) - 1
        K = check_positive_int("K", K, minimum=0, maximum=limit,
                               why=f" (codes |k| <= K need K + 1 <= {limit + 1}, R2 of ptqtheory.tolerances)")
        return cls(delta, 0.0, lo=-K, hi=K)

    @classmethod
    def trusted(cls, delta, zero, lo, hi, rule: MinMax | None = None) -> Grid:
        """A grid from arrays known to be valid (a run's record), skipping the constructor's checks
        (seconds at LLM sizes)."""
        g = cls.__new__(cls)
        g._delta, g._zero, g._lo, g._hi = delta, zero, np.asarray(lo), np.asarray(hi)
        g.rule = rule
        return g

    def frozen(self) -> Grid:
        """The same arrays without the min-max rule: no algorithm refits groups."""
        return Grid(self._delta, self._zero, self._lo, self._hi)

    @property
    def delta(self) -> np.ndarray:
        return self._delta

    @property
    def zero(self) -> np.ndarray:
        return self._zero

    @property
    def lo(self) -> np.ndarray:
        return self._lo

    @property
    def hi(self) -> np.ndarray:
        return self._hi

    @property
    def bounded(self) -> bool:
        """True when some entry has a finite range (clipping is possible)."""
        return any(bool(np.any(np.isfinite(np.asarray(a, float)))) for a in (self._lo, self._hi))

    @property
    def refits_groups(self) -> bool:
        return self.rule is not None and self.rule.group_size is not None

    def views(self, n: int, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(delta, zero, lo, hi)`` as read-only ``(n, N)`` broadcast views (no copies); see :meth:`expand`."""
        out = []
        for name, a in (("delta", self._delta), ("zero", self._zero), ("lo", self._lo), ("hi", self._hi)):
            a = np.asarray(a)
            if a.ndim == 1:
                if a.shape[0] != n:
                    raise ValueError(
                        f"grid {name} has {a.shape[0]} values (one per row) but W has {n} rows"
                    )
                a = a[:, None]
            elif a.ndim == 2 and a.shape not in ((n, N), (n, 1), (1, N), (1, 1)):
                raise ValueError(f"grid {name} has shape {a.shape}; W has shape ({n}, {N})")
            out.append(np.broadcast_to(a, (n, N)))
        return out[0], out[1], out[2], out[3]

    def expand(self, n: int, N: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(delta, zero, lo, hi)`` broadcast to full ``(n, N)`` arrays (copies)."""
        delta, zero, lo, hi = self.views(n, N)
        return delta.copy(), zero.copy(), lo.copy(), hi.copy()

    def round(self, W, rounding: str = "nearest", seed=None) -> tuple[np.ndarray, np.ndarray]:
        """``(Q, clipped)``: every entry of ``W`` rounded onto this grid, ``"nearest"`` or
        ``"stochastic"`` (which needs ``seed``)."""
        check_choice("rounding", rounding, ROUNDINGS)
        check_seed(seed)
        W2, vector = as_weights(W)
        n, N = W2.shape
        delta, zero, lo, hi = self.expand(n, N)
        exact = is_exact(W2) or delta.dtype == object or zero.dtype == object
        if not exact:
            check_values("W", W2, delta, zero, lo, hi)
        if rounding == "nearest":
            Q, clipped = quantize_nearest(W2, delta, zero, lo, hi)
        else:
            Q, clipped = quantize_stochastic(W2, delta, zero, lo, hi, uniforms(seed, (n, N)))
        if not exact:
            check_codes(Q, delta, zero, what="Grid.round")
        return (Q[0], clipped[0]) if vector else (Q, clipped)

    def __repr__(self) -> str:
        def show(a):
            a = np.asarray(a)
            return f"{a.item():g}" if a.ndim == 0 and a.dtype != object else f"array{a.shape}"

        return (f"Grid(delta={show(self._delta)}, zero={show(self._zero)}, lo={show(self._lo)}, "
                f"hi={show(self._hi)}, rule={self.rule})")


def _checked_rounding(x, delta, zero, lo, hi, u=None, stochastic: bool = False):
    """:func:`round_nearest` or (``stochastic``) :func:`round_stochastic`, checks included."""
    xa = _as_array("x", x)
    d = _as_array("delta", delta)
    z = _as_array("zero", zero)
    lo_a, hi_a = _param("lo", lo), _param("hi", hi)
    try:
        shape = np.broadcast_shapes(xa.shape, d.shape, z.shape, lo_a.shape, hi_a.shape,
                                    *(() if u is None else (np.shape(u),)))
    except ValueError as exc:
        raise ValueError(f"x, delta, zero, lo, hi (and u) must broadcast together: {exc}") from None
    exact = xa.dtype == object or d.dtype == object or z.dtype == object
    positive = all(v > 0 for v in d.ravel()) if d.dtype == object else bool(np.all(d > 0))
    if d.size == 0 or not positive:
        raise ValueError("delta must be > 0 everywhere")
    lof, hif = np.asarray(lo_a, float), np.asarray(hi_a, float)
    for name, a in (("lo", lof), ("hi", hif)):
        fin = a[np.isfinite(a)]
        if fin.size and np.any(fin != np.round(fin)):
            raise ValueError(f"{name} must hold integers (the range of k) or -inf/inf")
    if np.any(np.broadcast_to(lof, shape) > np.broadcast_to(hif, shape)) or np.any(lof == np.inf) \
            or np.any(hif == -np.inf):
        raise ValueError("lo must be <= hi, lo < inf and hi > -inf (an empty alphabet cannot be rounded onto)")
    if u is not None:
        ua = _as_array("u", u)
        if ua.size and not (np.min(ua) >= 0 and np.max(ua) < 1):
            raise ValueError("u must hold uniforms in [0, 1)")
    if not exact:
        check_normal_steps(d, name="delta")
        check_values("x", xa, d, z, lof, hif)
    if stochastic:
        q, clipped = quantize_stochastic(xa, d, z, lo_a, hi_a, np.asarray(u, dtype=float))
    else:
        q, clipped = quantize_nearest(xa, d, z, lo_a, hi_a)
    if not exact:
        check_codes(q, d, z, what="round_stochastic" if stochastic else "round_nearest")
    return q, clipped


def round_nearest(x, delta, zero, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    r"""Nearest grid point, ties half up: :math:`k = \lfloor x/\delta + z + 1/2 \rfloor`, then clip.

    Returns ``(q, clipped)``; exact inputs stay exact. The arguments broadcast together, ``lo``/``hi``
    may be ``-inf``/``inf``, and each is checked first (an error naming it): real finite arrays, steps
    > 0 inside R1, integer ends with ``lo <= hi``, codes that float64 rounds exactly (R2 of
    :mod:`ptqtheory.tolerances`).
    """
    return _checked_rounding(x, delta, zero, lo, hi)


def round_stochastic(x, delta, zero, lo, hi, u) -> tuple[np.ndarray, np.ndarray]:
    r"""Unbiased stochastic rounding, then clip: :math:`k = \lfloor s\rfloor + [u < s - \lfloor s\rfloor]`,
    :math:`s = x/\delta + z`, uniforms ``u`` in [0, 1), so :math:`E[\delta(k - z)] = x` before clipping
    (THEORY.md B3). Otherwise as :func:`round_nearest`.
    """
    return _checked_rounding(x, delta, zero, lo, hi, u, stochastic=True)


def quantize_nearest(x, delta, zero, lo, hi):
    """:func:`round_nearest` without the checks, for every backend (the algorithms' hot loop)."""
    nx = get_backend(x)
    k = nx.floor(x / delta + zero + nx.half(x))
    kc, clipped = nx.clip(k, lo, hi)
    return delta * (kc - zero), clipped


def quantize_stochastic(x, delta, zero, lo, hi, u):
    """:func:`round_stochastic` without the checks, for every backend."""
    nx = get_backend(x)
    s = x / delta + zero
    f = nx.floor(s)
    k = f + nx.indicator(u < (s - f), s)
    kc, clipped = nx.clip(k, lo, hi)
    return delta * (kc - zero), clipped
