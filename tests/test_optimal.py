"""How far from optimal: ``pt.optimal`` (exact lattice optimum), the lower bound L1 and the ratio.

Every expected value here is computed independently of the code under test: brute force over the
grid points in a box that provably holds the optimum, an independent Babai nearest-plane
implementation on the basis ``Xh diag(delta)``, and Monte Carlo means with CLT tolerances.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import ptqtheory as pt
from ptqtheory.lower_bounds import ball_second_moment, l1_bound, mean_error, optimality_ratio
from ptqtheory.tightness import midpoint_weights


def _augmented(X, lam):
    N = X.shape[1]
    return np.vstack([X, math.sqrt(lam) * np.eye(N)])


def _cost(X, lam, w, q):
    e = w - q
    return float(np.sum((X @ e) ** 2) + lam * e @ e)


def _brute_force(X, lam, w, delta, zero, lo, hi, radius_sq):
    """The minimum over every grid point q with ||Xh (w - q)||^2 <= radius_sq.

    The box: ||Xh e||^2 <= r^2 implies |e_t| <= r sqrt((H^-1)_tt) (Cauchy-Schwarz in the H-norm), so
    every better point has its code k_t in an explicit interval; the enumeration is exhaustive there.
    """
    Hinv = np.linalg.inv(_augmented(X, lam).T @ _augmented(X, lam))
    reach = math.sqrt(radius_sq) * np.sqrt(np.diag(Hinv)) * (1 + 1e-9)
    ranges = []
    for t in range(w.shape[0]):
        k_lo = max(math.ceil((w[t] - reach[t]) / delta[t] + zero[t]), lo[t])
        k_hi = min(math.floor((w[t] + reach[t]) / delta[t] + zero[t]), hi[t])
        ranges.append(range(int(k_lo), int(k_hi) + 1))
    codes = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, w.shape[0]).astype(float)
    E = w[None, :] - delta * (codes - zero)
    return float(np.min(np.sum((E @ X.T) ** 2, axis=1) + lam * np.sum(E * E, axis=1)))


def _grid(kind: str, rng, n: int, N: int):
    if kind == "unbounded":
        return pt.Grid(0.35)
    if kind == "finite":
        return pt.Grid(0.5, lo=-2, hi=2)
    if kind == "per_row":
        return pt.Grid(rng.uniform(0.2, 0.6, n), zero=rng.integers(0, 3, n).astype(float), lo=0, hi=4)
    return pt.Grid(rng.uniform(0.2, 0.6, (n, N)), lo=-3, hi=3)  # per entry


@pytest.mark.parametrize("kind", ["unbounded", "finite", "per_row", "per_entry"])
@pytest.mark.parametrize("seed", range(6))
def test_optimal_equals_brute_force(kind, seed):
    rng = np.random.default_rng(seed)
    N = 2 + seed % 5  # 2..6
    m = [3, N, 2 * N][seed % 3]
    n = 3
    X = rng.standard_normal((m, N)) * rng.uniform(0.2, 3.0, N)
    if seed % 2:
        X[:, -1] = X[:, 0] + 0.05 * rng.standard_normal(m)  # correlated columns: OPTQ suboptimal more often
    W = rng.standard_normal((n, N))
    lam = [0.3, 0.1, 1.0][seed % 3]  # m < N at seeds 0 and 3: damping keeps the brute-force box small
    grid = _grid(kind, rng, n, N)
    opt = pt.optimal(W, X, lam=lam, grid=grid)
    assert np.all(opt.proven)
    delta, zero, lo, hi = (np.asarray(a, float) for a in grid.expand(n, N))
    for i in range(n):
        expected = _brute_force(X, lam, W[i], delta[i], zero[i], lo[i], hi[i], opt.start_cost[i])
        assert opt.cost[i] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        # the answer is a grid point of this row
        k = opt.Q[i] / delta[i] + zero[i]
        assert np.allclose(k, np.round(k), atol=1e-9)
        assert np.all(np.round(k) >= lo[i]) and np.all(np.round(k) <= hi[i])
    assert np.all(opt.cost <= opt.start_cost * (1 + 1e-12))
    assert np.all(opt.ratio >= 1 - 1e-12)


def test_optimal_beats_optq_somewhere():
    """Negative control for the comparison above: on correlated data OPTQ is not always optimal, so a
    search that returned OPTQ's answer unchanged would fail the brute-force test."""
    rng = np.random.default_rng(7)
    N, m = 6, 12
    X = rng.standard_normal((m, N))
    X[:, 1:] += 0.9 * X[:, :1]
    W = rng.standard_normal((40, N))
    opt = pt.optimal(W, X, lam=0.01, grid=pt.Grid(0.5))
    assert np.any(opt.cost < opt.start_cost * (1 - 1e-6))


def _babai(X, lam, w, delta, zero):
    """Babai's nearest plane on the basis B = Xh diag(delta) with the target Xh (w + delta z), deciding
    the first column first: QR of the reversed basis, back substitution from its last column."""
    Xh = _augmented(X, lam)
    B = (Xh * delta[None, :])[:, ::-1]
    Q, R = np.linalg.qr(B)
    y = Q.T @ (Xh @ (w + delta * zero))
    N = w.shape[0]
    k = np.zeros(N)
    for j in range(N - 1, -1, -1):
        c = (y[j] - R[j, j + 1:] @ k[j + 1:]) / R[j, j]
        k[j] = math.floor(c + 0.5)
    return delta * (k[::-1] - zero)


@pytest.mark.parametrize("seed", range(8))
def test_optq_is_babai_nearest_plane(seed):
    rng = np.random.default_rng(100 + seed)
    N, m, n = 12, 20, 4
    X = rng.standard_normal((m, N)) * rng.uniform(0.3, 2.0, N)
    W = rng.standard_normal((n, N))
    delta = rng.uniform(0.05, 0.3, n)
    zero = rng.uniform(-1, 1, n)
    run = pt.optq(W, X, lam=0.05, grid=pt.Grid(delta, zero=zero))
    for i in range(n):
        q = _babai(X, 0.05, W[i], np.full(N, delta[i]), np.full(N, zero[i]))
        np.testing.assert_allclose(run.Q[i], q, rtol=0, atol=1e-12 * np.max(np.abs(q)))


def test_ball_second_moment_values():
    assert ball_second_moment(1) == pytest.approx(1 / 12, rel=1e-15)
    assert ball_second_moment(2) == pytest.approx(1 / (4 * math.pi), rel=1e-14)
    # N = 3: Gamma(5/2) = 3 sqrt(pi) / 4
    g3 = (3 * math.sqrt(math.pi) / 4) ** (2 / 3) / (5 * math.pi)
    assert ball_second_moment(3) == pytest.approx(g3, rel=1e-14)
    values = [ball_second_moment(N) for N in range(1, 200)]
    assert all(a > b for a, b in itertools.pairwise(values))
    assert ball_second_moment(10**6) == pytest.approx(1 / (2 * math.pi * math.e), rel=1e-4)
    with pytest.raises(ValueError, match="N must be"):
        ball_second_moment(0)


def _uniform_model(rng, W_scale, delta, count, N):
    """w uniform modulo the grid delta Z (each w_t = delta (k_t + u_t), k_t an integer, u_t ~ U[0, 1))."""
    return delta * (rng.integers(-W_scale, W_scale, (count, N)) + rng.random((count, N)))


def test_monte_carlo_optimum_above_l1_and_optq_mean():
    """w uniform modulo delta: the mean of the exact optimum is >= L1 and OPTQ's mean is
    (delta^2/12) tr(D). Tolerances: 4.5 standard errors of the sample mean (CLT; a false failure has
    probability below 1e-5 per comparison, and the seed is fixed)."""
    rng = np.random.default_rng(11)
    N, m, lam, delta, count = 4, 6, 0.05, 0.4, 1500
    X = rng.standard_normal((m, N)) * np.array([2.0, 1.0, 0.6, 0.3])
    W = _uniform_model(rng, 5, delta, count, N)
    opt = pt.optimal(W, X, lam=lam, grid=pt.Grid(delta))
    assert np.all(opt.proven)
    D = pt.pivots(X.T @ X + lam * np.eye(N), lam).D
    L1 = float(l1_bound(D, np.full((1, N), delta))[0])
    se_opt = opt.cost.std(ddof=1) / math.sqrt(count)
    assert opt.cost.mean() >= L1 - 4.5 * se_opt, (opt.cost.mean(), L1, se_opt)
    optq_mean = float(mean_error(D, np.full((1, N), delta))[0])
    se_optq = opt.start_cost.std(ddof=1) / math.sqrt(count)
    assert abs(opt.start_cost.mean() - optq_mean) <= 4.5 * se_optq, (opt.start_cost.mean(), optq_mean, se_optq)
    # The ratio bound holds for the means: E[OPTQ] / E[opt] <= rho.
    rho = float(optimality_ratio(D, np.full((1, N), delta))[0])
    assert opt.start_cost.mean() / opt.cost.mean() <= rho * (1 + 4.5 * se_opt / opt.cost.mean())


def test_stochastic_optq_mean_is_delta2_over_6():
    rng = np.random.default_rng(12)
    N, m, lam, delta, count = 5, 9, 0.1, 0.3, 3000
    X = rng.standard_normal((m, N))
    W = _uniform_model(rng, 5, delta, count, N)
    run = pt.optq(W, X, lam=lam, grid=pt.Grid(delta), rounding="stochastic", seed=5)
    cost = np.sum(((W - run.Q) @ X.T) ** 2, axis=1) + lam * np.sum((W - run.Q) ** 2, axis=1)
    D = run.pivots.D
    expect = float(mean_error(D, np.full((1, N), delta), "stochastic")[0])
    se = cost.std(ddof=1) / math.sqrt(count)
    assert abs(cost.mean() - expect) <= 4.5 * se, (cost.mean(), expect, se)


def test_ratio_is_order_dependent_only_through_the_arithmetic_mean():
    """prod D_t = det H for every order (I1): the GM, hence L1, is the same for all orders."""
    rng = np.random.default_rng(3)
    N = 10
    X = rng.standard_normal((30, N)) * np.geomspace(3, 0.1, N)
    X[:, 5] += X[:, 0]
    delta = np.full((1, N), 0.1)
    l1s, rhos = [], []
    for order in ("natural", "decreasing_norm", "increasing_norm", "min_pivot"):
        run = pt.optq(rng.standard_normal(N), X, lam=0.01, grid=pt.Grid(0.1), order=order)
        l1s.append(float(l1_bound(run.pivots.D, delta)[0]))
        rhos.append(float(optimality_ratio(run.pivots.D, delta)[0]))
    assert max(l1s) == pytest.approx(min(l1s), rel=1e-10)
    assert min(rhos) >= 1 / (12 * ball_second_moment(N)) - 1e-12  # AM >= GM
    assert max(rhos) > min(rhos) * 1.01  # the order matters for the AM


def test_gap_on_midpoint_construction():
    """Where B1 is attained (every x_t a hair below a midpoint) OPTQ's cost is (delta^2/4) tr(D); the exact
    optimum is measured against it (and is never above)."""
    rng = np.random.default_rng(21)
    N, m, lam, delta = 8, 16, 0.05, 0.25
    X = rng.standard_normal((m, N))
    W = midpoint_weights(X, lam, delta, n=6, seed=1)
    opt = pt.optimal(W, X, lam=lam, grid=pt.Grid(delta))
    D = pt.pivots(X.T @ X + lam * np.eye(N), lam).D
    np.testing.assert_allclose(opt.start_cost, 0.25 * delta**2 * np.sum(D), rtol=1e-9)
    assert np.all(opt.proven) and np.all(opt.cost <= opt.start_cost * (1 + 1e-12))
    assert np.all(opt.ratio > 1.0)  # at the midpoints OPTQ is strictly beaten on this instance


def test_budget_cut_off_keeps_a_valid_point():
    rng = np.random.default_rng(5)
    N = 24
    X = rng.standard_normal((30, N))
    X[:, 1:] += 0.95 * X[:, :1]
    W = rng.standard_normal((2, N))
    opt = pt.optimal(W, X, lam=0.01, grid=pt.Grid(0.2), budget=5)
    assert not np.any(opt.proven) and np.all(opt.nodes == 5)
    assert np.all(opt.cost <= opt.start_cost * (1 + 1e-12))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"budget": 0}, "budget"),
    ({"budget": 1.5}, "budget"),
    ({"grid": "4bit"}, "grid must be a pt.Grid"),
])
def test_bad_arguments_are_refused(kwargs, match):
    X = np.eye(3)
    args = {"grid": pt.Grid(0.5), **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        pt.optimal(np.ones(3), X, lam=0.1, **args)


def test_refitting_grid_is_refused():
    W = np.random.default_rng(0).standard_normal((2, 8))
    with pytest.raises(ValueError, match="frozen"):
        pt.optimal(W, np.eye(8), lam=0.1, grid=pt.Grid.minmax(W, bits=3, group_size=4))
    # the frozen grid is accepted
    assert pt.optimal(W, np.eye(8), lam=0.1, grid=pt.Grid.minmax(W, bits=3, group_size=4).frozen()).proven.all()


def test_lower_bound_inputs_are_checked():
    with pytest.raises(ValueError, match="pivot"):
        l1_bound(np.array([1.0, 0.0]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        optimality_ratio(np.ones(3), np.ones((1, 2)))
    with pytest.raises(ValueError, match="rounding"):
        mean_error(np.ones(2), np.ones((1, 2)), "up")
