"""Seeds: every random choice in ptqtheory takes one, and the same seed gives the same bits.

A run may need several independent streams (the column order, the stochastic rounding, the random
orthogonal transforms of incoherence processing). They are spawned from one ``SeedSequence`` by
name, so adding a stream never changes the bits of another.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["SeedLike", "generator", "uniforms"]

SeedLike = int | np.random.SeedSequence | np.random.Generator | None

_STREAMS = {"order": 0, "rounding": 1, "transform": 2, "data": 3}


def generator(seed: SeedLike, stream: str, what: str = "this random choice") -> np.random.Generator:
    """A generator for the named ``stream`` derived from ``seed``; ``ValueError`` for ``None``: results
    must be reproducible, so a seed is required wherever randomness is used (say ``seed=0``)."""
    if seed is None:
        raise ValueError(f"{what} is random: pass seed=<int> (or a numpy Generator) to make it reproducible")
    if isinstance(seed, np.random.Generator):
        # Consumes one draw of the caller's generator, as any use of a generator does.
        ss = np.random.SeedSequence(int(seed.integers(0, 2**63)))
    elif isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        ss = np.random.SeedSequence(int(seed))
    else:
        raise ValueError(f"seed must be a non-negative int, a SeedSequence or a Generator; got {seed!r}")
    child = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, _STREAMS[stream]))
    return np.random.default_rng(child)


def uniforms(seed: SeedLike, shape: tuple[int, ...]) -> np.ndarray:
    """Uniforms in [0, 1) for stochastic rounding; entry ``[i, t]`` drives row ``i`` at step ``t``. Drawn
    up front, they make the result independent of the block size of the fast form."""
    return generator(seed, "rounding", "stochastic rounding").random(shape)
