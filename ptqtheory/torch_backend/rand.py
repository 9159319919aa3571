"""Seeded torch generators, derived from the seeds of :mod:`ptqtheory.random` by stream name.

A torch generator lives on one device and draws different bits on CPU and CUDA, so runs are
reproducible bit for bit on the same device (and agree in distribution across devices). The integer
seed of each stream comes from ``ptqtheory.random.generator(seed, stream)``, so the streams are
independent and ``seed=None`` raises exactly as in the numpy reference.
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
