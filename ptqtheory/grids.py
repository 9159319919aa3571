r"""Quantization grids (alphabets) and the two rounding rules of THEORY.md.

A grid is :math:`\mathcal A = \{\delta (k - z) : lo \le k \le hi\}` with step :math:`\delta > 0`,
zero point :math:`z` and integer range :math:`[lo, hi]` (either end may be infinite). ``delta``,
``zero``, ``lo`` and ``hi`` may be scalars, per row (shape ``(n,)``) or per entry (shape ``(n, N)``,
which is how groups of columns are stored).

Rounding (THEORY.md, "Rounding"):

* nearest, ties half up: :math:`k = \lfloor x/\delta + z + 1/2 \rfloor`;
* stochastic, unbiased: :math:`k = \lfloor s \rfloor + [U < s - \lfloor s \rfloor]`,
  :math:`s = x/\delta + z`, :math:`U \sim \mathrm{Unif}[0, 1)` from a seeded generator.

A finite grid then clips :math:`k` into :math:`[lo, hi]`; every clip is reported, because the a-priori
bounds (B1-B12) assume that none happened.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _linalg
from ._validate import _as_array, check_positive_int, is_exact

__all__ = ["Grid", "MinMax", "round_nearest", "round_stochastic"]


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

    def fit(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""Step and zero point for each row of ``block`` (GPTQ's ``find_params``).

        With :math:`m_- = \min(\min_j w_j, 0)`, :math:`m_+ = \max(\max_j w_j, 0)` and
        ``maxq = 2**bits - 1``: asymmetric :math:`\delta = (m_+ - m_-)/maxq`,
        :math:`z = \lfloor -m_-/\delta + 1/2 \rfloor`; symmetric :math:`m = \max(|m_-|, m_+)`,
        :math:`\delta = 2m/maxq`, :math:`z = 2^{b-1}`. A row of zeros uses :math:`m_\pm = \pm 1`
        as GPTQ does. Unlike GPTQ, the symmetric grid always spans :math:`[-m, m]`: GPTQ keeps
        :math:`m_- = 0` for a row without negative entries and then clips half of that row.
        """
        maxq = 2**self.bits - 1
        b = np.asarray(block, dtype=float)
        lo = np.minimum(b.min(axis=1), 0.0)
        hi = np.maximum(b.max(axis=1), 0.0)
        if self.sym:
            hi = np.maximum(-lo, hi)
            lo = -hi
        empty = (lo == 0) & (hi == 0)
        lo = np.where(empty, -1.0, lo)
        hi = np.where(empty, 1.0, hi)
        delta = (hi - lo) / maxq
        if self.sym:
            zero = np.full_like(delta, float(2 ** (self.bits - 1)))
        else:
            zero = np.floor(-lo / delta + 0.5)
        return delta, zero


def _param(name: str, value, allow_inf: bool) -> np.ndarray:
    if value is None:
        return np.asarray(np.inf if name == "hi" else -np.inf)
    arr = _as_array(name, value) if not (allow_inf and _has_inf(value)) else np.asarray(value, float)
    if arr.ndim > 2:
        raise ValueError(f"grid {name} must be a scalar, per row (n,) or per entry (n, N)")
    return arr


def _has_inf(value) -> bool:
    try:
        return bool(np.any(np.isinf(np.asarray(value, dtype=float))))
    except (TypeError, ValueError):
        return False


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

    Notes
    -----
    A 1-D parameter is read as one value per row. For a single weight vector ``w`` of shape
    ``(N,)`` (one row) pass per-column steps with shape ``(1, N)``.
    """

    def __init__(self, delta, zero=0.0, lo=None, hi=None, *, rule: MinMax | None = None):
        d = _as_array("delta", delta)
        if d.ndim > 2:
            raise ValueError("grid delta must be a scalar, per row (n,) or per entry (n, N)")
        positive = all(v > 0 for v in d.ravel()) if d.dtype == object else bool(np.all(d > 0))
        if d.size == 0 or not positive:
            raise ValueError(f"grid delta must be > 0 everywhere; got min {np.min(d)}")
        z = _as_array("zero", zero)
        if z.ndim > 2:
            raise ValueError("grid zero must be a scalar, per row (n,) or per entry (n, N)")
        lo_a = _param("lo", lo, allow_inf=True)
        hi_a = _param("hi", hi, allow_inf=True)
        for name, a in (("lo", lo_a), ("hi", hi_a)):
            fin = np.asarray(a, dtype=float)
            fin = fin[np.isfinite(fin)]
            if fin.size and np.any(fin != np.round(fin)):
                raise ValueError(f"grid {name} must hold integers (the range of k); got {a}")
        if np.any(np.asarray(lo_a, float) > np.asarray(hi_a, float)):
            raise ValueError("grid lo must be <= hi (an empty alphabet cannot be rounded onto)")
        self._delta, self._zero, self._lo, self._hi = d, z, lo_a, hi_a
        self.rule = rule

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def minmax(
        cls, W, bits: int = 4, sym: bool = False, group_size: int | None = None
    ) -> Grid:
        """GPTQ-style min-max grid per row, or per group of ``group_size`` columns.

        Parameters
        ----------
        W : array_like, shape (n, N) or (N,)
            The weights the grid is fitted to.
        bits : int
            Bit width ``b >= 1``; ``k`` ranges over ``[0, 2**b - 1]``.
        sym : bool
            Symmetric grid (see :meth:`MinMax.fit`).
        group_size : int, optional
            Columns per group (the last group may be shorter).

        Notes
        -----
        The grid's arrays are fitted to ``W`` in its own column order. Algorithms that move the
        weights (OPTQ, LDLQ, Qronos) *refit* each group from the current weights when they reach
        the group's first column, as GPTQ does; groups are then contiguous in *processing* order
        (with act-order they are not contiguous in the original order). The grid actually used for
        every entry is stored in the run record (``run.grid``). Call :meth:`frozen` to keep the
        groups fitted here instead. RTN and GPFQ use the arrays fitted here.
        """
        bits = check_positive_int("bits", bits)
        W2, _ = _weights_2d(W)
        n, N = W2.shape
        if group_size is not None:
            group_size = check_positive_int("group_size", group_size)
        rule = MinMax(bits=bits, sym=bool(sym), group_size=group_size)
        hi = 2**bits - 1
        if group_size is None:
            delta, zero = rule.fit(W2)
            return cls(delta, zero, lo=0, hi=hi, rule=rule)
        delta = np.empty((n, N))
        zero = np.empty((n, N))
        for g0 in range(0, N, group_size):
            g1 = min(g0 + group_size, N)
            d, z = rule.fit(W2[:, g0:g1])
            delta[:, g0:g1] = d[:, None]
            zero[:, g0:g1] = z[:, None]
        return cls(delta, zero, lo=0, hi=hi, rule=rule)

    @classmethod
    def alphabet(cls, delta, K: int) -> Grid:
        r"""The theory's symmetric alphabet :math:`\mathcal A_K = \delta\{-K, \dots, K\}` (B8)."""
        K = check_positive_int("K", K, minimum=0)
        return cls(delta, 0.0, lo=-K, hi=K)

    @classmethod
    def trusted(cls, delta, zero, lo, hi, rule: MinMax | None = None) -> Grid:
        """A grid from arrays already known to be valid (an algorithm's record of the grid it used).

        The constructor's checks loop over every entry, which costs seconds at LLM sizes; the arrays
        of a record come from a grid that passed them.
        """
        g = cls.__new__(cls)
        g._delta, g._zero, g._lo, g._hi = delta, zero, np.asarray(lo), np.asarray(hi)
        g.rule = rule
        return g

    def frozen(self) -> Grid:
        """The same arrays without the min-max rule: no algorithm refits groups."""
        return Grid(self._delta, self._zero, self._lo, self._hi)

    # -- properties --------------------------------------------------------------------------
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
        return bool(np.any(np.isfinite(np.asarray(self._lo, float)))) or bool(
            np.any(np.isfinite(np.asarray(self._hi, float)))
        )

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
        return tuple(v.copy() for v in self.views(n, N))

    def round(self, W, rounding: str = "nearest", seed=None) -> tuple[np.ndarray, np.ndarray]:
        """Round every entry of ``W`` onto this grid; return ``(Q, clipped)``.

        ``rounding`` is ``"nearest"`` or ``"stochastic"`` (which needs ``seed``).
        """
        W2, vector = _weights_2d(W)
        n, N = W2.shape
        delta, zero, lo, hi = self.expand(n, N)
        if rounding == "nearest":
            Q, clipped = round_nearest(W2, delta, zero, lo, hi)
        elif rounding == "stochastic":
            from .random import uniforms

            Q, clipped = round_stochastic(W2, delta, zero, lo, hi, uniforms(seed, (n, N)))
        else:
            raise ValueError(f"rounding must be 'nearest' or 'stochastic'; got {rounding!r}")
        return (Q[0], clipped[0]) if vector else (Q, clipped)

    def __repr__(self) -> str:
        def show(a):
            a = np.asarray(a)
            return f"{a.item():g}" if a.ndim == 0 and a.dtype != object else f"array{a.shape}"

        return (f"Grid(delta={show(self._delta)}, zero={show(self._zero)}, lo={show(self._lo)}, "
                f"hi={show(self._hi)}, rule={self.rule})")


def _weights_2d(W) -> tuple[np.ndarray, bool]:
    from ._validate import as_weights

    return as_weights(W)


def _clip(k, lo, hi):
    kc = np.where(k < lo, lo, k)
    kc = np.where(kc > hi, hi, kc)
    return kc, (k < lo) | (k > hi)


def round_nearest(x, delta, zero, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    r"""Nearest grid point, ties half up: :math:`k = \lfloor x/\delta + z + 1/2 \rfloor`, then clip.

    All arguments broadcast together. Returns ``(q, clipped)``. Exact inputs stay exact.
    """
    half = 0.5 if not is_exact(np.asarray(x)) else _half()
    k = _linalg.floor(x / delta + zero + half)
    kc, clipped = _clip(k, lo, hi)
    return delta * (kc - zero), np.asarray(clipped, dtype=bool)


def round_stochastic(x, delta, zero, lo, hi, u) -> tuple[np.ndarray, np.ndarray]:
    r"""Unbiased stochastic rounding with the uniforms ``u`` in [0, 1), then clip.

    :math:`k = \lfloor s\rfloor + [u < s - \lfloor s\rfloor]` with :math:`s = x/\delta + z`, so
    :math:`E[\delta(k - z)] = x` before clipping (THEORY.md B3). Returns ``(q, clipped)``.
    """
    s = x / delta + zero
    f = _linalg.floor(s)
    k = f + (u < (s - f))
    kc, clipped = _clip(k, lo, hi)
    return delta * (kc - zero), np.asarray(clipped, dtype=bool)


def _half():
    import sympy

    return sympy.Rational(1, 2)
