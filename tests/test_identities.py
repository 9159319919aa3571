"""THEORY.md T1: the exact identities I1-I6 hold to ~1e-10 on adversarial instances.

Instances (tests/strategies.py): m and N from 1 to 64 (m < N and m > N), rank-deficient X,
kappa(X^T X) up to 1e8, outlier columns, heavy tails, lam from 0 (where H is definite) to
100 mean(diag(X^T X)), scalar / per-row / per-entry / min-max / grouped grids (clipping included: the
identities hold for any realized q), every order. lam = 0 on rank-deficient data must raise.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given
from strategies import Case, cases, check_certificate

import ptqtheory as pt


def _singular_for(case: Case, use_xt: bool) -> bool:
    if case.lam != 0.0:
        return False
    Z = case.Xt if use_xt else case.X
    return np.linalg.matrix_rank(Z) < Z.shape[1]


def _run_or_refusal(case: Case, fn, use_xt: bool = False):
    if _singular_for(case, use_xt):
        with pytest.raises(pt.SingularHessianError, match="lam"):
            fn()
        return None
    return fn()


@given(cases())
def test_I2_optq_blocked(case):
    bs = 1 + case.seed % 9
    r = _run_or_refusal(case, lambda: pt.optq(case.W, case.X, lam=case.lam, grid=case.grid,
                                              order=case.order, seed=case.seed, block_size=bs))
    if r is not None:
        c = pt.certify(r, case.X, full_pivot_check=False)
        assert c.identity == "I2"
        check_certificate(c)


@given(cases(max_dim=40))
def test_I2_optq_paper_iteration(case):
    r = _run_or_refusal(case, lambda: pt.optq(case.W, case.X, lam=case.lam, grid=case.grid,
                                              order=case.order, seed=case.seed, method="iteration"))
    if r is not None:
        check_certificate(pt.certify(r, case.X, full_pivot_check=False))


@given(cases())
def test_I2_stochastic_optq(case):
    r = _run_or_refusal(case, lambda: pt.optq(case.W, case.X, lam=case.lam, grid=case.grid,
                                              order=case.order, seed=case.seed,
                                              rounding="stochastic"))
    if r is not None:
        check_certificate(pt.certify(r, case.X, full_pivot_check=False))


@given(cases())
def test_I3_ldlq(case):
    r = _run_or_refusal(case, lambda: pt.ldlq(case.W, case.X, lam=case.lam, grid=case.grid,
                                              order=case.order, seed=case.seed))
    if r is not None:
        c = pt.certify(r, case.X, full_pivot_check=False)
        assert c.identity == "I3"
        check_certificate(c)
        # I3 is a statement about the trace: the row sums agree too (same rule as per row).
        total = max(abs(c.total_lhs), abs(c.total_rhs))
        assert abs(c.total_lhs - c.total_rhs) <= 1e-10 * total + np.sum(c.identity_atol)


@given(cases(max_dim=32, grid_kinds=("scalar", "per_row", "minmax")))
def test_I3_ldlq_with_incoherence(case):
    r = _run_or_refusal(case, lambda: pt.ldlq(case.W, case.X, lam=case.lam, grid=case.grid,
                                              order=case.order, seed=case.seed,
                                              incoherence="kron"))
    if r is not None:
        c = pt.certify(r, case.X, full_pivot_check=False)
        assert c.transformed
        check_certificate(c)


@given(cases())
def test_I4_qronos_ls(case):
    r = _run_or_refusal(case, lambda: pt.qronos(case.W, case.X, case.Xt, lam=case.lam,
                                                grid=case.grid, order=case.order, seed=case.seed,
                                                variant="ls"), use_xt=True)
    if r is not None:
        c = pt.certify(r, case.X, case.Xt, full_pivot_check=False)
        assert c.identity == "I4"
        check_certificate(c)


@given(cases())
def test_I5_qronos_paper(case):
    r = _run_or_refusal(case, lambda: pt.qronos(case.W, case.X, case.Xt, lam=case.lam,
                                                grid=case.grid, order=case.order, seed=case.seed),
                        use_xt=True)
    if r is not None:
        c = pt.certify(r, case.X, case.Xt, full_pivot_check=False)
        assert c.identity == "I5"
        check_certificate(c)


@given(cases(max_dim=40))
def test_I5_qronos_paper_iteration(case):
    r = _run_or_refusal(case, lambda: pt.qronos(case.W, case.X, case.Xt, lam=case.lam,
                                                grid=case.grid, order=case.order, seed=case.seed,
                                                method="iteration"), use_xt=True)
    if r is not None:
        check_certificate(pt.certify(r, case.X, case.Xt, full_pivot_check=False))


@given(cases())
def test_I6_gpfq(case):
    def run():
        return pt.gpfq(case.W, case.X, case.Xt, grid=case.grid, order=case.order, seed=case.seed)

    if isinstance(case.order, str) and case.order == "min_pivot":
        # GPFQ has no damping: the min-pivot order needs a definite Xt^T Xt.
        r = _run_or_refusal(Case(**{**case.__dict__, "lam": 0.0}), run, use_xt=True)
        if r is None:
            return
    else:
        r = run()
    c = pt.certify(r, case.X, case.Xt)
    assert c.identity == "I6"
    check_certificate(c)


@given(cases(max_dim=48))
def test_I1_pivots_every_form(case):
    """I1: projection form, inverse form, lam <= D_t <= ||X_t||^2 + lam, prod D_t = det H."""
    r = _run_or_refusal(case, lambda: pt.optq(case.W, case.X, lam=case.lam, grid=case.grid,
                                              order=case.order, seed=case.seed))
    if r is not None:
        p = pt.certify(r, case.X, full_pivot_check=True).pivot_check
        assert p.gap_projection is not None and p.gap_inverse is not None
        assert p.holds(1e-10), (p.gap_projection, p.gap_inverse, p.logdet_gap, p.cond)


@given(cases(max_dim=24, lam_factors=(1e-4, 1e-2, 1.0)))
def test_I1_pivots_nondecreasing_in_lam(case):
    """Each D_t is nondecreasing in lam (THEORY.md I1), computed from H by Cholesky."""
    Ds = [pt.pivots(pt.hessian(case.X, case.lam * f)).D for f in (1.0, 2.0, 10.0)]
    for a, b in itertools.pairwise(Ds):
        assert np.all(b >= a * (1 - 1e-12))
