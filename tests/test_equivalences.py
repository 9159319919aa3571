"""THEORY.md T4 and T5: equivalent algorithms agree, and a large enough finite grid changes nothing.

Runs are compared on their integer grid codes ``k`` (``q = delta (k - z)``): two float paths may
differ in the last bit of a refitted step, never in the grid point chosen (the instances are
continuous, so no x_t sits on a rounding boundary by accident). The other quantities agree to
1e-9 of the grid step.
"""

from unittest import mock

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from peers import gptq_reference_loop
from strategies import TIE_FREE_GRIDS, Case, cases

import ptqtheory as pt
from ptqtheory import engine as _engine
from ptqtheory.bounds import alphabet_size

DAMPED = (1e-4, 1e-2, 1.0)


def assert_same_run(a: pt.Run, b: pt.Run) -> None:
    assert np.array_equal(a.codes, b.codes)
    assert np.array_equal(a.clipped, b.clipped)
    step = np.max(np.abs(a.grid.expand(*np.atleast_2d(a.W).shape)[0]))
    np.testing.assert_allclose(a.Q, b.Q, rtol=0, atol=1e-9 * step)
    np.testing.assert_allclose(a.eta, b.eta, rtol=0, atol=1e-9 * step)
    np.testing.assert_allclose(a.grid.delta, b.grid.delta, rtol=1e-9, atol=0)


def _optq(case: Case, **kw) -> pt.Run:
    return pt.optq(case.W, case.X, lam=case.lam, grid=case.grid, order=case.order, seed=case.seed, **kw)


@given(cases(lam_factors=DAMPED, grid_kinds=("scalar", "per_row", "per_entry", "minmax_groups")),
       st.sampled_from(["nearest", "stochastic"]))
def test_A2_paper_iteration_equals_blocked_form_for_every_block_size(case, rounding):
    ref = _optq(case, method="iteration", rounding=rounding)
    N = case.W.shape[1]
    for bs in sorted({1, 7, 128, N}):
        assert_same_run(ref, _optq(case, block_size=bs, rounding=rounding))


@given(cases(lam_factors=DAMPED, grid_kinds=("minmax_groups",)),
       st.integers(1, 5), st.integers(1, 20))
def test_groups_refit_from_updated_weights_independent_of_block_size(case, group_size, block_size):
    """Groups smaller than, equal to and larger than the block (the stale-weights peer bug)."""
    g = pt.Grid.minmax(case.W, bits=3, group_size=group_size)
    ref = pt.optq(case.W, case.X, lam=case.lam, grid=g, order=case.order, seed=case.seed,
                  method="iteration")
    run = pt.optq(case.W, case.X, lam=case.lam, grid=g, order=case.order, seed=case.seed,
                  block_size=block_size)
    assert_same_run(ref, run)
    assert_same_run(ref, pt.ldlq(case.W, case.X, lam=case.lam, grid=g, order=case.order,
                                 seed=case.seed))


@given(cases(lam_factors=DAMPED, grid_kinds=("per_row", "minmax_groups")),
       st.integers(1, 5), st.integers(1, 20), st.sampled_from([1, 2, 3, 5]))
def test_sub_blocks_of_the_sweep_change_nothing(case, group_size, block_size, inner):
    """The sweep's innermost sub-blocks (``INNER`` columns, 16 in use) with groups that start, end
    and straddle sub-block and block boundaries: pending updates are applied before each refit."""
    g = pt.Grid.minmax(case.W, bits=3, group_size=group_size) if case.grid.rule else case.grid
    ref = pt.optq(case.W, case.X, lam=case.lam, grid=g, order=case.order, seed=case.seed,
                  method="iteration")
    with mock.patch.object(_engine, "INNER", inner):
        run = pt.optq(case.W, case.X, lam=case.lam, grid=g, order=case.order, seed=case.seed,
                      block_size=block_size)
    assert_same_run(ref, run)


def test_stale_group_statistics_would_be_caught():
    """The check above can fail: fitting groups from the weights *before* the block's updates (the
    peer bug) picks other grid points, so a run with that bug would not match the reference."""
    rng = np.random.default_rng(5)
    W, X = rng.standard_normal((6, 24)), rng.standard_normal((40, 24))
    X[:, 3] *= 10
    g = pt.Grid.minmax(W, bits=3, group_size=5)
    ref = pt.optq(W, X, lam=1.0, grid=g, method="iteration")
    # Stale statistics: each group fitted to the original weights, as a frozen grid.
    stale = pt.optq(W, X, lam=1.0, grid=g.frozen(), block_size=8)
    assert not np.allclose(ref.grid.delta, stale.grid.delta)


@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS))
def test_A3_ldlq_equals_optq(case):
    assert_same_run(_optq(case), pt.ldlq(case.W, case.X, lam=case.lam, grid=case.grid,
                                         order=case.order, seed=case.seed))


@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from(["blocked", "iteration"]))
def test_A4_and_A4ls_equal_optq_when_inputs_match(case, method):
    ref = _optq(case)
    for variant in ("paper", "ls"):
        run = pt.qronos(case.W, case.X, case.X, lam=case.lam, grid=case.grid, order=case.order,
                        seed=case.seed, variant=variant, method=method)
        assert_same_run(ref, run)


@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from(["blocked", "iteration"]))
def test_A4_started_from_w_ls_equals_A4ls(case, method):
    kw = dict(lam=case.lam, grid=case.grid, order=case.order, seed=case.seed, method=method)
    a = pt.qronos(case.W, case.X, case.Xt, variant="paper", start="ls", **kw)
    b = pt.qronos(case.W, case.X, case.Xt, variant="ls", **kw)
    assert_same_run(a, b)


@given(cases(lam_factors=DAMPED))
def test_A4_from_w_differs_from_A4ls_only_through_the_first_step(case):
    """From w, A4 rounds y_1 (not (w_LS)_1); with the first column's weight pinned to what A4'
    would see, i.e. starting from w_LS, they agree (previous test). Here: y_1 is what A4 recorded."""
    r = pt.qronos(case.W, case.X, case.Xt, lam=case.lam, grid=case.grid, order=case.order,
                  seed=case.seed)
    t1 = r.order[0]
    Xh = np.vstack([case.X, np.sqrt(case.lam) * np.eye(case.X.shape[1])])
    Xth = np.vstack([case.Xt, np.sqrt(case.lam) * np.eye(case.X.shape[1])])
    rest = np.delete(np.arange(case.X.shape[1]), t1)
    W = np.atleast_2d(case.W)
    y1 = ((W @ Xh.T - W[:, rest] @ Xth[:, rest].T) @ Xth[:, t1]) / (Xth[:, t1] @ Xth[:, t1])
    np.testing.assert_allclose(np.atleast_2d(r.x)[:, t1], y1, rtol=1e-9,
                               atol=1e-9 * np.max(np.abs(y1)))


@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS,
             orders=("decreasing_norm", "min_pivot", "random", "explicit")))
def test_order_is_a_relabelling(case):
    """Running with an order equals running on the permuted columns in natural order."""
    r = _optq(case)
    p = r.order
    g = case.grid
    delta, zero, lo, hi = g.expand(*case.W.shape)
    gp = pt.Grid(delta[:, p], zero[:, p], lo[:, p], hi[:, p], rule=g.rule)
    direct = pt.optq(case.W[:, p], case.X[:, p], lam=case.lam, grid=gp)
    assert np.array_equal(np.asarray(r.codes)[:, p], direct.codes)


@given(cases(lam_factors=(0.0,), families=("gaussian", "outliers"), grid_kinds=("scalar",),
             orders=("natural",)), st.sampled_from([0.01, 0.1]))
def test_matches_gptq_reference_loop_and_its_loss_convention(case, percdamp):
    """Our OPTQ with Damping.percdamp(p) is GPTQ's loop with percdamp p; GPTQ's loss is
    (1/m) sum_t eta_t^2 D_t: half of I2's right side in GPTQ's (2/m)-scaled Hessian."""
    delta = float(np.asarray(case.grid.delta))
    Qg, loss = gptq_reference_loop(np.atleast_2d(case.W), case.X, percdamp, delta)
    r = pt.optq(case.W, case.X, lam=pt.Damping.percdamp(percdamp), grid=case.grid)
    np.testing.assert_array_equal(np.atleast_2d(r.codes), np.rint(Qg / delta))
    c = pt.certify(r, case.X, full_pivot_check=False)
    np.testing.assert_allclose(loss, c.identity_rhs / case.X.shape[0], rtol=1e-8)


@given(cases(lam_factors=DAMPED, grid_kinds=("scalar", "per_row")),
       st.sampled_from(["nearest", "stochastic"]), st.sampled_from(["optq", "optq-it", "ldlq", "qronos-ls"]))
def test_finite_grid_meeting_B8_is_bit_identical_to_the_infinite_grid(case, rounding, algorithm):
    """T5: with K from B8 no clip can happen, so the run on A_K equals the run on delta*Z bit for bit."""
    W = np.atleast_2d(case.W)
    delta = np.broadcast_to(np.asarray(case.grid.delta, float).reshape(-1), (W.shape[0],)).copy()
    use_xt = algorithm == "qronos-ls"
    Xf = case.Xt if use_xt else case.X
    r_inf = _run(algorithm, case, pt.Grid(delta), rounding)
    p = r_inf.order
    L = pt.pivots(pt.hessian(Xf[:, p], case.lam)).L
    start = np.atleast_2d(r_inf.w_ls) if use_xt else W
    K = alphabet_size(start, L, delta, rounding=rounding)
    r_fin = _run(algorithm, case, pt.Grid(delta, lo=-K, hi=K), rounding)
    assert r_fin.n_clipped == 0
    assert np.array_equal(r_fin.Q, r_inf.Q)
    assert np.array_equal(r_fin.eta, r_inf.eta)


def _run(algorithm, case, grid, rounding):
    kw = dict(lam=case.lam, grid=grid, order=case.order, seed=case.seed, rounding=rounding)
    if algorithm == "optq":
        return pt.optq(case.W, case.X, block_size=5, **kw)
    if algorithm == "optq-it":
        return pt.optq(case.W, case.X, method="iteration", **kw)
    if algorithm == "ldlq":
        return pt.ldlq(case.W, case.X, **kw)
    return pt.qronos(case.W, case.X, case.Xt, variant="ls", **kw)
