r"""A3i, incoherence processing (QuIP / QuIP#) on the device: :mod:`ptqtheory.algorithms.incoherence`
with :math:`H' = VHV^T` the statistics of :math:`XV^T`, and :math:`U, V` built by torch on the device
from a seeded ``torch.Generator``.
"""

from __future__ import annotations

import math

import scipy.linalg
import torch

from ..alphabets import Alphabet
from ..grids import Grid
from ..random import SeedLike
from ..records import Run, Transform
from .device import as_weights, tf32_guard, weights_device
from .grids import minmax_grid
from .rand import torch_generator
from .stats import statistics

__all__ = ["incoherent", "random_orthogonal"]

F64 = torch.float64


def _haar(d: int, gen: torch.Generator, device) -> torch.Tensor:
    if d == 1:
        return (torch.randint(0, 2, (1, 1), generator=gen, device=device) * 2 - 1).to(F64)
    # QR of a Gaussian matrix with the signs of diag(R) fixed is Haar distributed (Mezzadri 2007).
    Z = torch.randn(d, d, generator=gen, device=device, dtype=F64)
    Qm, R = torch.linalg.qr(Z)
    return Qm * torch.sign(torch.diagonal(R))[None, :]


def random_orthogonal(d: int, kind: str, gen: torch.Generator, device) -> torch.Tensor:
    r"""A random orthogonal ``d x d`` matrix in float64 on ``device``, of the ``kind`` of
    :func:`ptqtheory.algorithms.incoherence.random_orthogonal`."""
    sizes = Transform.factor_sizes(d, kind)
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"gen must be a torch.Generator; got {type(gen).__name__}")
    if kind == "hadamard":
        signs = (torch.randint(0, 2, (d,), generator=gen, device=device) * 2 - 1).to(F64)
        Had = torch.as_tensor(scipy.linalg.hadamard(d), dtype=F64, device=device)  # Sylvester's order
        return Had / math.sqrt(d) * signs[None, :]
    A, B = (_haar(k, gen, device) for k in sizes)
    return torch.kron(A, B)


def incoherent(fn, W, X, *, kind: str, seed: SeedLike, grid: Grid | Alphabet | None, allow_tf32: bool,
               **options) -> Run:
    """Run ``fn`` (the torch ``ldlq``) on the incoherence-processed problem and map back, grids as in
    :func:`ptqtheory.algorithms.incoherence.incoherent`; the transforms are applied in float64 (to
    ``W`` and to the float64 statistics), the processed weights cast to the working dtype."""
    device = weights_device(W, X=X)
    with tf32_guard(device, allow_tf32):
        Wa, vector = as_weights(W)
        n, N = Wa.shape
        if kind not in Transform.KINDS:
            raise ValueError(f"incoherence must be one of {Transform.KINDS} or None; got {kind!r}")
        if not isinstance(grid, Grid | Alphabet):
            raise TypeError(f"grid must be a pt.Grid or a pt.Alphabet; got {type(grid).__name__}")
        acc, _, _ = statistics(X, None, N, device, mismatch=False, algorithm="ldlq")
        gen = torch_generator(seed, "transform", f"incoherence={kind!r}", device)
        U = random_orthogonal(n, kind, gen, device)
        V = random_orthogonal(N, kind, gen, device)
        Wt = (U @ Wa.to(F64) @ V.T).to(Wa.dtype)
        if isinstance(grid, Grid) and grid.rule is not None:
            grid = minmax_grid(Wt, grid.rule.bits, grid.rule.sym, grid.rule.group_size)
        inner = fn(Wt, acc.transformed(V), grid=grid, seed=seed, allow_tf32=allow_tf32, **options)
        Q = (U.T @ inner.Q.to(F64) @ V).to(Wa.dtype)
    return inner.mapped_back(Wa, Q, vector, seed, Transform(kind=kind, U=U, V=V))
