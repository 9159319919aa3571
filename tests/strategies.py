"""Hypothesis strategies that draw *how* an instance is built; the data come from seeded numpy.

Drawing the structure (family, sizes, conditioning, damping, grid, order) and a seed, rather than
every float, keeps the values continuous, so that two float paths of the same algorithm never meet an
exact rounding tie by accident, while still covering the adversarial families of THEORY.md T1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

import ptqtheory as pt
from ptqtheory.instances import FAMILIES, Instance, make_instance

LAM_FACTORS = (0.0, 1e-8, 1e-4, 1e-2, 1.0, 100.0)
SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1


def examples(n: int) -> settings:
    """``n`` examples in the default profile, 20n in ``thorough``."""
    return settings(max_examples=n * SCALE)


@dataclass
class Case:
    inst: Instance
    lam: float
    lam_factor: float
    grid: pt.Grid
    grid_kind: str
    order: object
    seed: int

    @property
    def W(self):
        return self.inst.W

    @property
    def X(self):
        return self.inst.X

    @property
    def Xt(self):
        return self.inst.Xt

    @property
    def needs_damping(self) -> bool:
        """lam = 0 on rank-deficient data: every algorithm must refuse (singular H)."""
        return self.lam == 0.0 and not self.inst.full_rank


def make_grid(kind: str, W: np.ndarray, rng: np.random.Generator) -> pt.Grid:
    n, N = W.shape
    scale = float(np.std(W)) or 1.0
    if kind == "scalar":
        return pt.Grid(scale * 10 ** rng.uniform(-2.5, 0.5))
    if kind == "per_row":
        return pt.Grid(scale * 10 ** rng.uniform(-2.5, 0.5, size=n), zero=rng.uniform(-0.5, 0.5, n))
    if kind == "per_entry":
        return pt.Grid(scale * 10 ** rng.uniform(-2.5, 0.5, size=(n, N)))
    if kind == "minmax":
        return pt.Grid.minmax(W, bits=int(rng.integers(2, 5)), sym=bool(rng.integers(2)))
    if kind == "minmax_asym":
        return pt.Grid.minmax(W, bits=int(rng.integers(2, 5)))
    if kind == "minmax_groups":
        return pt.Grid.minmax(W, bits=int(rng.integers(2, 5)), group_size=int(rng.integers(1, 9)))
    raise ValueError(kind)


GRID_KINDS = ("scalar", "per_row", "per_entry", "minmax", "minmax_groups")
# For comparing two float paths: the symmetric min-max grid puts -max|w| exactly on a rounding
# boundary (k = 1/2 after the zero point 2^(b-1)), where two correct float paths may break the tie
# differently; every other grid has no boundary at a data-determined point.
TIE_FREE_GRIDS = ("scalar", "per_row", "per_entry", "minmax_asym", "minmax_groups")


@st.composite
def cases(draw, max_dim: int = 64, families=FAMILIES, grid_kinds=GRID_KINDS, lam_factors=LAM_FACTORS,
          orders=("natural", "decreasing_norm", "increasing_norm", "min_pivot", "random", "explicit")):
    seed = draw(st.integers(0, 2**32 - 1))
    family = draw(st.sampled_from(families))
    m = draw(st.integers(1, max_dim))
    N = draw(st.integers(1, max_dim))
    n = draw(st.integers(1, 4))
    cond = 10 ** draw(st.floats(0.0, 8.0))
    inst = make_instance(seed, family, m=m, N=N, n=n, cond=cond)
    lam_factor = draw(st.sampled_from(lam_factors))
    lam = lam_factor * float(np.mean(np.sum(inst.X**2, axis=0)))
    rng = np.random.default_rng(seed)
    grid_kind = draw(st.sampled_from(grid_kinds))
    grid = make_grid(grid_kind, inst.W, rng)
    order = draw(st.sampled_from(orders))
    if order == "explicit":
        order = rng.permutation(N)
    return Case(inst, lam, lam_factor, grid, grid_kind, order, seed)


def check_certificate(c: pt.Certificate, rtol: float = 1e-10) -> None:
    """Identity, structure relation and I1 hold at ``rtol`` (plus float64 rounding allowances)."""
    rows = c.identity_holds(rtol)
    if not np.all(rows):
        i = int(np.argmin(rows))
        detail = (c.identity, c.identity_lhs[i], c.identity_rhs[i], c.identity_gap[i], c.identity_atol[i])
        if c.structure_residual is not None:
            detail += (c.structure_residual[i], c.structure_scale[i], c.structure_atol[i])
        raise AssertionError(f"row {i}: {detail}")
    if c.pivot_check is not None:
        p = c.pivot_check
        assert p.holds(rtol), (p.gap_projection, p.gap_inverse, p.logdet_gap, p.cond, p.bounds_hold)
