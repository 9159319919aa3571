"""Brute-force references shared by tests: written out from the definitions, independent of the package."""

from __future__ import annotations

import numpy as np


def rtn_minmax_rows(W: np.ndarray, bits: int) -> np.ndarray:
    """Nearest point of each row's asymmetric min-max grid delta*(k - z), k = 0..2^b-1, by enumeration."""
    out = np.empty_like(W)
    maxq = 2 ** bits - 1
    for i, w in enumerate(W):
        lo, hi = min(w.min(), 0.0), max(w.max(), 0.0)
        delta = (hi - lo) / maxq
        z = np.floor(-lo / delta + 0.5)
        levels = delta * (np.arange(maxq + 1) - z)
        out[i] = levels[np.argmin(np.abs(w[:, None] - levels[None, :]), axis=1)]
    return out
