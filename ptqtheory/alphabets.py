r"""General finite alphabets (non-uniform quantization levels) and the dINT format.

An :class:`Alphabet` is a finite, strictly increasing set of real values
:math:`v_0 < v_1 < \dots < v_{m-1}` (:math:`m \ge 2`) times a positive scale per output channel:
row :math:`i` is rounded onto :math:`s_i\mathcal V = \{s_i v_k\}`. It is accepted wherever a
:class:`~ptqtheory.Grid` is (``pt.rtn``, ``pt.optq``, ``pt.ldlq``, ``pt.qronos``, ``pt.gpfq``; numpy
float64 and torch), with nearest and unbiased stochastic rounding (docs/methods.md, "Alphabets and dINT";
docs/theory.md section 7, "General finite alphabets").

Rounding, with :math:`y = x/s_i` and :math:`[a, b] = [v_k, v_{k+1}]` the alphabet interval holding
:math:`y` (the first or the last interval when :math:`y` lies outside :math:`[v_0, v_{m-1}]`):

* nearest, ties up: :math:`b` when :math:`y - a \ge b - y`, else :math:`a` (the Grid's rule "ties half
  up", so an alphabet equal to a grid's points rounds as the grid does);
* stochastic, unbiased: :math:`b` when :math:`U < (y - a)/(b - a)`, else :math:`a`, with
  :math:`U \sim \mathrm{Unif}[0, 1)` drawn from the seed exactly as for a grid; then
  :math:`E[q] = x` for every :math:`x` inside :math:`[s_i v_0, s_i v_{m-1}]`.

Outside that range both rules return the nearest end :math:`s_i v_0` or :math:`s_i v_{m-1}` and the
entry is reported as *clipped* (``run.clipped``): the bounds then do not apply to the row (their
hypothesis "no clip" fails), exactly as for a finite grid.

Bounds. The local gap of :math:`x` is :math:`g(x) = s_i(b - a)`; inside the range nearest rounding has
:math:`|\eta| \le g(x)/2`, stochastic rounding :math:`E\eta = 0`, :math:`|\eta| \le g(x)`,
:math:`E\eta^2 = (y-a)(b-y)s_i^2 \le g(x)^2/4`. Every bound B1-B12 that reads a grid step therefore
holds with the step replaced by the row's largest gap :math:`s_i\max_k(v_{k+1} - v_k)`
(:meth:`Alphabet.step_bound`); B1 has an a-posteriori form ``B1.local`` with the gap of each
:math:`x_t`. B8 and L1 are statements about the uniform grid and do not apply to alphabet runs.
"""

from __future__ import annotations

import numpy as np

from ._validate import _as_array, check_choice, check_positive_int, check_seed
from .backend import get_backend

__all__ = ["Alphabet", "quantize_alphabet"]

MAX_DINT_BITS = 16
"""dINT and INT alphabets up to 16 bits (65535 values): enough for every format in use, and small
enough that the values and their midpoints are exact in float32 as well as float64."""


def _check_values(values) -> np.ndarray:
    """The alphabet's values: a 1-D real finite float64 array, strictly increasing, at least 2."""
    if hasattr(values, "detach") and hasattr(values, "device"):
        values = values.detach().cpu().numpy()
    v = _as_array("values", values)
    if v.dtype == object:
        raise TypeError("Alphabet values must be real floats or integers; exact rationals (sympy) are not "
                        "supported by alphabets (use a pt.Grid for exact arithmetic)")
    if v.ndim != 1:
        raise ValueError(f"Alphabet values must be a 1-D array of levels; got shape {v.shape}")
    if v.size < 2:
        raise ValueError(f"Alphabet needs at least 2 distinct values to round onto; got {v.size}")
    d = np.diff(v)
    if np.any(d <= 0):
        k = int(np.argmax(d <= 0))
        what = "repeats" if d[k] == 0 else "decreases"
        raise ValueError(
            f"Alphabet values must be strictly increasing; the sequence {what} at index {k + 1} "
            f"({float(v[k]):g} then {float(v[k + 1]):g}). Pass np.unique(values) (sorted, duplicates removed) "
            "if a set of levels is meant"
        )
    if not np.all(np.isfinite(d)):
        raise ValueError("Alphabet values are too far apart: a gap overflows float64")
    tiny = np.finfo(np.float64).tiny
    if float(np.min(d)) < tiny * max(1.0, float(np.max(np.abs(v)))) or float(np.min(d)) < tiny:
        raise ValueError("Alphabet values are too close together: a gap is subnormal in float64")
    out = v.copy()
    out.setflags(write=False)
    return out


def _check_scale(scale) -> np.ndarray:
    """A positive normal scale: a scalar (every row) or one per row, shape ``(n,)``."""
    if hasattr(scale, "detach") and hasattr(scale, "device"):
        scale = scale.detach().to("cpu").double().numpy()
    s = _as_array("scale", scale)
    if s.dtype == object:
        raise TypeError("Alphabet scale must be real (float or integer); exact rationals are not supported")
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim > 1:
        raise ValueError(f"Alphabet scale must be a scalar or one value per row, shape (n,); got {s.shape}")
    if s.size == 0:
        raise ValueError("Alphabet scale is empty; pass a scalar or one value per row")
    tiny = np.finfo(np.float64).tiny
    if not np.all(s >= tiny):
        raise ValueError(
            f"Alphabet scale must be a positive normal float64 number everywhere (>= {tiny:.3g}); got min "
            f"{float(np.min(s)):.4g}. A zero scale leaves one value; fit the scale with Alphabet.fit(W)"
        )
    out = s.copy()
    out.setflags(write=False)
    return out


class Alphabet:
    r"""A finite, non-uniform alphabet :math:`s_i\{v_0 < \dots < v_{m-1}\}` per row (docs/methods.md).

    Parameters
    ----------
    values : array_like, shape (m,)
        The levels, real and finite, strictly increasing, :math:`m \ge 2`. Unsorted or repeated
        values are refused (``ValueError`` naming the index): pass ``np.unique(values)`` when a set is
        meant. Nothing is reordered silently.
    scale : float or array_like, shape (n,), default 1.0
        Positive scale: one for every row, or one per output channel (row). Row ``i`` is rounded onto
        ``scale[i] * values``. :meth:`fit` chooses per-row scales from the weights.

    Notes
    -----
    An alphabet has no groups and is never refitted during a run (``rule`` is ``None``). The run
    record's ``grid`` is the alphabet with one scale per row. Exact (sympy) arithmetic is not
    supported: pass a :class:`~ptqtheory.Grid` there.
    """

    refits_groups = False
    bounded = True

    def __init__(self, values, scale=1.0):
        self._values = _check_values(values)
        self._scale = _check_scale(scale)
        self.rule = None  # the Grid's attribute: alphabets have no min-max rule, nothing is refitted

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def dint(cls, bits: int, scale=1.0) -> Alphabet:
        r"""The dINT alphabet of ``bits`` bits (Lee et al., EMNLP 2023), times ``scale``.

        .. math:: \mathrm{dINT}(b) = \{0, \pm\tfrac12\} \cup \{\pm1, \pm2, \dots, \pm(2^{b-1} - 2)\}

        The symmetric ``b``-bit integer format :meth:`integer` has the :math:`2^b - 1` values
        :math:`\{0, \pm1, \dots, \pm(2^{b-1}-1)\}`; dINT spends the codes of its largest magnitude
        :math:`\pm(2^{b-1}-1)` on the *denormal* values :math:`\pm\frac12`, which keep small weights
        from underflowing to 0. Same number of codes, finer near zero, one step less range. dINT4 is
        :math:`\{0, \pm0.5, \pm1, \dots, \pm6\}`. This is the reconstruction documented in
        docs/methods.md ("Alphabets and dINT"): the paper's own text was not available here.
        ``bits`` is 2 (:math:`\{0, \pm\frac12\}`) to 16.
        """
        b = check_positive_int("bits", bits, 2, MAX_DINT_BITS,
                               why=" (dINT(2) = {0, +-1/2}; at most 16 bits here)")
        top = 2 ** (b - 1) - 2
        pos = np.concatenate([[0.5], np.arange(1, top + 1, dtype=float)])
        return cls(np.concatenate([-pos[::-1], [0.0], pos]), scale)

    @classmethod
    def integer(cls, bits: int, scale=1.0) -> Alphabet:
        r"""The symmetric ``bits``-bit integer alphabet :math:`\{0, \pm1, \dots, \pm(2^{b-1}-1)\}`
        (:math:`2^b - 1` values; the "restricted range" INT format), times ``scale``: the INT baseline
        that :meth:`dint` is compared with at equal bits."""
        b = check_positive_int("bits", bits, 2, MAX_DINT_BITS, why=" (at most 16 bits here)")
        top = 2 ** (b - 1) - 1
        return cls(np.arange(-top, top + 1, dtype=float), scale)

    def scaled(self, scale) -> Alphabet:
        """The same values with another ``scale`` (a scalar or one per row)."""
        return Alphabet(self._values, scale)

    def fit(self, W) -> Alphabet:
        r"""Per-row scales from the weights: the smallest :math:`s_i` with
        :math:`[\min_j w_{ij}, \max_j w_{ij}] \subseteq [s_i v_0, s_i v_{m-1}]`, so no weight of ``W``
        itself clips (absmax scaling for a symmetric alphabet: :math:`s_i = \max_j|w_{ij}|/v_{m-1}`).

        The alphabet's range must contain 0 (INT, dINT). A row of zeros gets scale 1. ``W`` is a
        numpy array or a torch tensor ``(n, N)`` (or one row ``(N,)``); the scales are computed in
        float64 on the host, then nudged up by ulps until no entry of ``W`` clips in float64. Raises
        ``ValueError`` when a row has entries of a sign the alphabet cannot represent.
        """
        if hasattr(W, "detach") and hasattr(W, "device"):
            W = W.detach().to("cpu").double().numpy()
        from ._validate import as_weights

        W2, _ = as_weights(W)
        W2 = np.asarray(W2, dtype=float)
        v0, v1 = float(self._values[0]), float(self._values[-1])
        if not v0 <= 0 <= v1:
            raise ValueError(f"Alphabet.fit needs an alphabet whose range [{v0:g}, {v1:g}] contains 0 (as INT "
                             "and dINT do), so that a scale can cover every row; set scale= yourself otherwise")
        hi = np.max(W2, axis=1, initial=0.0)
        lo = np.min(W2, axis=1, initial=0.0)
        if np.any(hi > 0) and v1 <= 0:
            raise ValueError("W has positive entries but every alphabet value is <= 0: no scale covers them")
        if np.any(lo < 0) and v0 >= 0:
            raise ValueError("W has negative entries but every alphabet value is >= 0: no scale covers them; "
                             "use an alphabet with negative values")
        s_hi = hi / v1 if v1 > 0 else np.zeros_like(hi)
        s_lo = lo / v0 if v0 < 0 else np.zeros_like(lo)
        with np.errstate(over="ignore"):
            s = np.maximum(s_hi, s_lo)
        if not np.all(np.isfinite(s)):
            raise ValueError(
                f"Alphabet.fit: the scale max|w| / |v| overflows float64 (extreme levels {v0:.4g}, {v1:.4g} "
                "too close to 0 for these weights); pass an alphabet whose extreme levels are comparable "
                "to its gaps, or set scale= yourself"
            )
        # max w / s (what rounding compares with v1) may round above v1 by an ulp: nudge s up until no
        # entry of W clips in float64.
        for _ in range(8):
            with np.errstate(divide="ignore", invalid="ignore"):
                short = (s > 0) & ((hi / s > v1) | (lo / s < v0))
            if not np.any(short):
                break
            s = np.where(short, np.nextafter(s, np.inf), s)
        return Alphabet(self._values, np.where(s > 0, s, 1.0))

    # -- properties --------------------------------------------------------------------------
    @property
    def values(self) -> np.ndarray:
        """The levels :math:`v_0 < \\dots < v_{m-1}` (read-only float64, before scaling)."""
        return self._values

    @property
    def scale(self) -> np.ndarray:
        """The scale: a 0-d array (every row) or one per row ``(n,)`` (read-only float64)."""
        return self._scale

    @property
    def gaps(self) -> np.ndarray:
        """:math:`v_{k+1} - v_k`, the interval lengths before scaling."""
        return np.diff(self._values)

    @property
    def max_gap(self) -> float:
        """The largest gap :math:`G = \\max_k(v_{k+1} - v_k)` (before scaling)."""
        return float(np.max(self.gaps))

    def frozen(self) -> Alphabet:
        """The alphabet itself: it has no rule to refit (the Grid's method, for the algorithms)."""
        return self

    def row_scale(self, n: int) -> np.ndarray:
        """The scale of each of ``n`` rows, shape ``(n,)``; raises when a per-row scale has another length."""
        s = self._scale
        if s.ndim == 1 and s.shape[0] != n:
            raise ValueError(f"Alphabet scale has {s.shape[0]} values (one per row) but W has {n} rows; "
                             "pass one scale per row, or fit them with Alphabet.fit(W)")
        return np.broadcast_to(s, (n,)).astype(float)

    def per_row(self, n: int) -> Alphabet:
        """The same alphabet with its scale stored per row, shape ``(n,)`` (a run's record)."""
        return Alphabet(self._values, self.row_scale(n))

    def largest_steps(self, n: int) -> np.ndarray:
        """Per row ``(n,)``: :math:`s_i G`, the largest gap of each row (``inf`` where it overflows)."""
        with np.errstate(over="ignore"):
            return self.row_scale(n) * self.max_gap

    def step_bound(self, n: int, N: int) -> np.ndarray:
        r"""Per entry ``(n, N)``: :math:`s_i G`, the row's largest gap, the step every bound reads for
        an alphabet run (|eta| <= it / 2 for nearest, <= it for stochastic rounding, inside the range)."""
        return np.broadcast_to(self.largest_steps(n)[:, None], (n, N))

    def neighbours(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r"""For values ``x`` ``(n, N)`` (float64): ``(r, g)`` with :math:`g = s_i(b - a)` the local gap
        of the interval :math:`[s_ia, s_ib]` holding :math:`x` and :math:`r = x - s_ia` (outside the
        range: the first or last interval, so ``r`` is then negative or above ``g``)."""
        x = np.asarray(x, dtype=float)
        s = self.row_scale(x.shape[0])[:, None]
        v = self._values
        y = x / s
        i = get_backend(v).interval(v, y)
        return s * (y - v[i]), s * (v[i + 1] - v[i])

    def index(self, Q) -> np.ndarray:
        """The index ``k`` of every rounded value ``Q = s_i v_k`` (nearest level, for records)."""
        Q2 = np.atleast_2d(np.asarray(Q, dtype=float))
        y = Q2 / self.row_scale(Q2.shape[0])[:, None]
        v = self._values
        i = get_backend(v).interval(v, y)
        up = np.abs(y - v[i + 1]) < np.abs(y - v[i])
        return (i + up).astype(np.int64)

    def round(self, W, rounding: str = "nearest", seed=None) -> tuple[np.ndarray, np.ndarray]:
        """Round every entry of ``W`` (numpy, ``(n, N)`` or ``(N,)``) onto the alphabet: ``(Q, clipped)``.

        ``rounding`` is ``"nearest"`` or ``"stochastic"`` (which needs ``seed``; the uniforms are the
        same as :meth:`ptqtheory.Grid.round` draws, entry ``[i, j]`` for row ``i``, column ``j``).
        """
        from ._validate import as_weights
        from .random import uniforms

        check_choice("rounding", rounding, ("nearest", "stochastic"))
        check_seed(seed)
        W2, vector = as_weights(W)
        if W2.dtype == object:
            raise TypeError("Alphabet.round takes real arrays; exact rationals are not supported by alphabets")
        n, N = W2.shape
        s = self.row_scale(n)[:, None]
        u = uniforms(seed, (n, N)) if rounding == "stochastic" else None
        Q, clipped = quantize_alphabet(W2, s, self._values, rounding, u)
        return (Q[0], clipped[0]) if vector else (Q, clipped)

    def __repr__(self) -> str:
        s = self._scale
        shown = f"{float(s):g}" if s.ndim == 0 else f"array{s.shape}"
        v = self._values
        vals = np.array2string(v, precision=4, separator=", ") if v.size <= 16 else f"array({v.size})"
        return f"Alphabet(values={vals}, scale={shown})"


def quantize_alphabet(x, scale, values, rounding: str, u=None):
    r"""Round ``x`` onto ``scale * values`` (any backend; no checks: the algorithms' hot loop).

    ``scale`` broadcasts against ``x`` (``(n,)`` for one column of every row, ``(n, 1)`` for a
    whole matrix); ``values`` is the 1-D sorted alphabet (an array of the same backend and dtype
    as ``x``); ``u`` the uniforms of stochastic rounding. Returns ``(q, clipped)``.
    """
    nx = get_backend(x)
    y = x / scale
    i = nx.interval(values, y)
    a, b = values[i], values[i + 1]
    if rounding == "nearest":
        up = (y - a) >= (b - y)  # ties go up, as the Grid's floor(x/delta + z + 1/2)
    else:
        up = u < (y - a) / (b - a)
    clipped = (y < values[0]) | (y > values[-1])
    return scale * nx.select(up, a, b), clipped

