r"""A3i, incoherence processing (QuIP / QuIP#).

Quantize :math:`W' = U W V^T` against :math:`H' = V H V^T` (inputs :math:`X' = X V^T`) with random
orthogonal :math:`U, V`, then undo: :math:`Q = U^T Q' V`. Because :math:`X'W'^T = XW^TU^T`, the
proxy loss is unchanged: :math:`\operatorname{tr}((Q'-W')H'(Q'-W')^T) =
\operatorname{tr}((Q-W)H(Q-W)^T)`. The processing lowers :math:`\mu(H)` (:func:`incoherence`, THEORY.md B11).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.stats

from .._validate import _as_array, as_matrix, as_weights, check_choice, is_exact
from ..alphabets import Alphabet
from ..grids import Grid
from ..random import SeedLike, generator
from ..records import Run, Transform

__all__ = ["incoherence", "incoherent", "random_orthogonal"]


def _haar(d: int, rng: np.random.Generator) -> np.ndarray:
    if d == 1:
        return np.array([[rng.choice([-1.0, 1.0])]])
    return scipy.stats.ortho_group.rvs(d, random_state=rng)


def random_orthogonal(d: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    r"""A random orthogonal ``d x d`` matrix.

    ``"kron"``: :math:`A \otimes B` with Haar-distributed factors of sizes :math:`a \cdot b = d`,
    :math:`a` the largest divisor :math:`\le\sqrt d` (a single Haar factor when ``d`` is prime).
    ``"hadamard"``: :math:`\mathrm{Had}_d\,\operatorname{diag}(\pm 1)/\sqrt d`; needs ``d`` a power of 2.
    """
    sizes = Transform.factor_sizes(d, kind)
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy Generator (np.random.default_rng(seed)); "
                        f"got {type(rng).__name__}")
    if kind == "hadamard":
        signs = rng.choice([-1.0, 1.0], size=d)
        return scipy.linalg.hadamard(d).astype(float) / np.sqrt(d) * signs[None, :]
    A, B = (_haar(k, rng) for k in sizes)
    return np.kron(A, B)


def incoherence(H) -> float:
    r""":math:`\mu(H) = \sqrt N \max_{ij} |Q_{ij}|` for the eigenvectors :math:`Q` of ``H``."""
    H = _as_array("H", H)
    if H.dtype == object or H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] == 0:
        raise ValueError(f"H must be a real square (N, N) matrix with N >= 1; got shape {H.shape}")
    _, Qe = np.linalg.eigh(H)
    return float(np.sqrt(H.shape[0]) * np.max(np.abs(Qe)))


def incoherent(fn, W, X, *, kind: str, seed: SeedLike, grid: Grid | Alphabet | None, **kwargs) -> Run:
    """Run ``fn`` (``ldlq`` or ``optq``) on the processed problem and map back; a min-max grid is
    refitted to the transformed weights (QuIP quantizes those), an explicit one used as given there."""
    check_choice("incoherence", kind, Transform.KINDS)
    Wa, vector = as_weights(W)
    if is_exact(Wa):
        raise ValueError("incoherence processing uses irrational transforms; exact mode is not supported")
    n, N = Wa.shape
    Xa = as_matrix("X", X, N)
    rng = generator(seed, "transform", f"incoherence={kind!r}")
    U = random_orthogonal(n, kind, rng)
    V = random_orthogonal(N, kind, rng)
    Wt = U @ Wa @ V.T
    Xv = Xa @ V.T
    if not isinstance(grid, Grid | Alphabet):
        raise TypeError(f"grid must be a pt.Grid or a pt.Alphabet; got {type(grid).__name__}")
    if isinstance(grid, Grid) and grid.rule is not None:
        grid = Grid.minmax(Wt, grid.rule.bits, grid.rule.sym, grid.rule.group_size)
    inner = fn(Wt, Xv, grid=grid, seed=seed, **kwargs)
    Q = U.T @ inner.Q @ V
    return inner.mapped_back(Wa, Q, vector, seed, Transform(kind=kind, U=U, V=V))
