"""MagR: the l1-ball projection, the prox of the infinity norm, the solver's duality-gap certificate
and the end-to-end bound, each checked against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import ptqtheory as pt
from ptqtheory.magr import magr, magr_bound, project_l1_ball, prox_linf


def _project_by_bisection(y, radius):
    """The l1-ball projection through its threshold, found by bisection (an independent route)."""
    a = np.abs(y)
    if a.sum() <= radius:
        return y.copy()
    lo, hi = 0.0, a.max()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(a - mid, 0).sum() > radius:
            lo = mid
        else:
            hi = mid
    return np.sign(y) * np.maximum(a - 0.5 * (lo + hi), 0)


@pytest.mark.parametrize("seed", range(5))
def test_projection_matches_bisection(seed):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((6, 9)) * rng.uniform(0.05, 2.0, (6, 1))
    P = project_l1_ball(Y, 1.3)
    for y, p in zip(Y, P, strict=True):
        np.testing.assert_allclose(p, _project_by_bisection(y, 1.3), atol=1e-12)
        assert np.sum(np.abs(p)) <= 1.3 + 1e-12


def test_prox_optimality_conditions():
    """p = prox_{alpha ||.||_inf}(y) iff y - p lies in alpha * subdifferential of ||.||_inf at p:
    ||y - p||_1 <= alpha, and (y - p)^T p = alpha ||p||_inf."""
    rng = np.random.default_rng(1)
    Y = rng.standard_normal((8, 7))
    for alpha in (0.05, 0.7, 50.0):
        P = prox_linf(Y, alpha)
        G = Y - P
        assert np.all(np.sum(np.abs(G), axis=1) <= alpha * (1 + 1e-12))
        np.testing.assert_allclose(np.sum(G * P, axis=1), alpha * np.max(np.abs(P), axis=1), atol=1e-12)


def _objective(v, w, Gn, alpha):
    e = v - w
    return 0.5 * e @ Gn @ e + alpha * np.max(np.abs(v))


def test_gap_bounds_suboptimality_against_an_independent_solver():
    """P(v) - P(v_ref) <= gap for a reference minimizer from scipy (an epigraph QP), whatever the
    reference's accuracy (P(v_ref) >= P*), and the gap shrinks to ~0 with more iterations."""
    rng = np.random.default_rng(2)
    m, N, n = 40, 10, 4
    X = rng.standard_normal((m, N)) * rng.uniform(0.3, 2.0, N)
    W = rng.standard_normal((n, N))
    alpha = 0.02
    few, many = magr(W, X, alpha=alpha, iterations=3), magr(W, X, alpha=alpha, iterations=3000)
    G = X.T @ X
    Gn = G / np.linalg.eigvalsh(G)[-1]
    for i in range(n):
        w = W[i]
        # min 1/2 e^T Gn e + alpha t  s.t. -t <= v_j <= t, variables (v, t)
        def fun(z, w=w):
            return 0.5 * (z[:N] - w) @ Gn @ (z[:N] - w) + alpha * z[N]

        cons = [{"type": "ineq", "fun": lambda z: z[N] - z[:N]},
                {"type": "ineq", "fun": lambda z: z[N] + z[:N]}]
        ref = scipy.optimize.minimize(fun, np.r_[w, np.abs(w).max()], constraints=cons, method="SLSQP",
                                      options={"ftol": 1e-14, "maxiter": 500})
        p_ref = _objective(ref.x[:N], w, Gn, alpha)
        for res in (few, many):
            assert res.objective[i] - p_ref <= res.gap[i] + 1e-12
            assert res.objective[i] == pytest.approx(_objective(res.V[i], w, Gn, alpha), rel=1e-12)
    assert np.all(few.gap > 1e-6)  # three steps do not solve it, and the certificate says so
    assert np.all(many.gap < 1e-9) and np.all(many.certified)
    assert np.all(many.v_inf < many.w_inf)


def test_end_to_end_bound_holds_and_can_fail():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((64, 16))
    W = rng.standard_normal((6, 16))
    res = magr(W, X, alpha=0.01, iterations=300)
    grid = pt.Grid.minmax(res.V, bits=4)
    run = pt.optq(res.V, X, lam=pt.Damping.percdamp(0.01), grid=grid)
    b = magr_bound(res, W, run, X)
    # B1 (hence this bound) needs a run without clipping: min-max grids clip now and then.
    assert np.count_nonzero(b.applies) >= 4 and b.violations == 0
    assert np.all(b.empirical > 0)
    # Negative control: the same check against a bound a quarter as large must fail somewhere.
    from dataclasses import replace
    assert replace(b, value=b.value / 4).violations > 0


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"alpha": 0.0}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"iterations": 0}, "iterations"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        magr(np.ones((2, 3)), np.eye(3), **kwargs)


def test_run_must_quantize_v():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((20, 5))
    W = rng.standard_normal((2, 5))
    res = magr(W, X, alpha=0.01)
    run = pt.optq(W, X, lam=0.1, grid=pt.Grid.minmax(W, bits=4))
    with pytest.raises(ValueError, match=r"result\.V"):
        magr_bound(res, W, run, X)


def test_groupwise_gap_bounds_suboptimality_against_an_independent_solver():
    """The group-wise penalty alpha * sum_g ||v_g||_inf (groups of 4 over N = 10: the last group is
    shorter): P(v) - P(v_ref) <= gap against scipy's epigraph QP with one bound t_g per group, and the
    gap vanishes at convergence (the certificate is exact there)."""
    rng = np.random.default_rng(5)
    m, N, n, g = 40, 10, 3, 4
    X = rng.standard_normal((m, N)) * rng.uniform(0.3, 2.0, N)
    W = rng.standard_normal((n, N))
    alpha = 0.02
    few = magr(W, X, alpha=alpha, iterations=3, group_size=g)
    many = magr(W, X, alpha=alpha, iterations=4000, group_size=g)
    G = X.T @ X
    Gn = G / np.linalg.eigvalsh(G)[-1]
    groups = [slice(0, 4), slice(4, 8), slice(8, 10)]

    def objective(v, w):
        return 0.5 * (v - w) @ Gn @ (v - w) + alpha * sum(np.max(np.abs(v[s])) for s in groups)

    for i in range(n):
        w = W[i]

        def fun(z, w=w):
            return 0.5 * (z[:N] - w) @ Gn @ (z[:N] - w) + alpha * np.sum(z[N:])

        def bounds(z, sign):
            t = np.concatenate([np.full(s.stop - s.start, z[N + k]) for k, s in enumerate(groups)])
            return t + sign * z[:N]

        cons = [{"type": "ineq", "fun": lambda z: bounds(z, -1.0)},
                {"type": "ineq", "fun": lambda z: bounds(z, 1.0)}]
        z0 = np.r_[w, [np.abs(w[s]).max() for s in groups]]
        ref = scipy.optimize.minimize(fun, z0, constraints=cons, method="SLSQP",
                                      options={"ftol": 1e-14, "maxiter": 500})
        p_ref = objective(ref.x[:N], w)
        for res in (few, many):
            assert res.objective[i] == pytest.approx(objective(res.V[i], w), rel=1e-12)
            assert res.objective[i] - p_ref <= res.gap[i] + 1e-12
    assert np.all(few.gap > 1e-6)
    assert np.all(many.gap < 1e-9) and np.all(many.certified)
    assert many.group_size == g


def test_groupwise_prox_optimality_conditions():
    """Per group, y_g - p_g lies in alpha * the subdifferential of ||.||_inf at p_g."""
    from ptqtheory.magr import _groups, _prox

    rng = np.random.default_rng(6)
    Y = rng.standard_normal((5, 11))
    groups = _groups(11, 4)
    assert [(s.start, s.stop) for s in groups] == [(0, 4), (4, 8), (8, 11)]
    P = _prox(Y, 0.3, groups)
    for s in groups:
        D = Y[:, s] - P[:, s]
        assert np.all(np.sum(np.abs(D), axis=1) <= 0.3 * (1 + 1e-12))
        np.testing.assert_allclose(np.sum(D * P[:, s], axis=1), 0.3 * np.max(np.abs(P[:, s]), axis=1),
                                   atol=1e-12)


def test_gram_route_and_defaults():
    """magr_gram on X^T X gives magr's iterates bit for bit; a group as wide as the row is the
    per-channel problem; the defaults are the authors' (1e-3, 200 per channel; 1e-4, 150 per group)."""
    from ptqtheory.magr import magr_gram

    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 8))
    W = rng.standard_normal((3, 8))
    a, b = magr(W, X), magr_gram(W, X.T @ X)
    np.testing.assert_array_equal(a.V, b.V)
    np.testing.assert_allclose(a.output_change, b.output_change, rtol=1e-9)
    assert (a.alpha, a.iterations, a.group_size) == (1e-3, 200, None)
    c = magr(W, X, group_size=4)
    assert (c.alpha, c.iterations, c.group_size) == (1e-4, 150, 4)
    np.testing.assert_array_equal(magr(W, X, group_size=8).V, a.V)
    with pytest.raises(ValueError, match="gram"):
        magr_gram(W, np.eye(7))
    with pytest.raises(ValueError, match="group_size"):
        magr(W, X, group_size=0)


@pytest.mark.parametrize("case", ["random", "ties", "inside", "tiny_alpha", "one_column"])
def test_prox_top_k_route_equals_the_moreau_route(case):
    """prox_linf sorts only the k largest magnitudes; Moreau's identity with the whole-row l1 projection
    (and the bisection projection) is the independent route."""
    rng = np.random.default_rng(8)
    Y = rng.standard_normal((7, 13))
    alpha = 0.4
    if case == "ties":
        Y[:, :5] = np.sign(Y[:, :5]) * 2.0  # five equal largest magnitudes per row
    elif case == "inside":
        Y[:3] *= 1e-3  # ||y||_1 <= alpha: the prox is 0
    elif case == "tiny_alpha":
        alpha = 1e-9
    elif case == "one_column":
        Y = Y[:, :1]
    got = prox_linf(Y, alpha)
    moreau = Y - alpha * project_l1_ball(Y / alpha, 1.0)
    bisect = np.array([y - alpha * _project_by_bisection(y / alpha, 1.0) for y in Y])
    scale = np.max(np.abs(Y))
    np.testing.assert_allclose(got, moreau, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(got, bisect, rtol=0, atol=1e-9 * scale)
    if case == "inside":
        assert np.all(got[:3] == 0)
