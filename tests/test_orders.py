"""Column orders pi (THEORY.md "Order", B2): named orders, explicit permutations, min-pivot order."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ptqtheory as pt


def test_natural():
    np.testing.assert_array_equal(pt.resolve_order("natural", 5), [0, 1, 2, 3, 4])


def test_norm_orders_by_hand_with_stable_ties():
    g = np.array([1.0, 3.0, 2.0, 3.0, 0.5])
    np.testing.assert_array_equal(pt.resolve_order("decreasing_norm", 5, gram_diag=g), [1, 3, 2, 0, 4])
    np.testing.assert_array_equal(pt.resolve_order("increasing_norm", 5, gram_diag=g), [4, 0, 2, 1, 3])


def test_norm_orders_in_the_algorithms():
    # column norms^2 of X: 4, 25, 1, 9 -> act-order (decreasing) is 1, 3, 0, 2
    X = np.array([[2.0, 0.0, 1.0, 0.0], [0.0, 5.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    W = np.array([[0.1, 0.2, 0.3, 0.4]])
    run = pt.optq(W, X, lam=0.1, grid=pt.Grid(0.05), order="decreasing_norm")
    np.testing.assert_array_equal(run.order, [1, 3, 0, 2])
    run = pt.ldlq(W, X, lam=0.1, grid=pt.Grid(0.05), order="increasing_norm")
    np.testing.assert_array_equal(run.order, [2, 0, 3, 1])
    # Qronos orders by the quantized-model inputs Xt (their norms^2: 9, 1, 4, 16 -> 3, 0, 2, 1)
    Xt = np.array([[3.0, 0.0, 0.0, 4.0], [0.0, 1.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    run = pt.qronos(W, X, Xt, lam=0.1, grid=pt.Grid(0.05), order="decreasing_norm")
    np.testing.assert_array_equal(run.order, [3, 0, 2, 1])


def test_random_order_needs_seed_and_is_reproducible():
    a = pt.resolve_order("random", 20, seed=3)
    b = pt.resolve_order("random", 20, seed=3)
    c = pt.resolve_order("random", 20, seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.sort(a), np.arange(20))
    assert not np.array_equal(a, c)  # two seeds agree on a 20-permutation with probability 1/20!
    with pytest.raises(ValueError, match="seed"):
        pt.resolve_order("random", 20)
    with pytest.raises(ValueError, match="seed"):
        pt.resolve_order("random", 20, seed=None)


def test_explicit_permutation():
    np.testing.assert_array_equal(pt.resolve_order([2, 0, 1], 3), [2, 0, 1])
    np.testing.assert_array_equal(pt.resolve_order(np.array([1, 2, 0]), 3), [1, 2, 0])


@pytest.mark.parametrize(
    "perm",
    [[0, 0, 1], [0, 1], [0, 1, 2, 3], [1, 2, 3], [-1, 0, 1], [0.0, 1.0, 2.0], [[0, 1, 2]], "reverse"],
)
def test_non_permutations_raise(perm):
    with pytest.raises(ValueError, match="order"):
        pt.resolve_order(perm, 3)


@pytest.mark.parametrize("as_array", [False, True])
def test_explicit_permutation_in_the_algorithms(as_array):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((2, 4))
    X = rng.standard_normal((9, 4))
    perm = [2, 0, 3, 1]
    order = np.array(perm) if as_array else perm
    grid = pt.Grid(0.1)
    for run in (
        pt.optq(W, X, lam=0.1, grid=grid, order=order),
        pt.ldlq(W, X, lam=0.1, grid=grid, order=order),
        pt.qronos(W, X, X, lam=0.1, grid=grid, order=order),
        pt.gpfq(W, X, X, grid=grid, order=order),
    ):
        np.testing.assert_array_equal(run.order, perm)
    # OPTQ in an explicit order is OPTQ on the permuted problem, mapped back
    direct = pt.optq(W[:, perm], X[:, perm], lam=0.1, grid=grid)
    run = pt.optq(W, X, lam=0.1, grid=grid, order=order)
    np.testing.assert_allclose(run.Q[:, perm], direct.Q, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="order"):
        pt.optq(W, X, lam=0.1, grid=grid, order=np.array([0, 1, 1, 2]))


# -- min-pivot order against brute force ------------------------------------------------------------


def _schur(H, j, S):
    """H_jj - H_jS H_SS^{-1} H_Sj (pivot of column j given the columns S placed after it)."""
    if not S:
        return H[j, j]
    S = list(S)
    return H[j, j] - H[j, S] @ np.linalg.solve(H[np.ix_(S, S)], H[S, j])


def _spd(seed, N, lam):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N + 2, N)) * rng.uniform(0.2, 5.0, size=N)
    return X.T @ X + lam * np.eye(N)


@settings(deadline=None, max_examples=40)
@given(seed=st.integers(0, 2**32 - 1), N=st.integers(1, 6), lam=st.floats(1e-3, 10.0))
def test_min_pivot_order_is_greedy_from_the_back(seed, N, lam):
    H = _spd(seed, N, lam)
    order = pt.min_pivot_order(H)
    np.testing.assert_array_equal(np.sort(order), np.arange(N))
    placed = []  # columns already placed after the current position
    greedy = np.empty(N)
    for t in range(N - 1, -1, -1):
        remaining = [j for j in range(N) if j not in placed]
        values = {j: _schur(H, j, placed) for j in remaining}
        chosen = int(order[t])
        assert chosen in remaining
        assert values[chosen] <= min(values.values()) + 1e-10 * np.max(np.diag(H))
        greedy[t] = values[chosen]
        placed.append(chosen)
    # The pivots of H in that order are exactly those Schur complements.
    D = pt.pivots(H[np.ix_(order, order)]).D
    np.testing.assert_allclose(D, greedy, rtol=1e-9)


def test_min_pivot_order_minimizes_the_last_pivot_over_all_orders():
    # Exhaustive check on N = 4: the last pivot D_N = H_jj is the smallest possible, and the pivot
    # before it is the smallest given that choice.
    H = _spd(123, 4, 0.5)
    order = pt.min_pivot_order(H)
    best_last = min(pt.pivots(H[np.ix_(p, p)]).D[-1] for p in itertools.permutations(range(4)))
    D = pt.pivots(H[np.ix_(order, order)]).D
    assert D[-1] == pytest.approx(best_last, rel=1e-12)
    assert D[-1] == pytest.approx(np.min(np.diag(H)), rel=1e-12)
    others = [p for p in itertools.permutations(range(4)) if p[-1] == order[-1]]
    best_second = min(pt.pivots(H[np.ix_(p, p)]).D[-2] for p in others)
    assert D[-2] == pytest.approx(best_second, rel=1e-12)


def test_min_pivot_order_hand_case():
    # Diagonal H: the pivots are the diagonal entries, so the order is decreasing diagonal.
    H = np.diag([2.0, 5.0, 1.0, 3.0])
    np.testing.assert_array_equal(pt.min_pivot_order(H), [1, 3, 0, 2])


def test_min_pivot_order_in_optq_uses_damped_H():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((8, 5)) * np.array([1.0, 4.0, 0.5, 2.0, 3.0])
    W = rng.standard_normal((2, 5))
    lam = 0.7
    run = pt.optq(W, X, lam=lam, grid=pt.Grid(0.1), order="min_pivot")
    np.testing.assert_array_equal(run.order, pt.min_pivot_order(X.T @ X + lam * np.eye(5)))
    # and its pivots are the greedy Schur complements
    H = X.T @ X + lam * np.eye(5)
    o = run.order
    for t in range(5):
        assert pt.pivots(H[np.ix_(o, o)]).D[t] == pytest.approx(_schur(H, o[t], list(o[t + 1 :])), rel=1e-10)


def test_min_pivot_order_singular_raises():
    X = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 1.0]])  # columns 0 and 1 equal: X^T X singular
    with pytest.raises(pt.SingularHessianError, match="lam"):
        pt.min_pivot_order(X.T @ X)
