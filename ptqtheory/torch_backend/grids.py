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

from .._validate import check_positive_int
from ..grids import Grid, MinMax
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
    bits = check_positive_int("bits", bits)
    if group_size is not None:
        group_size = check_positive_int("group_size", group_size)
    W2 = W.detach()[None, :] if W.ndim == 1 else W.detach()
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
