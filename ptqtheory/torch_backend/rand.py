"""Seeded torch generators, derived from the seeds of :mod:`ptqtheory.random` by stream name
(``ptqtheory.random.generator(seed, stream)``: independent streams; ``seed=None`` raises as in the
numpy reference). Torch draws different bits on CPU and CUDA: runs are reproducible bit for bit on
the same device and agree in distribution across devices.
"""

from __future__ import annotations

import torch

from ..random import SeedLike, generator

__all__ = ["torch_generator", "uniforms"]


def torch_generator(seed: SeedLike, stream: str, what: str, device) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` for the named stream of ``seed``."""
    integer = int(generator(seed, stream, what).integers(0, 2**63 - 1))
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(integer)
    return g


def uniforms(seed: SeedLike, shape: tuple[int, ...], device, dtype) -> torch.Tensor:
    """Uniforms in [0, 1) for stochastic rounding, all drawn up front; ``[i, t]`` drives row i, step t."""
    g = torch_generator(seed, "rounding", "stochastic rounding", device)
    return torch.rand(shape, generator=g, device=device, dtype=dtype)
