r"""Grids on the device: the checks of a grid against tensors, and the run's grid record (host arrays).

Rounding, clipping and the min-max fit are the shared code of :mod:`ptqtheory.grids` and
:mod:`ptqtheory.engine` (written once over :mod:`ptqtheory.backend`): in float64 the torch rounding
of a given :math:`x` is bit-identical to numpy's. :meth:`ptqtheory.torch_backend.engine.Setup.rounder`
puts the parameters on the device.
"""

from __future__ import annotations

import numpy as np
import torch

from ..alphabets import Alphabet
from ..backend import get_backend
from ..engine import AlphabetRounder, Rounder, check_finite_run
from ..grids import Grid, MinMax, as_2d, check_code_range, check_normal_steps, check_steps, check_values
from ..tolerances import max_code, step_range
from .device import all_finite, as_weights, dtype_name
from .stats import is_identity

__all__ = ["check_grid", "check_run", "column_major", "grid_record", "minmax_grid", "to_host"]


to_host = get_backend(torch.empty(0)).to_host  # float64 numpy copies on the host


def column_major(a: torch.Tensor) -> torch.Tensor:
    """A new tensor (never a view, so the sweeps may update it in place) holding the ``(n, N)`` values
    ``a`` column by column: the column loops read and write one column of every row per step, and in
    row-major storage each of its ``n`` entries sits on its own cache line (on a GPU: uncoalesced accesses)."""
    out = torch.empty((a.shape[1], a.shape[0]), dtype=a.dtype, device=a.device).T
    return out.copy_(a)


def minmax_grid(W: torch.Tensor, bits: int = 4, sym: bool = False, group_size: int | None = None) -> Grid:
    """:meth:`ptqtheory.Grid.minmax` for weights on a device (fitted there, stored on the host), its
    min-max rule included: OPTQ, LDLQ and Qronos refit each group from the current weights."""
    if not isinstance(W, torch.Tensor):
        raise TypeError(f"W must be a torch tensor; got {type(W).__name__} (for numpy arrays use "
                        "pt.Grid.minmax(W, bits))")
    W2, _ = as_weights(W)  # a floating tensor (n, N), finite and inside the range R1
    rule = MinMax.of(bits, sym, group_size, dtype_name(W2.dtype))
    delta, zero = rule.fit_all(W2)
    return Grid(to_host(delta), to_host(zero), lo=0, hi=2**rule.bits - 1, rule=rule)


_CHECK_BLOCK = 64  # rows (check_grid) or columns (check_run) per block: small float64 temporaries


def check_grid(grid: Grid | Alphabet, W: torch.Tensor, precision: str) -> None:
    """Before any work: shapes, the steps and codes of ``grid`` in the working ``precision``
    (R1/R2 of :mod:`ptqtheory.tolerances`: a grid that float64 rounds exactly may be too fine for
    float32), and the codes the weights ``W`` themselves round to (on the device, one sync).
    An :class:`~ptqtheory.Alphabet` needs one scale per row, normal in ``precision``."""
    n, N = W.shape
    if isinstance(grid, Alphabet):
        check_normal_steps(grid.row_scale(n), precision, name="alphabet scale")
        check_steps(grid.largest_steps(n), precision,
                    name="alphabet scale times its largest gap, s_i G")
        return
    grid.views(n, N)  # the shape check, with broadcast views (no copies)
    check_steps(grid.delta, precision)
    check_code_range(grid.lo, grid.hi, grid.zero, precision, rule=grid.rule)
    d, z, lo, hi = (torch.as_tensor(as_2d(np.asarray(a, dtype=float)), device=W.device)
                    for a in (grid.delta, grid.zero, grid.lo, grid.hi))
    worst = torch.zeros((), dtype=torch.float64, device=W.device)
    for i in range(0, n, _CHECK_BLOCK):  # rows of W at a time
        rows = slice(i, i + _CHECK_BLOCK)
        di, zi, loi, hii = (a[rows] if a.shape[0] == n else a for a in (d, z, lo, hi))
        k = torch.maximum(torch.minimum(torch.floor(W[rows].to(torch.float64) / di + zi + 0.5), hii), loi)
        worst = torch.maximum(worst, (k.abs() + zi.abs() + 1.0).amax())
    if not float(worst) <= max_code(precision):  # the host check builds the message (and raises)
        dh, zh, loh, hih = (np.broadcast_to(to_host(a), (n, N)) for a in (d, z, lo, hi))
        check_values("W", to_host(W), dh, zh, loh, hih, precision=precision)


def check_run(trace, rounder: Rounder, order: torch.Tensor, algorithm: str, precision: str) -> None:
    """R2/R3 on a finished torch run: reductions on the device (one sync); on failure the numpy
    check (:func:`ptqtheory.engine.check_finite_run`) finds the place and raises."""
    # Every sweep records eta = x - q, so a finite eta and q imply a finite x; with codes, the code
    # check below fails on a non-finite q (its size is Inf or NaN), so eta alone is tested for finiteness.
    ok = all_finite(trace.eta)
    codes = not isinstance(rounder, AlphabetRounder)  # an alphabet has no codes: q is tested here
    if not codes:
        ok &= all_finite(trace.q)
    else:
        lo, hi = step_range(precision)
        # Column blocks (contiguous: column-major); big float64 temporaries would dominate at large n, N.
        for j in range(0, trace.q.shape[1], _CHECK_BLOCK):
            cols = slice(j, j + _CHECK_BLOCK)
            q, d, z = (a[:, cols].to(torch.float64) for a in (trace.q, rounder.delta, rounder.zero))
            size = (q / d + z).abs() + z.abs() + 1.0
            ok &= (size <= max_code(precision)).all() & (d >= lo).all() & (d <= hi).all()
    if not bool(ok):
        delta, zero = (to_host(rounder.delta), to_host(rounder.zero)) if codes else (None, None)
        check_finite_run(to_host(trace.x), to_host(trace.q), to_host(trace.eta), delta, zero, order.tolist(),
                         algorithm, precision)


def grid_record(rounder: Rounder, grid: Grid | Alphabet, inv: torch.Tensor) -> Grid | Alphabet:
    """The grid actually used, per entry, in the original column order (host arrays); an alphabet
    with its scale per row."""
    if isinstance(rounder, AlphabetRounder):
        assert isinstance(grid, Alphabet)  # Setup.rounder builds an AlphabetRounder for alphabets only
        # the scales the run used, in its working dtype (float32 runs round them), as float64
        return Alphabet(grid.values, to_host(rounder.scale[:, 0]))
    assert isinstance(grid, Grid)  # Setup.rounder builds a plain Rounder for grids only
    natural = is_identity(inv)
    # A step or zero point that is the same in every column is a broadcast view (Setup.rounder): the
    # record holds its own (n, N) array, and the column order does not matter.
    delta, zero = (to_host(a.contiguous() if a.stride(1) == 0 else a if natural else a.index_select(1, inv))
                   for a in (rounder.delta, rounder.zero))
    lo, hi = np.asarray(grid.lo, float), np.asarray(grid.hi, float)
    # As in the numpy reference, a single row's grid stays (1, N): 1-D would read as one value per row.
    return Grid.trusted(delta, zero, lo, hi, grid.rule)
