r"""Seeded synthetic layers for tests, counterexample hunts and figures (all labelled synthetic).

:func:`make_instance` builds ``(W, X, Xt)`` of a chosen adversarial family. ``X`` is built from its
singular value decomposition so that the conditioning of :math:`X^T X` is controlled exactly:
:math:`X = U \operatorname{diag}(s) V^T` with :math:`s` log-spaced from :math:`\sqrt m` down to
:math:`\sqrt{m/\kappa}`, so :math:`\kappa(X^T X) = \kappa` when ``X`` has full column rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from .random import SeedLike, generator

__all__ = ["FAMILIES", "Instance", "make_X", "make_instance"]

FAMILIES = ("gaussian", "ill_conditioned", "rank_deficient", "outliers", "heavy_tailed")


@dataclass(frozen=True, eq=False)
class Instance:
    """A synthetic layer: weights, float-model inputs, quantized-model inputs, and how it was made."""

    W: np.ndarray
    X: np.ndarray
    Xt: np.ndarray
    family: str
    params: dict = field(default_factory=dict)

    @property
    def full_rank(self) -> bool:
        """True when :math:`X^T X` is (numerically) definite, so ``lam = 0`` is allowed."""
        return int(np.linalg.matrix_rank(self.X)) == self.X.shape[1]


def _orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    if cols == 0:
        return np.zeros((rows, 0))
    if rows == 1:
        return np.ones((1, 1))[:, :cols]
    Q = scipy.stats.ortho_group.rvs(rows, random_state=rng)
    return Q[:, :cols]


def make_X(
    rng: np.random.Generator,
    m: int,
    N: int,
    cond: float = 1.0,
    rank: int | None = None,
    outliers: int = 0,
    outlier_scale: float = 100.0,
    heavy_tailed: bool = False,
    gaussian: bool = False,
) -> np.ndarray:
    r"""Inputs with :math:`\kappa(X^TX) \approx` ``cond``, rank ``rank`` and outlier columns.

    With ``heavy_tailed`` the entries are Student-t (3 degrees of freedom) instead, as LLM
    activations are, and with ``gaussian`` i.i.d. standard normal (``cond`` is then ignored);
    ``outliers`` columns are multiplied by ``outlier_scale``.
    """
    r_full = min(m, N)
    r = r_full if rank is None else min(rank, r_full)
    if heavy_tailed or gaussian:
        X = rng.standard_t(3, size=(m, N)) if heavy_tailed else rng.standard_normal((m, N))
        if r < r_full:
            U, s, Vt = np.linalg.svd(X, full_matrices=False)
            X = (U[:, :r] * s[:r]) @ Vt[:r]
    else:
        s = np.sqrt(m) * np.logspace(0.0, -0.5 * np.log10(cond), r_full)
        s[r:] = 0.0
        U = _orthonormal(rng, m, r_full)
        V = _orthonormal(rng, N, r_full)
        X = (U * s) @ V.T
    if outliers:
        cols = rng.choice(N, size=min(outliers, N), replace=False)
        X[:, cols] *= outlier_scale
    return X


def make_instance(
    seed: SeedLike,
    family: str = "gaussian",
    m: int = 32,
    N: int = 16,
    n: int = 4,
    cond: float = 1e4,
    mismatch: float = 0.05,
) -> Instance:
    r"""A seeded instance of one adversarial ``family`` (see :data:`FAMILIES`).

    ``gaussian``: i.i.d. standard normal inputs. ``ill_conditioned``: :math:`\kappa(X^TX)` =
    ``cond``. ``rank_deficient``: rank about half of :math:`\min(m, N)` (so ``lam > 0`` is needed).
    ``outliers``: a few columns 100 times larger. ``heavy_tailed``: Student-t entries with outlier
    columns. ``Xt = X + mismatch * std(X) * noise`` models the inputs of a partly quantized model.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    rng = generator(seed, "data", "a synthetic instance")
    by_family: dict[str, dict] = {
        "gaussian": {"gaussian": True}, "ill_conditioned": {"cond": cond},
        "rank_deficient": {"rank": max(1, min(m, N) // 2)}, "outliers": {"outliers": max(1, N // 8)},
        "heavy_tailed": {"outliers": max(1, N // 16), "outlier_scale": 20.0, "heavy_tailed": True},
    }
    kwargs = by_family[family]
    X = make_X(rng, m, N, **kwargs)
    W = rng.standard_normal((n, N))
    noise = rng.standard_normal((m, N))
    Xt = X + mismatch * (np.std(X) if X.size else 1.0) * noise
    params = {"seed": seed, "m": m, "N": N, "n": n, "mismatch": mismatch, **kwargs}
    return Instance(W=W, X=X, Xt=Xt, family=family, params=params)
