r"""What the torch algorithms share: input checks, statistics, order, factorization, the blocked
OPTQ sweep (A2') and the run record.

As in :mod:`ptqtheory.algorithms._engine`, everything runs in *processing order*: :func:`setup`
permutes ``W`` and the statistics by the order, :func:`finish` undoes it. All rows are processed
together; the column loop applies each step to the current block at once and the columns right of
the block receive the block's updates in one matrix product (lazy updates of width ``block_size``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .._validate import check_choice, check_positive_int, check_seed
from ..algorithms._engine import Trace as _Trace
from ..algorithms._engine import pending_current
from ..grids import Grid
from ..orders import resolve_order
from ..records import Run
from .device import as_data, as_weights, check_weight_scale, dtype_name, weights_device
from .factor import TorchPivots, factor_damped
from .grids import TorchRounder, check_grid, check_run, column_major
from .stats import TorchAccumulator, is_identity, resolve_lam, statistics, sym_perm

ROUNDINGS = ("nearest", "stochastic")
NORM_ORDERS = ("decreasing_norm", "increasing_norm")


class Trace(_Trace):
    """The numpy engine's step record, holding tensors on the device."""

    @classmethod
    def empty(cls, like: torch.Tensor) -> Trace:
        return super().empty(like, torch.zeros_like)


@dataclass
class Setup:
    """Validated inputs in processing order, on the device."""

    W: torch.Tensor
    vector: bool
    device: torch.device
    dtype: torch.dtype
    order: torch.Tensor
    lam: float
    damping: str
    rounding: str
    seed: object
    grid: Grid
    Wp: torch.Tensor
    tf32: bool
    acc: TorchAccumulator | None = None
    X: torch.Tensor | None = None
    Xt: torch.Tensor | None = None
    Hp: torch.Tensor | None = None
    piv: TorchPivots | None = None
    factor_dtype: torch.dtype = torch.float64
    notes: list[str] = field(default_factory=list)

    def rounder(self) -> TorchRounder:
        n, N = self.W.shape
        return TorchRounder(self.grid, n, N, self.order, self.rounding, self.seed, self.device,
                            self.dtype)

    def Lt(self) -> torch.Tensor:
        r""":math:`L^T` in the working dtype (the factorization itself stays in ``factor_dtype``),
        row-major: the sweep reads its rows."""
        return self.piv.Lt.to(self.dtype).contiguous()


def setup(W, X, lam, grid, rounding, order, seed, *, Xt=None, factor: str | None = "H",
          mismatch: bool = False, data: bool = False, factor_dtype=torch.float64,
          tf32: bool = False, algorithm: str = "optq") -> Setup:
    """Check every input, build the statistics, resolve ``lam`` and ``order``, permute, factor.

    ``factor`` is ``"H"``, ``"Ht"`` (Qronos) or ``None``; ``mismatch`` asks for the statistics of
    ``Xt`` too; ``data`` asks for the tensors themselves (GPFQ), which are then not reduced to
    statistics unless the order needs them.
    """
    device = weights_device(W, X=X, Xt=Xt)
    Wt, vector = as_weights(W)
    N = Wt.shape[1]
    if not isinstance(grid, Grid):
        raise TypeError(
            "grid must be a pt.Grid, e.g. pt.Grid(delta) for the unbounded grid delta*Z, "
            "pt.Grid.minmax(W.cpu().numpy(), bits=4) or ptqtheory.torch_backend.minmax_grid(W, bits=4); "
            f"got {type(grid).__name__}"
        )
    check_choice("rounding", rounding, ROUNDINGS)
    check_seed(seed)
    check_weight_scale(Wt)
    check_grid(grid, Wt, dtype_name(Wt.dtype))
    if factor_dtype not in (torch.float32, torch.float64):
        raise ValueError(f"factor_dtype must be torch.float64 or torch.float32; got {factor_dtype!r}")
    acc = Xd = Xtd = None
    named = isinstance(order, str)
    if data:
        if isinstance(X, TorchAccumulator):
            raise ValueError(
                f"{algorithm.upper()} needs the calibration data X and Xt themselves, not statistics: "
                "its state u_t = X_{<=t} w_{<=t} - Xt_{<=t} q_{<=t} lives in R^m. Pass the tensors "
                "X (m, N) and Xt (m, N); a TorchAccumulator serves OPTQ, LDLQ and Qronos only"
            )
        Xd = as_data("X", X, N, device)
        if Xt is None:
            raise ValueError("Xt is required: the inputs from the partly quantized model (use Xt=X if none)")
        Xtd = as_data("Xt", Xt, N, device, m=Xd.shape[0])
        if named and order == "min_pivot":
            acc = TorchAccumulator.from_data(Xtd)
    elif X is not None:
        acc, Xd, Xtd = statistics(X, Xt, N, device, mismatch=mismatch, algorithm=algorithm)
    lam_abs, damping = (0.0, None) if acc is None or data else resolve_lam(lam, acc)
    # The order reads the statistics of the matrix that carries the feedback (Xt for Qronos, GPFQ).
    gram_diag = H_order = None
    if named and order in (*NORM_ORDERS, "min_pivot"):
        if acc is not None:
            src = acc.XttXt if mismatch else acc.XtX  # GPFQ's accumulator holds Xt alone
            gram_diag = _host(torch.diagonal(src))
            if order == "min_pivot":
                H_order = _host(src) + float(lam_abs) * np.eye(N)
        elif Xtd is not None:
            gram_diag = _host((Xtd.to(torch.float64) ** 2).sum(0))
    perm_np = resolve_order(order, N, gram_diag=gram_diag, H=H_order, seed=seed)
    perm = torch.as_tensor(perm_np, dtype=torch.int64, device=device)
    s = Setup(
        W=Wt, vector=vector, device=device, dtype=Wt.dtype, order=perm, lam=lam_abs,
        damping="absolute" if damping is None else damping.describe(), rounding=rounding, seed=seed,
        grid=grid, Wp=column_major(Wt if is_identity(perm) else Wt.index_select(1, perm)), tf32=tf32,
        acc=acc, X=Xd, Xt=Xtd,
        factor_dtype=factor_dtype,
    )
    if factor is not None:
        G0p = sym_perm(acc.XttXt if factor == "Ht" else acc.XtX, perm)
        s.piv, s.Hp, s.lam, notes = factor_damped(G0p, lam_abs, damping, factor, perm_np, factor_dtype)
        if notes:
            s.notes.extend(notes)
            s.damping += f" -> lam={s.lam:g}"
    if Wt.dtype != W.dtype:
        s.notes.append(f"W of dtype {dtype_name(W.dtype)} widened to {dtype_name(Wt.dtype)} (exact)")
    return s


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def check_blocked(method: str, block_size) -> int:
    if not isinstance(method, str) or method != "blocked":
        raise ValueError(
            f"the torch backend runs the blocked fast form (A2', method='blocked'); got method={method!r}. "
            "The paper iteration (A2) is the numpy reference: pass numpy arrays for it"
        )
    return check_positive_int("block_size", block_size)


def finish(s: Setup, trace: Trace, rounder: TorchRounder, algorithm: str, variant: str, **extra) -> Run:
    """Undo the permutation and build the record (tensors on the device, grid on the host)."""
    inv = torch.argsort(s.order)
    natural = is_identity(s.order)

    def back(a: torch.Tensor) -> torch.Tensor:
        out = a.contiguous() if natural else a.index_select(1, inv)
        return out[0] if s.vector else out

    for key in ("w_ls",):
        if extra.get(key) is not None:
            extra[key] = back(extra[key])
    check_run(trace, rounder, s.order, algorithm, dtype_name(s.dtype))
    notes = [*s.notes, f"factorization in {dtype_name(s.factor_dtype)}"] if s.piv is not None \
        else list(s.notes)
    return Run(
        algorithm=algorithm, variant=variant, W=s.W[0] if s.vector else s.W,
        Q=back(trace.q), eta=back(trace.eta), x=back(trace.x), clipped=back(rounder.clipped),
        order=s.order, grid=rounder.record(inv), lam=s.lam, rounding=s.rounding,
        seed=s.seed, damping=s.damping, precision=dtype_name(s.dtype), backend="torch",
        notes=tuple(notes), device=str(s.device), tf32=s.tf32,
        pivots=s.piv if s.factor_dtype == torch.float64 else None,
        stats=s.acc if s.piv is not None else None,
        method="blocked" if algorithm in ("optq", "qronos") else None, **extra,
    )


def optq_blocked(Wp: torch.Tensor, Lt: torch.Tensor, rounder: TorchRounder, trace: Trace,
                 block_size: int, t0: int = 0) -> None:
    r"""A2', GPTQ's fast form with lazy block updates of width ``block_size``, from step ``t0``.

    .. math:: x_t = w_t,\quad q_t = Q(x_t),\quad \eta_t = x_t - q_t,\quad
              w_{>t} \mathrel{-}= \eta_t\, L_{>t,t}

    for all rows at once (``Wp`` is the current iterate, updated in place). The updates are applied
    lazily on two levels: inside a sub-block of :data:`INNER` columns each step updates the
    sub-block's remaining columns (rank one); the rest of the block receives the sub-block's updates
    in one product at its end, and the columns right of the block receive
    :math:`E_{block} L^T_{block, >block}` at the block's end. Every column receives the same updates
    as in the unblocked sweep, only summed in another order, so the result is A2' for every
    ``block_size`` up to float rounding. A group that starts at step ``t`` is fitted from the
    *current* weights: pending updates are applied to its columns first (:func:`_current`), exactly
    as in the numpy ``optq_blocked``.

    Column access is the hot path: pass ``Wp`` and the trace in column-major storage
    (:func:`~ptqtheory.torch_backend.grids.column_major`) and ``Lt`` row-major.
    """
    n, N = Wp.shape
    for i1 in range(t0, N, block_size):
        i2 = min(i1 + block_size, N)
        W1 = Wp[:, i1:i2].clone()  # clone keeps the column-major strides
        E1 = column_major(torch.zeros(n, i2 - i1, dtype=Wp.dtype, device=Wp.device))
        for j1 in range(i1, i2, INNER):
            j2 = min(j1 + INNER, i2)
            for t in range(j1, j2):
                i = t - i1
                if rounder.group_start(t):
                    rounder.refit(t, _current(Wp, W1, E1, Lt, i1, i2, j1, j2, t, rounder.group_end(t)))
                x = W1[:, i]  # column i of W1 is final: later updates touch columns > i only
                eta = trace.record(t, x, rounder(t, x))
                E1[:, i] = eta
                if t + 1 < j2:
                    W1[:, i + 1 : j2 - i1].addr_(eta, Lt[t, t + 1 : j2], alpha=-1)
            if j2 < i2:
                W1[:, j2 - i1 :].addmm_(E1[:, j1 - i1 : j2 - i1], Lt[j1:j2, j2:i2], alpha=-1)
        if i2 < N:
            Wp[:, i2:].addmm_(E1, Lt[i1:i2, i2:], alpha=-1)


INNER = 16
"""Width of the innermost sub-block of :func:`optq_blocked` (rank-one updates touch at most this
many columns; wider lazy updates are matrix products)."""


def _current(Wp, W1, E1, Lt, i1: int, i2: int, j1: int, j2: int, t: int, g1: int) -> torch.Tensor:
    """:func:`ptqtheory.algorithms._engine.pending_current` on tensors."""
    return pending_current(Wp, W1, E1, Lt, i1, i2, j1, j2, t, g1, dot=torch.matmul,
                           cat=lambda parts: torch.cat(parts, dim=1))
