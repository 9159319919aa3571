r"""Grids on the device: nearest and stochastic rounding, clip records, min-max group refits.

The formulas are those of :mod:`ptqtheory.grids`, written with the same operations in the same
order, so that in float64 the torch rounding of a given :math:`x` is bit-identical to numpy's:

* nearest, ties half up: :math:`k = \lfloor x/\delta + z + 1/2\rfloor`;
* stochastic: :math:`k = \lfloor s\rfloor + [U < s - \lfloor s\rfloor]`, :math:`s = x/\delta + z`;

then :math:`k` is clipped into :math:`[lo, hi]` (every clip recorded) and :math:`q = \delta(k - z)`.

The grid of a run is recorded as a :class:`ptqtheory.Grid` holding CPU numpy arrays: float64
copies of the working-precision step and zero point of every entry (refitted groups resolved).
"""

from __future__ import annotations

import numpy as np
import torch

from .._validate import check_bool, check_positive_int
from ..grids import Grid, MinMax, bits_limit_reason, check_code_range, check_steps, check_values
from ..tolerances import max_bits, max_code
from .rand import uniforms
from .stats import is_identity

__all__ = ["TorchRounder", "column_major", "fit_minmax", "minmax_grid", "round_nearest", "round_stochastic"]


def column_major(a: torch.Tensor) -> torch.Tensor:
    """A copy of the ``(n, N)`` values ``a`` stored column by column, so that column ``t`` is contiguous.

    The column loops read and write one column of every row per step; in row-major storage each
    of its ``n`` entries sits on its own cache line (on a GPU: uncoalesced accesses). Always a new
    tensor (never a view of ``a``), so the sweeps may update it in place.
    """
    out = torch.empty((a.shape[1], a.shape[0]), dtype=a.dtype, device=a.device).T
    return out.copy_(a)


def _clip(k, lo, hi):
    kc = torch.clamp(k, lo, hi)  # lo <= hi (checked by Grid), so this is min(max(k, lo), hi)
    return kc, kc != k


def round_nearest(x, delta, zero, lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Nearest grid point, ties half up, then clip; returns ``(q, clipped)`` (A1 ``Q_near``)."""
    k = torch.floor(x / delta + zero + 0.5)
    kc, clipped = _clip(k, lo, hi)
    return delta * (kc - zero), clipped


def round_stochastic(x, delta, zero, lo, hi, u) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Unbiased stochastic rounding with uniforms ``u`` in [0, 1), then clip (``Q_stoc``)."""
    s = x / delta + zero
    f = torch.floor(s)
    k = f + (u < (s - f)).to(s.dtype)
    kc, clipped = _clip(k, lo, hi)
    return delta * (kc - zero), clipped


def fit_minmax(rule: MinMax, block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step and zero point per row of ``block``: :meth:`ptqtheory.MinMax.fit` on the device."""
    maxq = 2**rule.bits - 1
    lo = torch.clamp(block.amin(dim=1), max=0.0)
    hi = torch.clamp(block.amax(dim=1), min=0.0)
    if rule.sym:
        hi = torch.maximum(-lo, hi)
        lo = -hi
    empty = (lo == 0) & (hi == 0)
    lo = torch.where(empty, torch.full_like(lo, -1.0), lo)
    hi = torch.where(empty, torch.full_like(hi, 1.0), hi)
    delta = (hi - lo) / maxq
    if rule.sym:
        zero = torch.full_like(delta, float(2 ** (rule.bits - 1)))
    else:
        zero = torch.floor(-lo / delta + 0.5)
    return delta, zero


def minmax_grid(W: torch.Tensor, bits: int = 4, sym: bool = False, group_size: int | None = None) -> Grid:
    """:meth:`ptqtheory.Grid.minmax` for weights on a device (fitted there, stored on the host).

    The returned grid carries the min-max rule, so OPTQ, LDLQ and Qronos refit each group from the
    current weights as the numpy reference does.
    """
    from .device import as_weights, dtype_name

    if not isinstance(W, torch.Tensor):
        raise TypeError(f"W must be a torch tensor; got {type(W).__name__} (for numpy arrays use "
                        "pt.Grid.minmax(W, bits))")
    W2, _ = as_weights(W)  # a floating tensor (n, N), finite and inside the range R1
    precision = dtype_name(W2.dtype)
    bits = check_positive_int("bits", bits, 1, max_bits(precision), why=bits_limit_reason(precision))
    sym = check_bool("sym", sym)
    if group_size is not None:
        group_size = check_positive_int("group_size", group_size)
    rule = MinMax(bits=bits, sym=bool(sym), group_size=group_size)
    if group_size is None:
        delta, zero = fit_minmax(rule, W2)
    else:
        n, N = W2.shape
        delta = torch.empty(n, N, dtype=W2.dtype, device=W2.device)
        zero = torch.empty_like(delta)
        for g0 in range(0, N, group_size):
            g1 = min(g0 + group_size, N)
            d, z = fit_minmax(rule, W2[:, g0:g1])
            delta[:, g0:g1] = d[:, None]
            zero[:, g0:g1] = z[:, None]
    return Grid(_host(delta), _host(zero), lo=0, hi=2**bits - 1, rule=rule)


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _shaped(name: str, a, n: int, N: int) -> np.ndarray:
    """A grid parameter as a 2-D array broadcastable to ``(n, N)``, with the numpy shape rules."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        if a.shape[0] != n:
            raise ValueError(f"grid {name} has {a.shape[0]} values (one per row) but W has {n} rows")
        a = a[:, None]
    elif a.shape not in ((n, N), (n, 1), (1, N), (1, 1)):
        raise ValueError(f"grid {name} has shape {a.shape}; W has shape ({n}, {N})")
    return a


def check_grid_shapes(grid: Grid, n: int, N: int) -> None:
    """The shape check of :meth:`Grid.expand`, without building ``(n, N)`` copies."""
    for name, a in (("delta", grid.delta), ("zero", grid.zero), ("lo", grid.lo), ("hi", grid.hi)):
        _shaped(name, a, n, N)


def check_grid(grid: Grid, W: torch.Tensor, precision: str) -> None:
    """Before any work: shapes, the steps and codes of ``grid`` in the working ``precision``
    (R1/R2 of :mod:`ptqtheory.tolerances`: a grid that float64 rounds exactly may be too fine for
    float32), and the codes the weights ``W`` themselves round to (on the device, one sync)."""
    n, N = W.shape
    check_grid_shapes(grid, n, N)
    check_steps(grid.delta, precision)
    check_code_range(grid.lo, grid.hi, grid.zero, precision, rule=grid.rule)
    d, z, lo, hi = (_param(name, a, n, N, W.device, torch.float64) for name, a in
                    (("delta", grid.delta), ("zero", grid.zero), ("lo", grid.lo), ("hi", grid.hi)))
    k = torch.maximum(torch.minimum(torch.floor(W.to(torch.float64) / d + z + 0.5), hi), lo)
    worst = float((k.abs() + z.abs() + 1.0).amax())
    if not worst <= max_code(precision):  # the host check builds the message (and raises)
        check_values("W", _host(W), *(np.broadcast_to(_host(a), (n, N)) for a in (d, z, lo, hi)),
                     precision=precision)


def check_run(trace, rounder: TorchRounder, order: torch.Tensor, algorithm: str, precision: str) -> None:
    """R2/R3 on a finished torch run: one reduction on the device (one sync); on failure the numpy
    check (:func:`ptqtheory.algorithms._engine.check_finite_run`) finds the place and raises."""
    from ..algorithms._engine import check_finite_run
    from ..tolerances import step_range

    lo, hi = step_range(precision)
    q, d, z = trace.q.to(torch.float64), rounder.delta.to(torch.float64), rounder.zero.to(torch.float64)
    size = (q / d + z).abs() + z.abs() + 1.0
    ok = (torch.isfinite(trace.x).all() & torch.isfinite(trace.eta).all() & torch.isfinite(q).all()
          & (size <= max_code(precision)).all() & (d >= lo).all() & (d <= hi).all())
    if not bool(ok):
        check_finite_run(_host(trace.x), _host(trace.q), _host(trace.eta), _host(rounder.delta),
                         _host(rounder.zero), order.tolist(), algorithm, precision)


def _param(name: str, a, n: int, N: int, device, dtype) -> torch.Tensor:
    return torch.as_tensor(_shaped(name, a, n, N), dtype=dtype, device=device)


class TorchRounder:
    """Rounds column ``t`` (processing order) of every row; owns the grid and the clip record.

    ``delta`` and ``zero`` are materialized per entry in processing order (a min-max rule with
    groups refits them); ``lo`` and ``hi`` stay broadcast views when they do not depend on the column.
    The uniforms of stochastic rounding are drawn up front, entry ``[i, t]`` for row ``i`` at step
    ``t``, so the result does not depend on the block size.
    """

    def __init__(self, grid: Grid, n: int, N: int, order: torch.Tensor, rounding: str, seed,
                 device, dtype):
        self.grid = grid
        self.vector = False
        cols = {}
        for name, a in (("delta", grid.delta), ("zero", grid.zero), ("lo", grid.lo), ("hi", grid.hi)):
            t = _param(name, a, n, N, device, dtype)
            if t.shape[1] == 1 and name in ("lo", "hi"):
                cols[name] = t.expand(n, N)
            else:
                full = t.expand(n, N)
                cols[name] = column_major(full if is_identity(order) else full.index_select(1, order))
        self.delta, self.zero, self.lo, self.hi = cols["delta"], cols["zero"], cols["lo"], cols["hi"]
        self.group_size = grid.rule.group_size if grid.refits_groups else None
        self.rule = grid.rule
        self.rounding = rounding
        self.u = column_major(uniforms(seed, (n, N), device, dtype)) if rounding == "stochastic" else None
        self.clipped = column_major(torch.zeros(n, N, dtype=torch.bool, device=device))

    def group_start(self, t: int) -> bool:
        return self.group_size is not None and t % self.group_size == 0

    def group_end(self, t: int) -> int:
        return min(t + self.group_size, self.delta.shape[1])

    def refit(self, t: int, values: torch.Tensor) -> None:
        """Refit the group starting at ``t`` from ``values`` (its current weights, all rows)."""
        d, z = fit_minmax(self.rule, values)
        t1 = t + values.shape[1]
        self.delta[:, t:t1] = d[:, None]
        self.zero[:, t:t1] = z[:, None]

    def __call__(self, t: int, x: torch.Tensor) -> torch.Tensor:
        args = (x, self.delta[:, t], self.zero[:, t], self.lo[:, t], self.hi[:, t])
        if self.rounding == "nearest":
            q, clipped = round_nearest(*args)
        else:
            q, clipped = round_stochastic(*args, self.u[:, t])
        self.clipped[:, t] = clipped
        return q

    def round_all(self, Wp: torch.Tensor) -> torch.Tensor:
        """Every column at once (RTN: no feedback, so the column loop is not needed)."""
        args = (Wp, self.delta, self.zero, self.lo, self.hi)
        if self.rounding == "nearest":
            q, clipped = round_nearest(*args)
        else:
            q, clipped = round_stochastic(*args, self.u)
        self.clipped.copy_(clipped)
        return q

    def record(self, inv: torch.Tensor) -> Grid:
        """The grid actually used, per entry, in the original column order (host arrays)."""
        natural = is_identity(inv)
        delta = _host(self.delta if natural else self.delta.index_select(1, inv))
        zero = _host(self.zero if natural else self.zero.index_select(1, inv))
        lo, hi = np.asarray(self.grid.lo, float), np.asarray(self.grid.hi, float)
        # Like the numpy reference, a single row's grid stays 2-D, shape (1, N): a 1-D array
        # would read as one value per row.
        return Grid.trusted(delta, zero, lo, hi, self.grid.rule)
