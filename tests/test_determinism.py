"""Seeds: the same seed gives bit-identical results; different seeds give different ones; stochastic
OPTQ draws one uniform per (row, step), so its codes do not depend on the block size."""

from __future__ import annotations

import numpy as np
import pytest

import ptqtheory as pt


def _problem(seed=0, n=6, m=40, N=16):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, N))
    X = rng.standard_normal((m, N)) @ (np.eye(N) + 0.3 * rng.standard_normal((N, N)))
    Xt = X + 0.05 * rng.standard_normal((m, N))
    return W, X, Xt


GRID = pt.Grid(0.05)  # fine grid: many entries are far from a grid point, so seeds matter


def _runs(seed):
    """One run of every seeded configuration, keyed by name."""
    W, X, Xt = _problem()
    W8, X8, _ = _problem(1, n=4, m=24, N=8)  # power-of-2 sizes for the Hadamard transform
    return {
        "optq_stochastic": pt.optq(W, X, lam=0.1, grid=GRID, rounding="stochastic", seed=seed),
        "optq_stochastic_iteration": pt.optq(
            W, X, lam=0.1, grid=GRID, rounding="stochastic", seed=seed, method="iteration"
        ),
        "optq_random_order": pt.optq(W, X, lam=0.1, grid=GRID, order="random", seed=seed),
        "ldlq_kron": pt.ldlq(W, X, lam=0.1, grid=GRID, incoherence="kron", seed=seed),
        "ldlq_hadamard": pt.ldlq(W8, X8, lam=0.1, grid=GRID, incoherence="hadamard", seed=seed),
        "ldlq_stochastic": pt.ldlq(W, X, lam=0.1, grid=GRID, rounding="stochastic", seed=seed),
        "rtn_stochastic": pt.rtn(W, grid=GRID, rounding="stochastic", seed=seed),
        "qronos_stochastic": pt.qronos(W, X, Xt, lam=0.1, grid=GRID, rounding="stochastic", seed=seed),
        "qronos_ls_stochastic": pt.qronos(
            W, X, Xt, lam=0.1, grid=GRID, rounding="stochastic", seed=seed, variant="ls"
        ),
        "gpfq_stochastic": pt.gpfq(W, X, Xt, grid=GRID, rounding="stochastic", seed=seed),
        "gpfq_random_order": pt.gpfq(W, X, Xt, grid=GRID, order="random", seed=seed),
    }


@pytest.fixture(scope="module")
def runs_a():
    return _runs(2024)


@pytest.fixture(scope="module")
def runs_b():
    return _runs(2024)


@pytest.fixture(scope="module")
def runs_c():
    return _runs(2025)


def test_same_seed_bit_identical(runs_a, runs_b):
    assert runs_a.keys() == runs_b.keys()
    for name in runs_a:
        a, b = runs_a[name], runs_b[name]
        assert np.array_equal(a.Q, b.Q), name
        assert np.array_equal(a.eta, b.eta), name
        assert np.array_equal(a.x, b.x), name
        assert np.array_equal(a.order, b.order), name
        if a.transform is not None:
            assert np.array_equal(a.transform.U, b.transform.U), name
            assert np.array_equal(a.transform.V, b.transform.V), name


def test_different_seeds_differ(runs_a, runs_c):
    for name in runs_a:
        a, c = runs_a[name], runs_c[name]
        assert not np.array_equal(a.Q, c.Q), name
    # the random orders themselves differ (two seeds agree on a 16-permutation w.p. 1/16!)
    assert not np.array_equal(runs_a["optq_random_order"].order, runs_c["optq_random_order"].order)


def test_seed_as_generator_is_reproducible():
    W, X, _ = _problem()
    a = pt.optq(W, X, lam=0.1, grid=GRID, rounding="stochastic", seed=np.random.default_rng(9))
    b = pt.optq(W, X, lam=0.1, grid=GRID, rounding="stochastic", seed=np.random.default_rng(9))
    assert np.array_equal(a.Q, b.Q)


def test_stochastic_rtn_matches_grid_round():
    # the same stream drives Grid.round and rtn
    W, _, _ = _problem()
    q, _ = GRID.round(W, "stochastic", seed=77)
    assert np.array_equal(pt.rtn(W, grid=GRID, rounding="stochastic", seed=77).Q, q)


def test_stochastic_optq_codes_do_not_depend_on_block_size():
    W, X, _ = _problem(3, n=5, m=50, N=23)
    runs = [
        pt.optq(W, X, lam=0.2, grid=GRID, rounding="stochastic", seed=11, block_size=bs)
        for bs in (1, 5, 128)
    ]
    it = pt.optq(W, X, lam=0.2, grid=GRID, rounding="stochastic", seed=11, method="iteration")
    for r in [*runs[1:], it]:
        assert np.array_equal(r.codes, runs[0].codes)
        np.testing.assert_allclose(r.x, runs[0].x, rtol=0, atol=1e-9)
    # and the run is genuinely stochastic: another seed changes codes
    other = pt.optq(W, X, lam=0.2, grid=GRID, rounding="stochastic", seed=12, block_size=5)
    assert not np.array_equal(other.codes, runs[0].codes)


def test_stochastic_optq_with_groups_codes_do_not_depend_on_block_size():
    W, X, _ = _problem(4, n=4, m=60, N=20)
    grid = pt.Grid.minmax(W, bits=3, group_size=6)
    runs = [
        pt.optq(W, X, lam=0.2, grid=grid, rounding="stochastic", seed=5, block_size=bs)
        for bs in (1, 5, 128)
    ]
    for r in runs[1:]:
        assert np.array_equal(r.codes, runs[0].codes)


def test_stochastic_qronos_codes_do_not_depend_on_block_size():
    W, X, Xt = _problem(6, n=4, m=40, N=13)
    runs = [
        pt.qronos(W, X, Xt, lam=0.2, grid=GRID, rounding="stochastic", seed=8, block_size=bs)
        for bs in (1, 4, 128)
    ]
    for r in runs[1:]:
        assert np.array_equal(r.codes, runs[0].codes)
