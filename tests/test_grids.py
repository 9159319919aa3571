"""Grids and rounding (THEORY.md "Grid", "Rounding"): nearest with ties half up, unbiased stochastic
rounding, clipping records, GPTQ-style min-max grids.

Every expected value here is computed by hand (literals) or by a direct formula written in the test,
never by the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ptqtheory as pt

# -- nearest rounding, hand-computed --------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "expected"),
    [
        (0.25, 0.5),  # 0.25/0.5 + 1/2 = 1 -> k = 1 (tie goes up)
        (-0.25, 0.0),  # -0.5 + 0.5 = 0 -> k = 0 (tie goes up, to 0 not -0.5)
        (0.75, 1.0),  # 1.5 + 0.5 = 2 (tie up)
        (-0.75, -0.5),  # -1.5 + 0.5 = -1 (tie up)
        (0.2, 0.0),
        (0.3, 0.5),
        (1.0, 1.0),
        (-1.1, -1.0),
        (0.0, 0.0),
    ],
)
def test_nearest_ties_half_up_delta_half(x, expected):
    q, clipped = pt.Grid(0.5).round(np.array([x]))
    assert q.shape == (1,)
    assert q[0] == expected
    assert not clipped[0]
    # the free function takes broadcastable arrays
    q2, c2 = pt.round_nearest(np.array([x]), 0.5, 0.0, -np.inf, np.inf)
    assert q2[0] == expected and not c2[0]


def test_nearest_with_fractional_zero_point():
    # delta = 1, z = 0.5: grid points k - 0.5 = {..., -0.5, 0.5, 1.5, ...}
    g = pt.Grid(1.0, zero=0.5)
    x = np.array([0.0, 0.9, 1.0, -0.4, -1.0])
    # 0.0 -> s = 1.0 -> k = 1 -> 0.5 (tie -0.5 / 0.5 goes up); 0.9 -> 1.9 -> 1 -> 0.5;
    # 1.0 -> 2.0 -> 2 -> 1.5 (tie); -0.4 -> 0.6 -> 0 -> -0.5; -1.0 -> 0 -> 0 -> -0.5 (tie up)
    q, clipped = g.round(x)
    np.testing.assert_array_equal(q, [0.5, 0.5, 1.5, -0.5, -0.5])
    assert not clipped.any()


def test_nearest_integer_zero_point_and_clipping():
    # delta = 0.25, z = 3, k in [0, 7]: grid {-0.75, -0.5, ..., 1.0}
    g = pt.Grid(0.25, zero=3, lo=0, hi=7)
    x = np.array([-2.0, 5.0, 0.1, 0.125, -0.875, -0.9, 1.0, 1.125, 1.13])
    q, clipped = g.round(x)
    # -2    -> k = floor(-8 + 3.5) = -5 -> clip to 0 -> -0.75
    # 5     -> k = 23 -> clip to 7 -> 1.0
    # 0.1   -> floor(0.4 + 3.5) = 3 -> 0.0
    # 0.125 -> floor(0.5 + 3.5) = 4 -> 0.25 (tie up)
    # -0.875-> floor(-3.5 + 3.5) = 0 -> -0.75 (tie up, stays in range: no clip)
    # -0.9  -> floor(-3.6 + 3.5) = -1 -> clip to 0 -> -0.75
    # 1.0   -> 7 -> 1.0; 1.125 -> floor(4.5 + 3.5) = 8 -> clip (tie went out of range); 1.13 -> 8 clip
    np.testing.assert_array_equal(q, [-0.75, 1.0, 0.0, 0.25, -0.75, -0.75, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(clipped, [True, True, False, False, False, True, False, True, True])


def test_nearest_per_row_delta():
    W = np.array([[0.375, -0.375], [0.375, -0.375]])
    g = pt.Grid(np.array([0.5, 0.25]))
    q, clipped = g.round(W)
    # row 0: 0.75 + 0.5 -> 1 -> 0.5; -0.75 + 0.5 -> -1 -> -0.5
    # row 1: 1.5 + 0.5 = 2 -> 0.5 (tie up); -1.5 + 0.5 = -1 -> -0.25 (tie up)
    np.testing.assert_array_equal(q, [[0.5, -0.5], [0.5, -0.25]])
    assert not clipped.any()


def test_nearest_per_entry_delta_and_zero():
    W = np.array([[0.375, 0.375], [0.375, 3.0]])
    delta = np.array([[0.5, 0.25], [1.0, 2.0]])
    zero = np.array([[0.0, 1.0], [0.0, 0.0]])
    q, clipped = pt.Grid(delta, zero).round(W)
    # (0,0): 0.75+0.5 -> 1 -> 0.5; (0,1): 1.5+1+0.5 = 3 -> 3 -> 0.25*(3-1) = 0.5
    # (1,0): 0.375+0.5 -> 0 -> 0.0; (1,1): 1.5+0.5 = 2 -> 4.0
    np.testing.assert_array_equal(q, [[0.5, 0.5], [0.0, 4.0]])
    assert not clipped.any()


def test_rtn_uses_the_same_rounding():
    W = np.array([[0.25, -0.25, 0.75, 9.0]])
    run = pt.rtn(W, grid=pt.Grid.alphabet(0.5, 2))
    np.testing.assert_array_equal(run.Q, [[0.5, 0.0, 1.0, 1.0]])
    np.testing.assert_array_equal(run.clipped, [[False, False, False, True]])
    np.testing.assert_array_equal(run.eta, W - run.Q)
    assert run.n_clipped == 1


# -- clipping is recorded, and only there ---------------------------------------------------------


@settings(deadline=None, max_examples=40)
@given(
    x=hnp.arrays(np.float64, (3, 7), elements=st.floats(-20, 20, allow_subnormal=False)),
    delta=st.sampled_from([0.1, 0.25, 0.7, 1.0, 3.0]),
    zero=st.integers(-3, 3),
    lo=st.integers(-6, 2),
    width=st.integers(0, 8),
)
def test_clipping_recorded_exactly_where_the_nearest_point_is_out_of_range(x, delta, zero, lo, width):
    hi = lo + width
    g = pt.Grid(delta, zero=zero, lo=lo, hi=hi)
    q, clipped = g.round(x)
    # Brute force: the alphabet is {delta (k - zero) : lo <= k <= hi}; every q lies on it.
    ks = np.arange(lo, hi + 1)
    points = delta * (ks - zero)
    k_of_q = q / delta + zero
    assert np.all(np.abs(k_of_q - np.rint(k_of_q)) < 1e-9)
    assert np.all((np.rint(k_of_q) >= lo) & (np.rint(k_of_q) <= hi))
    # q is a nearest point of the alphabet (ties excepted, which the tolerance absorbs).
    best = np.min(np.abs(x[..., None] - points), axis=-1)
    assert np.all(np.abs(x - q) <= best + 1e-9)
    # The unbounded nearest point lies outside [lo, hi] iff x is more than delta/2 beyond an end.
    left, right = delta * (lo - zero) - delta / 2, delta * (hi - zero) + delta / 2
    tol = 1e-9 * delta
    assert not np.any(clipped & (x > left + tol) & (x < right - tol))
    assert np.all(clipped[(x < left - tol) | (x > right + tol)])
    # Unclipped entries are within delta/2; clipped entries sit on an end of the alphabet.
    assert np.all(np.abs(x - q)[~clipped] <= delta / 2 * (1 + 1e-12))
    assert np.all(np.isin(q[clipped], [points[0], points[-1]]))


def test_unbounded_grid_never_clips():
    x = np.array([-1e6, -3.3, 0.0, 7.1, 1e6])
    q, clipped = pt.Grid(0.5).round(x)
    assert not clipped.any()
    np.testing.assert_array_equal(q, [-1e6, -3.5, 0.0, 7.0, 1e6])
    assert not pt.Grid(0.5).bounded
    assert pt.Grid(0.5, lo=0, hi=1).bounded


# -- the theory's alphabet A_K ---------------------------------------------------------------------


def test_alphabet():
    g = pt.Grid.alphabet(0.5, 2)  # {-1, -0.5, 0, 0.5, 1}
    assert g.lo == -2 and g.hi == 2 and g.zero == 0 and g.delta == 0.5
    x = np.array([-10.0, -1.1, -0.25, 0.6, 0.76, 1.24, 1.26, 10.0])
    q, clipped = g.round(x)
    # -1.1 -> floor(-2.2 + 0.5) = -2 (in range); 1.24 -> floor(2.98) = 2; 1.26 -> floor(3.02) = 3 -> clip
    np.testing.assert_array_equal(q, [-1.0, -1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(clipped, [True, False, False, False, False, False, True, True])


def test_alphabet_K0_is_the_single_point_zero():
    g = pt.Grid.alphabet(1.0, 0)
    x = np.array([-0.5, -0.6, 0.49, 0.5, 3.0])
    q, clipped = g.round(x)
    np.testing.assert_array_equal(q, np.zeros(5))
    # -0.5 rounds (tie up) to 0 itself; 0.5 rounds up to 1, out of range
    np.testing.assert_array_equal(clipped, [False, True, False, True, True])


def test_alphabet_negative_K_raises():
    with pytest.raises(ValueError, match="K"):
        pt.Grid.alphabet(1.0, -1)


# -- stochastic rounding ---------------------------------------------------------------------------


def test_stochastic_unbiased_and_variance_monte_carlo():
    delta = 0.5
    xs = np.array([0.1, 0.25, -0.4, 1.37, 2.0])
    M = 20000
    q, clipped = pt.Grid(delta).round(np.repeat(xs[:, None], M, axis=1), "stochastic", seed=12345)
    assert not clipped.any()
    for i, x in enumerate(xs):
        r = x - delta * np.floor(x / delta)  # distance above the lower neighbour
        var = r * (delta - r)
        mean = q[i].mean()
        if var == 0:  # x on the grid: deterministic
            assert np.all(q[i] == x)
            continue
        se = np.sqrt(var / M)
        assert abs(mean - x) <= 5 * se, (x, mean, se)  # CLT: 5 standard errors
        # q takes two values delta apart, so its sample variance is delta^2 p_hat (1 - p_hat);
        # |p_hat(1-p_hat) - p(1-p)| <= |p_hat - p| (|1 - 2p| + |p_hat - p|).
        p = r / delta
        se_p = np.sqrt(p * (1 - p) / M)
        tol = delta**2 * 5 * se_p * (abs(1 - 2 * p) + 5 * se_p)
        assert abs(q[i].var() - var) <= tol, (x, q[i].var(), var, tol)


def test_stochastic_unbiased_with_zero_point_per_row():
    delta = np.array([0.3, 2.0])
    zero = np.array([1.5, -2.0])
    x = np.array([0.47, -3.1])
    M = 20000
    q, _ = pt.Grid(delta, zero).round(np.repeat(x[:, None], M, axis=1), "stochastic", seed=7)
    for i in range(2):
        # grid points delta (k - z): neighbours of x are delta (floor(x/delta + z) - z) and + delta
        s = x[i] / delta[i] + zero[i]
        low = delta[i] * (np.floor(s) - zero[i])
        r = x[i] - low
        assert 0 < r < delta[i]
        assert np.all(np.isclose(q[i], low, atol=1e-12) | np.isclose(q[i], low + delta[i], atol=1e-12))
        se = np.sqrt(r * (delta[i] - r) / M)
        assert abs(q[i].mean() - x[i]) <= 5 * se


@settings(deadline=None, max_examples=40)
@given(
    x=hnp.arrays(np.float64, (4, 6), elements=st.floats(-50, 50, allow_subnormal=False)),
    delta=st.floats(0.01, 5.0),
    zero=st.integers(-4, 4),
    seed=st.integers(0, 2**32 - 1),
)
def test_stochastic_lands_on_a_neighbouring_grid_point(x, delta, zero, seed):
    q, clipped = pt.Grid(delta, zero=zero).round(x, "stochastic", seed=seed)
    assert not clipped.any()
    k = q / delta + zero
    assert np.all(np.abs(k - np.rint(k)) < 1e-9 * (1 + np.abs(k)))  # on the grid
    assert np.all(np.abs(q - x) < delta * (1 + 1e-12))  # one of the two neighbours
    lower = delta * (np.floor(x / delta + zero) - zero)
    on_low = np.isclose(q, lower, rtol=0, atol=1e-9 * delta * (1 + np.abs(k)))
    on_high = np.isclose(q, lower + delta, rtol=0, atol=1e-9 * delta * (1 + np.abs(k)))
    assert np.all(on_low | on_high)


def test_stochastic_on_grid_points_is_exact_and_clipping_recorded():
    g = pt.Grid.alphabet(1.0, 1)
    x = np.array([[-1.0, 0.0, 1.0, 5.0, -5.0]])
    q, clipped = g.round(x, "stochastic", seed=0)
    np.testing.assert_array_equal(q, [[-1.0, 0.0, 1.0, 1.0, -1.0]])
    np.testing.assert_array_equal(clipped, [[False, False, False, True, True]])


# -- GPTQ's min-max grid ---------------------------------------------------------------------------

W_HAND = np.array(
    [
        [-1.0, 2.0, 0.5, 0.0],
        [0.5, 1.5, 3.0, 0.25],  # no negative entry: min is taken as 0
        [0.0, 0.0, 0.0, 0.0],  # all zero: min, max = -1, +1
        [-2.0, -0.5, -1.0, -3.0],  # no positive entry: max is taken as 0
    ]
)


def test_minmax_asymmetric_per_row_by_hand():
    g = pt.Grid.minmax(W_HAND, bits=2)  # maxq = 3
    # row 0: scale = (2 - (-1))/3 = 1, zero = floor(1/1 + 1/2) = 1
    # row 1: scale = (3 - 0)/3 = 1,    zero = floor(0 + 1/2) = 0
    # row 2: scale = (1 - (-1))/3 = 2/3, zero = floor(1.5 + 1/2) = 2
    # row 3: scale = (0 - (-3))/3 = 1, zero = floor(3 + 1/2) = 3
    np.testing.assert_allclose(np.ravel(g.delta), [1.0, 1.0, 2 / 3, 1.0], rtol=1e-15)
    np.testing.assert_array_equal(np.ravel(g.zero), [1.0, 0.0, 2.0, 3.0])
    assert g.lo == 0 and g.hi == 3
    assert g.rule == pt.MinMax(bits=2, sym=False, group_size=None)
    # rounding W with it: row 0 grid {-1, 0, 1, 2}: exact; row 1 grid {0, 1, 2, 3}: 0.5 -> 1 (tie up),
    # 1.5 -> 2 (tie up), 0.25 -> 0; row 3 grid {-3, -2, -1, 0}: -0.5 -> 0 (tie up)
    q, clipped = g.round(W_HAND)
    np.testing.assert_allclose(
        q, [[-1, 2, 1, 0], [1, 2, 3, 0], [0, 0, 0, 0], [-2, 0, -1, -3]], rtol=0, atol=1e-15
    )
    assert not clipped.any()


def test_minmax_symmetric_per_row_by_hand():
    g = pt.Grid.minmax(W_HAND, bits=3, sym=True)  # maxq = 7, zero = 2**2 = 4
    # delta = 2 max|w| / 7 with max|w| = 2, 3, 1 (all-zero row), 3
    np.testing.assert_allclose(np.ravel(g.delta), [4 / 7, 6 / 7, 2 / 7, 6 / 7], rtol=1e-15)
    np.testing.assert_array_equal(np.ravel(g.zero), [4.0, 4.0, 4.0, 4.0])
    assert g.lo == 0 and g.hi == 7


def test_minmax_groups_last_group_shorter_by_hand():
    W = np.array([[-1.0, 2.0, 0.5, 4.0, -6.0], [1.0, 1.0, 0.0, 0.0, 2.0]])
    g = pt.Grid.minmax(W, bits=2, group_size=2)  # groups {0,1}, {2,3}, {4}
    # row 0: [-1, 2] -> (1, 1); [0.5, 4] -> min 0: (4/3, 0); [-6] -> max 0: (2, floor(3.5) = 3)
    # row 1: [1, 1] -> (1/3, 0); [0, 0] -> all zero: (2/3, 2); [2] -> (2/3, 0)
    np.testing.assert_allclose(
        g.delta, [[1, 1, 4 / 3, 4 / 3, 2], [1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3]], rtol=1e-15
    )
    np.testing.assert_array_equal(g.zero, [[1, 1, 0, 0, 3], [0, 0, 2, 2, 0]])
    assert g.rule.group_size == 2 and g.refits_groups
    assert not g.frozen().refits_groups


def test_minmax_symmetric_groups_by_hand():
    W = np.array([[-1.0, 2.0, 0.5, 4.0, -6.0]])
    g = pt.Grid.minmax(W, bits=4, sym=True, group_size=3)  # groups {0,1,2}, {3,4}; maxq = 15
    np.testing.assert_allclose(g.delta, [[4 / 15] * 3 + [12 / 15] * 2], rtol=1e-15)
    np.testing.assert_array_equal(g.zero, np.full((1, 5), 8.0))


def _minmax_by_formula(row, bits, sym):
    """GPTQ's find_params for one row (group), written out independently of the package."""
    maxq = 2**bits - 1
    mn, mx = min(min(row), 0.0), max(max(row), 0.0)
    if sym:
        mx = max(-mn, mx)
        mn = -mx
    if mn == 0 and mx == 0:
        mn, mx = -1.0, 1.0
    scale = (mx - mn) / maxq
    zero = 2 ** (bits - 1) if sym else np.floor(-mn / scale + 0.5)
    return scale, zero


@settings(deadline=None, max_examples=40)
@given(
    W=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 9)),
        elements=st.floats(-100, 100, allow_subnormal=False),
    ),
    bits=st.integers(1, 8),
    sym=st.booleans(),
    group_size=st.one_of(st.none(), st.integers(1, 5)),
)
def test_minmax_matches_formula(W, bits, sym, group_size):
    g = pt.Grid.minmax(W, bits=bits, sym=sym, group_size=group_size)
    n, N = W.shape
    delta, zero, lo, hi = g.expand(n, N)
    gs = N if group_size is None else group_size
    for i in range(n):
        for g0 in range(0, N, gs):
            s, z = _minmax_by_formula(list(W[i, g0 : g0 + gs]), bits, sym)
            np.testing.assert_allclose(delta[i, g0 : g0 + gs], s, rtol=1e-15)
            np.testing.assert_array_equal(zero[i, g0 : g0 + gs], z)
    assert np.all(lo == 0) and np.all(hi == 2**bits - 1)


@settings(deadline=None, max_examples=40)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 5), st.integers(1, 12)),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-2, 2),
    bits=st.integers(1, 8),
    group_size=st.one_of(st.none(), st.integers(1, 6)),
)
def test_minmax_asymmetric_never_clips_its_own_weights(seed, shape, scale, shift, bits, group_size):
    # Generic (continuous) weights: no row range is an exact tie, and nearest rounding stays in range.
    W = scale * (np.random.default_rng(seed).standard_normal(shape) + shift)
    g = pt.Grid.minmax(W, bits=bits, group_size=group_size)
    q, clipped = g.round(W)
    assert not clipped.any()
    delta, _, _, _ = g.expand(*W.shape)
    assert np.all(np.abs(W - q) <= delta / 2 * (1 + 1e-9))


@settings(deadline=None, max_examples=40)
@given(
    W=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 4), st.integers(1, 9)),
        elements=st.floats(-100, 100, allow_subnormal=False),
    ),
    bits=st.integers(1, 8),
    group_size=st.one_of(st.none(), st.integers(1, 5)),
)
def test_minmax_asymmetric_clips_only_at_exact_ties(W, bits, group_size):
    # Any input (ties included): every entry is within delta/2 of its rounded value, and an entry
    # is clipped only when it was a tie whose upper choice fell just outside the range.
    g = pt.Grid.minmax(W, bits=bits, group_size=group_size)
    q, clipped = g.round(W)
    delta, _, _, _ = g.expand(*W.shape)
    err = np.abs(W - q)
    assert np.all(err <= delta / 2 * (1 + 1e-9))
    assert np.all(np.abs(err[clipped] - delta[clipped] / 2) <= 1e-9 * delta[clipped])


def test_minmax_asymmetric_tie_at_the_top_is_recorded_as_a_clip():
    # A row with max == -min: -min/scale = maxq/2 is a half-integer, zero rounds up (floor(. + 1/2),
    # as GPTQ's torch.round also does for 1.5, 3.5, 7.5, ...), so the grid is {-4/3, -2/3, 0, 2/3}
    # and x = 1 is a tie between 2/3 and 4/3 (k = 4, outside [0, 3]): it goes to 2/3, clipped.
    g = pt.Grid.minmax(np.array([[-1.0, 1.0]]), bits=2)
    np.testing.assert_allclose(np.ravel(g.delta), [2 / 3], rtol=1e-15)
    np.testing.assert_array_equal(np.ravel(g.zero), [2.0])
    q, clipped = g.round(np.array([[-1.0, 1.0]]))
    np.testing.assert_allclose(q, [[-2 / 3, 2 / 3]], rtol=1e-15)
    np.testing.assert_array_equal(clipped, [[False, True]])


def test_minmax_vector_input():
    g = pt.Grid.minmax(np.array([-1.0, 2.0, 0.5]), bits=2)
    np.testing.assert_allclose(np.ravel(g.delta), [1.0])
    q, clipped = g.round(np.array([-1.0, 2.0, 0.5]))
    assert not clipped.any()
    assert q.shape == (3,)
    np.testing.assert_array_equal(q, [-1.0, 2.0, 1.0])


# -- invalid grids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, -1])
def test_bits_below_one_raises(bits):
    with pytest.raises(ValueError, match="bits"):
        pt.Grid.minmax(np.ones((2, 3)), bits=bits)


def test_group_size_zero_raises():
    with pytest.raises(ValueError, match="group_size"):
        pt.Grid.minmax(np.ones((2, 3)), bits=4, group_size=0)


@pytest.mark.parametrize("delta", [0.0, -1.0, [1.0, 0.0], [[0.5, -0.5]]])
def test_nonpositive_delta_raises(delta):
    with pytest.raises(ValueError, match="delta"):
        pt.Grid(delta)


def test_lo_above_hi_raises():
    with pytest.raises(ValueError, match="lo"):
        pt.Grid(1.0, lo=3, hi=2)
    with pytest.raises(ValueError, match="lo"):
        pt.Grid(1.0, lo=[0, 5], hi=[1, 4])


def test_non_integer_range_raises():
    with pytest.raises(ValueError, match="hi"):
        pt.Grid(1.0, lo=0, hi=2.5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(delta=np.ones(3)), "delta"),  # 3 per-row values, W has 2 rows
        (dict(delta=np.ones((2, 5))), "delta"),  # W is (2, 4)
        (dict(delta=1.0, zero=np.zeros((3, 4))), "zero"),
        (dict(delta=1.0, lo=np.zeros(5, dtype=int), hi=3), "lo"),
        (dict(delta=1.0, lo=0, hi=np.full((1, 3), 3)), "hi"),
    ],
)
def test_grid_shape_mismatch_names_the_parameter(kwargs, name):
    g = pt.Grid(**kwargs)
    W = np.ones((2, 4))
    with pytest.raises(ValueError, match=rf"grid {name}"):
        g.round(W)
    with pytest.raises(ValueError, match=rf"grid {name}"):
        pt.rtn(W, grid=g)
    with pytest.raises(ValueError, match=rf"grid {name}"):
        pt.optq(W, np.eye(4), lam=0.1, grid=g)


def test_unknown_rounding_in_grid_round_raises():
    with pytest.raises(ValueError, match="rounding"):
        pt.Grid(1.0).round(np.ones(3), "banker")
