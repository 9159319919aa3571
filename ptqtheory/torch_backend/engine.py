r"""The torch backend of the engine (:mod:`ptqtheory.engine`, whose sweep A2', rounder and trace run
here on tensors): input checks, statistics, order, factorization, the run record, in processing order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from .. import engine
from ..alphabets import Alphabet
from ..engine import AlphabetRounder, Rounder, Trace, optq_blocked, record
from ..grids import as_2d
from ..orders import resolve_order
from ..records import Run
from .device import as_weights, check_weight_scale, dtype_name, weights_device
from .factor import factor_damped
from .grids import check_grid, check_run, column_major, grid_record, to_host
from .rand import uniforms
from .stats import TorchAccumulator, is_identity, resolve_lam, statistics, sym_perm

__all__ = ["Setup", "Trace", "finish", "optq_blocked", "setup"]

@dataclass(kw_only=True)
class Setup(engine.Setup):
    """Validated inputs in processing order, on the device."""

    device: torch.device
    dtype: torch.dtype
    tf32: bool
    acc: TorchAccumulator | None = None
    X: torch.Tensor | None = None
    Xt: torch.Tensor | None = None
    factor_dtype: torch.dtype = torch.float64

    def rounder(self) -> Rounder:
        """The shared :class:`~ptqtheory.engine.Rounder` (layout: its docstring) on the device, in the
        working ``dtype``; an :class:`~ptqtheory.engine.AlphabetRounder` for an :class:`~ptqtheory.Alphabet`."""
        (n, N), grid, device, dtype = self.W.shape, self.grid, self.device, self.dtype
        u = column_major(uniforms(self.seed, (n, N), device, dtype)) if self.rounding == "stochastic" else None
        clipped = column_major(torch.zeros(n, N, dtype=torch.bool, device=device))
        if isinstance(grid, Alphabet):
            scale = torch.as_tensor(grid.row_scale(n)[:, None], dtype=dtype, device=device)
            values = torch.as_tensor(np.array(grid.values), dtype=dtype, device=device)
            return AlphabetRounder(scale, values, self.rounding, u, clipped)
        cols = {}
        for name, a in (("delta", grid.delta), ("zero", grid.zero), ("lo", grid.lo), ("hi", grid.hi)):
            full = torch.as_tensor(as_2d(np.asarray(a, dtype=float)), dtype=dtype, device=device).expand(n, N)
            if full.stride(1) == 0 and (name in ("lo", "hi") or not grid.refits_groups):
                cols[name] = full  # the same in every column (so in any order), and never written
            else:
                cols[name] = column_major(full if is_identity(self.order) else full.index_select(1, self.order))
        return Rounder(cols["delta"], cols["zero"], cols["lo"], cols["hi"], grid.rule, grid.refits_groups,
                       self.rounding, u, clipped)

    def L_T(self) -> torch.Tensor:
        r""":math:`L^T` in the working dtype, row-major: the sweep reads its rows."""
        return self.piv.L_T.to(self.dtype).contiguous()


def setup(W, X, lam, grid, rounding, order, seed, *, Xt=None, factor: str | None = "H",
          mismatch: bool = False, data: bool = False, factor_dtype=torch.float64,
          tf32: bool = False, algorithm: str = "optq") -> Setup:
    """Check every input, build the statistics, resolve ``lam`` and ``order``, permute, and factor
    (``factor``: ``"H"``, ``"Ht"`` for Qronos, or ``None``). ``mismatch``: the statistics of ``Xt``
    too; ``data``: the tensors themselves (GPFQ), reduced to statistics only if the order needs them."""
    device = weights_device(W, X=X, Xt=Xt)
    Wt, vector = as_weights(W)
    N = Wt.shape[1]
    engine.check_options(grid, rounding, seed, ", pt.Grid.minmax(W.cpu().numpy(), bits=4) or "
                         "ptqtheory.torch_backend.minmax_grid(W, bits=4)")
    check_weight_scale(Wt)
    check_grid(grid, Wt, dtype_name(Wt.dtype))
    if factor_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"factor_dtype must be torch.float64 or torch.float32; got {factor_dtype!r}")
    acc = Xd = Xtd = None
    named = isinstance(order, str)
    if data or X is not None:
        acc, Xd, Xtd = statistics(X, Xt, N, device, mismatch=mismatch or data, algorithm=algorithm, data=data)
    if data and named and order == "min_pivot":
        acc = TorchAccumulator.from_data(cast(torch.Tensor, Xtd))  # statistics(data=True) required Xt
    lam_abs, damping = (0.0, None) if acc is None or data else resolve_lam(lam, acc)
    # The order reads the statistics of the matrix that carries the feedback (Xt for Qronos, GPFQ).
    gram_diag = H_order = None
    if named and order in ("decreasing_norm", "increasing_norm", "min_pivot"):
        if acc is not None:
            src = acc.gram_Xt if mismatch else acc.gram_X  # GPFQ's accumulator holds Xt alone
            gram_diag = to_host(torch.diagonal(src))
            if order == "min_pivot":
                H_order = to_host(src) + float(lam_abs) * np.eye(N)
        elif Xtd is not None:
            gram_diag = to_host((Xtd.to(torch.float64) ** 2).sum(0))
    perm_np = resolve_order(order, N, gram_diag=gram_diag, H=H_order, seed=seed)
    perm = torch.as_tensor(perm_np, dtype=torch.int64, device=device)
    s = Setup(
        W=Wt, vector=vector, device=device, dtype=Wt.dtype, order=perm, lam=lam_abs,
        damping="absolute" if damping is None else damping.describe(), rounding=rounding, seed=seed,
        grid=grid, Wp=column_major(Wt if is_identity(perm) else Wt.index_select(1, perm)), tf32=tf32,
        acc=acc, X=Xd, Xt=Xtd, factor_dtype=factor_dtype,
    )
    if factor is not None:
        # acc is None only if X was not given, which nothing checks earlier: it fails here.
        acc = cast(TorchAccumulator, acc)
        G0p = sym_perm(acc.gram_Xt if factor == "Ht" else acc.gram_X, perm)
        s.piv, s.Hp, s.lam, notes = factor_damped(G0p, lam_abs, damping, factor, perm_np, factor_dtype)
        if notes:
            s.notes.extend(notes)
            s.damping += f" -> lam={s.lam:g}"
    if Wt.dtype != W.dtype:
        s.notes.append(f"W of dtype {dtype_name(W.dtype)} widened to {dtype_name(Wt.dtype)} (exact)")
    return s


def finish(s: Setup, trace: Trace, rounder: Rounder, algorithm: str, variant: str, **extra) -> Run:
    """Undo the permutation and build the record (tensors on the device, grid on the host)."""
    inv = torch.argsort(s.order)
    natural = is_identity(s.order)

    def back(a: torch.Tensor) -> torch.Tensor:
        out = a.contiguous() if natural else a.index_select(1, inv)
        return out[0] if s.vector else out

    check_run(trace, rounder, s.order, algorithm, dtype_name(s.dtype))
    notes = [*s.notes, f"factorization in {dtype_name(s.factor_dtype)}"] if s.piv is not None \
        else list(s.notes)
    return record(
        s, trace, rounder, back, algorithm, variant, grid=grid_record(rounder, s.grid, inv),
        precision=dtype_name(s.dtype), backend="torch", notes=tuple(notes), device=str(s.device), tf32=s.tf32,
        pivots=s.piv if s.factor_dtype == torch.float64 else None, stats=s.acc if s.piv is not None else None,
        method="blocked" if algorithm in ("optq", "qronos") else None, **extra,
    )
