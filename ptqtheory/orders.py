r"""Column orders :math:`\pi` (THEORY.md "Order", B2).

``order[t]`` is the column rounded at step ``t``. The algorithms permute ``W``, ``X`` (and ``H``)
by ``order`` before running and undo it afterwards.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_permutation
from .factor import SingularHessianError
from .random import SeedLike, generator
from .tolerances import singular_threshold

__all__ = ["ORDERS", "min_pivot_order", "resolve_order"]

ORDERS = ("natural", "decreasing_norm", "increasing_norm", "min_pivot", "random")


def min_pivot_order(H: np.ndarray) -> np.ndarray:
    r"""Greedy order that fills positions from the last one backwards with the smallest pivot.

    Position :math:`N` gets :math:`\arg\min_j H_{jj}` (its pivot is :math:`D_N = H_{jj}`); each
    earlier position gets the remaining column whose Schur complement given the columns already
    placed after it, :math:`D_t = H_{jj} - H_{jS} H_{SS}^{-1} H_{Sj}`, is smallest (THEORY.md B2).
    This is a Cholesky factorization with smallest-pivot selection, :math:`O(N^3)`.
    """
    H = np.asarray(H)
    if H.dtype.kind not in "fiu" or H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"H must be a real square (N, N) matrix; got {H.dtype} array of shape {H.shape}")
    if not np.all(np.isfinite(H)):
        raise ValueError("H contains NaN or Inf; clean the data before ordering")
    N = H.shape[0]
    d = np.diag(H).astype(float).copy()
    Lcols = np.zeros((N, N))
    remaining = np.ones(N, dtype=bool)
    picked = []
    scale = float(np.max(np.abs(d))) if N else 0.0
    for k in range(N):
        cand = np.where(remaining, d, np.inf)
        j = int(np.argmin(cand))
        if not d[j] > singular_threshold(N, scale):
            raise SingularHessianError(
                "order='min_pivot' needs a positive definite H = X^T X + lam*I, but a pivot "
                f"reached {d[j]:.3g}; set lam > 0 (e.g. lam=pt.Damping.percdamp(0.01))"
            )
        col = (H[:, j] - Lcols[:, :k] @ Lcols[j, :k]) / np.sqrt(d[j])
        col[~remaining] = 0.0
        col[j] = np.sqrt(d[j])
        Lcols[:, k] = col
        remaining[j] = False
        d = d - col**2
        picked.append(j)
    return np.array(picked[::-1], dtype=np.int64)


def resolve_order(order, N: int, gram_diag=None, H=None, seed: SeedLike = None) -> np.ndarray:
    """Turn an order name or an explicit permutation into an index array of length ``N``.

    Parameters
    ----------
    order : str or array_like of int
        ``"natural"``, ``"decreasing_norm"`` (act-order: largest :math:`\\|X_j\\|` first),
        ``"increasing_norm"``, ``"min_pivot"``, ``"random"`` (needs ``seed``) or a permutation.
    gram_diag : ndarray, optional
        :math:`\\|X_j\\|^2`, needed by the norm orders (ties keep the natural order).
    H : ndarray, optional
        :math:`X^T X + \\lambda I`, needed by ``"min_pivot"``.
    """
    if isinstance(order, str):
        if order == "natural":
            return np.arange(N, dtype=np.int64)
        if order in ("decreasing_norm", "increasing_norm"):
            g = np.asarray(gram_diag, dtype=float)
            key = -g if order == "decreasing_norm" else g
            return np.argsort(key, kind="stable").astype(np.int64)
        if order == "min_pivot":
            return min_pivot_order(np.asarray(H, dtype=float))
        if order == "random":
            return generator(seed, "order", "order='random'").permutation(N).astype(np.int64)
        raise ValueError(f"order must be one of {ORDERS} or a permutation array; got {order!r}")
    return check_permutation(order, N)


def columns_in(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """The columns of ``a`` taken in ``order``: ``a`` itself, not a copy, when ``order`` is the
    natural one (so read-only callers skip an ``O(nN)`` copy; writers must copy first)."""
    return a if np.array_equal(order, np.arange(a.shape[1])) else a[:, order]
