"""General finite alphabets and dINT (pt.Alphabet): rounding against brute force, unbiasedness,
the local-gap bounds, reproduction of uniform-grid runs, certificates and bounds on every algorithm,
validation, determinism and torch parity. Each check compares with an independent computation."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from strategies import examples

import ptqtheory as pt
from ptqtheory.alphabets import quantize_alphabet
from ptqtheory.factor import pivots_from_data
from ptqtheory.instances import make_instance

# -- strategies -------------------------------------------------------------------------------


@st.composite
def alphabets(draw, max_size: int = 9):
    """Sorted distinct levels with gaps of very different sizes (and a per-row scale)."""
    m = draw(st.integers(2, max_size))
    gaps = draw(st.lists(st.floats(1e-3, 10.0), min_size=m - 1, max_size=m - 1))
    start = draw(st.floats(-20.0, 5.0))
    values = start + np.concatenate([[0.0], np.cumsum(gaps)])
    values = np.unique(values)
    if values.size < 2:
        values = np.array([start, start + 1.0])
    return values


def brute_nearest(y: float, values: np.ndarray) -> float:
    """argmin_k |y - v_k| by enumeration; ties go to the larger value (the documented rule)."""
    d = np.array([abs(y - v) for v in values])
    best = np.flatnonzero(d == d.min())
    return float(values[best.max()])


def brute_neighbours(y: float, values: np.ndarray) -> tuple[float, float]:
    """The interval [a, b] of consecutive levels holding y, by a linear scan (inside the range)."""
    for a, b in itertools.pairwise(values):
        if a <= y <= b:
            return float(a), float(b)
    raise AssertionError("y outside the range")


# -- the formats ------------------------------------------------------------------------------


def test_dint_values_match_hand_table():
    table = {
        2: [-0.5, 0.0, 0.5],
        3: [-2, -1, -0.5, 0, 0.5, 1, 2],
        4: [-6, -5, -4, -3, -2, -1, -0.5, 0, 0.5, 1, 2, 3, 4, 5, 6],
    }
    for bits, want in table.items():
        got = pt.Alphabet.dint(bits).values
        assert np.array_equal(got, np.array(want, dtype=float)), bits
        assert got.size == 2**bits - 1  # as many values as the symmetric INT of the same bits
    assert np.array_equal(pt.Alphabet.integer(4).values, np.arange(-7.0, 8.0))
    assert np.array_equal(pt.Alphabet.integer(2).values, np.array([-1.0, 0.0, 1.0]))
    a = pt.Alphabet.dint(4, scale=[2.0, 0.5])
    assert np.array_equal(a.scale, [2.0, 0.5]) and a.max_gap == 1.0
    assert pt.Alphabet.dint(8).values.size == 255


def test_validation_errors():
    with pytest.raises(ValueError, match=r"strictly increasing.*index 2"):
        pt.Alphabet([0.0, 2.0, 1.0])
    with pytest.raises(ValueError, match="repeats"):
        pt.Alphabet([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="at least 2"):
        pt.Alphabet([1.0])
    with pytest.raises(ValueError, match="NaN or Inf"):
        pt.Alphabet([0.0, np.inf])
    with pytest.raises(ValueError, match="NaN or Inf"):
        pt.Alphabet([0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        pt.Alphabet([[0.0, 1.0]])
    with pytest.raises(TypeError, match="bool"):
        pt.Alphabet([False, True])
    with pytest.raises(ValueError, match="positive normal"):
        pt.Alphabet([0.0, 1.0], scale=0.0)
    with pytest.raises(ValueError, match="positive normal"):
        pt.Alphabet([0.0, 1.0], scale=[1.0, -1.0])
    with pytest.raises(ValueError, match="bits"):
        pt.Alphabet.dint(1)
    with pytest.raises(ValueError, match="bits"):
        pt.Alphabet.dint(17)
    W = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"2 values \(one per row\) but W has 3 rows"):
        pt.rtn(W, grid=pt.Alphabet.dint(4, scale=[1.0, 2.0]))
    with pytest.raises(ValueError, match="negative entries"):
        pt.Alphabet([0.0, 1.0]).fit(-W)
    with pytest.raises(ValueError, match=r"s_i G.*too large"):  # R1: s_i G^2 D_t would overflow
        pt.rtn(W, grid=pt.Alphabet([-1e-250, 1.0]).fit(W - 2.0))
    with pytest.raises(TypeError, match=r"pt\.Alphabet"):
        pt.rtn(W, grid=[0.0, 1.0])
    import sympy

    We = np.array([[sympy.Rational(1, 3)]], dtype=object)
    with pytest.raises(ValueError, match="exact arithmetic"):
        pt.rtn(We, grid=pt.Alphabet([0.0, 1.0]))


# -- rounding ---------------------------------------------------------------------------------


@examples(200)
@given(alphabets(), st.lists(st.floats(-40.0, 40.0), min_size=1, max_size=12), st.floats(0.01, 100.0))
def test_nearest_is_brute_force_argmin(values, xs, scale):
    A = pt.Alphabet(values, scale=scale)
    x = np.array(xs)[None, :]
    q, clipped = A.round(x)
    for j, xj in enumerate(x[0]):
        y = xj / scale
        assert q[0, j] == scale * brute_nearest(y, values), (xj, values)
        assert clipped[0, j] == (y < values[0] or y > values[-1])


def test_ties_go_to_the_larger_value():
    A = pt.Alphabet([0.0, 1.0, 3.0], scale=0.5)
    q, _ = A.round(np.array([0.25, 1.0, -0.0, 1.5, 0.75]))
    # 0.25 is the midpoint of 0 and 0.5; 1.0 of 0.5 and 1.5
    assert np.array_equal(q, [0.5, 1.5, 0.0, 1.5, 0.5])
    q, _ = pt.Alphabet.dint(4).round(np.array([0.25, -0.25, 0.75, -0.75, 5.5, -5.5]))
    assert np.array_equal(q, [0.5, 0.0, 1.0, -0.5, 6.0, -5.0])


@examples(150)
@given(alphabets(), st.floats(0.0, 1.0), st.floats(0.05, 20.0), st.floats(0.0, 0.999999))
def test_stochastic_exact_expectation_and_gap(values, frac, scale, u):
    """q in {a, b} (the brute-force neighbours); q = b exactly when u < p = (y - a)/(b - a); so
    E q = a + p (b - a) = y exactly, |eta| <= g and E eta^2 = (y - a)(b - y) <= g^2/4."""
    x = np.array([(values[0] + frac * (values[-1] - values[0])) * scale])
    s = np.array([scale])
    y = float(x[0] / scale)  # the point on the unscaled alphabet (the definition of s V)
    assume(values[0] <= y <= values[-1])
    a, b = brute_neighbours(y, values)
    p = (y - a) / (b - a)
    for uu in {u, p * (1 - 1e-9), min(p * (1 + 1e-9) + 1e-12, 0.999999)}:
        q, clipped = quantize_alphabet(x, s, values, "stochastic", np.array([uu]))
        assert not clipped[0]
        if a < y < b:  # at a level (p = 0 or 1) the level itself is returned
            assert q[0] == scale * (b if uu < p else a), (uu, p)
        else:
            assert q[0] == scale * y
        assert abs(x[0] - q[0]) <= scale * (b - a) * (1 + 1e-12)
    mean = a + p * (b - a)
    assert np.isclose(mean, y, rtol=1e-12, atol=1e-12 * (abs(a) + abs(b)))
    assert (y - a) * (b - y) <= (b - a) ** 2 / 4 * (1 + 1e-12)


def test_stochastic_monte_carlo_unbiased():
    """Seeded Monte Carlo: 200 000 draws of each x; the mean is within 5 standard errors
    (sd <= g/2, so 5 * g/2 / sqrt(n)) of x."""
    A = pt.Alphabet.dint(4, scale=0.3)
    xs = np.array([0.05, 0.2, -0.31, 1.37, -1.79, 0.0, 1.8])
    n = 200_000
    Q, clipped = A.round(np.repeat(xs[:, None], n, axis=1), rounding="stochastic", seed=11)
    assert not clipped.any()
    r, g = A.per_row(xs.size).neighbours(xs[:, None])
    tol = 5 * g[:, 0] / 2 / np.sqrt(n)
    assert np.all(np.abs(Q.mean(axis=1) - xs) <= tol)
    # the empirical variance matches r (g - r) (to 5 % + a small absolute part)
    var = r[:, 0] * (g[:, 0] - r[:, 0])
    assert np.allclose(Q.var(axis=1), var, rtol=0.05, atol=1e-4)


@examples(100)
@given(alphabets(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=10), st.floats(0.05, 20.0))
def test_nearest_gap_bound_holds_and_is_attained(values, fracs, scale):
    A = pt.Alphabet(values, scale=scale)
    x = (values[0] + np.array(fracs) * (values[-1] - values[0])) * scale
    y = x / scale
    assume(np.all((y >= values[0]) & (y <= values[-1])))
    q, clipped = A.round(x)
    assert not clipped.any()
    for xj, yj, qj in zip(x, y, q, strict=True):
        a, b = brute_neighbours(yj, values)
        assert abs(xj - qj) <= scale * (b - a) / 2 * (1 + 1e-12)
    k = int(np.argmax(np.diff(values)))  # the largest gap: its midpoint attains G/2
    mid = (values[k] + values[k + 1]) / 2
    q, _ = A.round(np.array([mid * scale]))
    assert np.isclose(abs(mid * scale - q[0]), scale * A.max_gap / 2, rtol=1e-12)


# -- runs -------------------------------------------------------------------------------------


def _problem(seed=0, n=3, N=10, m=30):
    inst = make_instance(seed, "gaussian", m=m, N=N, n=n)
    return inst.W, inst.X, 0.01 * float(np.mean(np.sum(inst.X**2, axis=0)))


def _run(alg, W, X, lam, grid, rounding, seed=3, **kw):
    if alg == "rtn":
        return pt.rtn(W, grid=grid, rounding=rounding, seed=seed)
    if alg == "gpfq":
        return pt.gpfq(W, X, X, grid=grid, rounding=rounding, seed=seed)
    if alg == "qronos":
        return pt.qronos(W, X, X, lam=lam, grid=grid, rounding=rounding, seed=seed, **kw)
    return getattr(pt, alg)(W, X, lam=lam, grid=grid, rounding=rounding, seed=seed, **kw)


ALGS = ("rtn", "optq", "ldlq", "qronos", "gpfq")


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_uniform_alphabet_reproduces_grid_bit_for_bit(alg, rounding):
    W, X, lam = _problem(1)
    delta = np.array([0.11, 0.07, 0.2])
    grid = pt.Grid(delta, 0.0, lo=-8, hi=7)
    alpha = pt.Alphabet(np.arange(-8.0, 8.0), scale=delta)
    a, b = _run(alg, W, X, lam, grid, rounding), _run(alg, W, X, lam, alpha, rounding)
    for name in ("Q", "eta", "x", "clipped"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.codes + 8, b.codes)  # grid codes k in [-8, 7]; alphabet index k + 8


def test_optq_iteration_and_blocked_agree_on_alphabet():
    W, X, lam = _problem(2)
    A = pt.Alphabet.dint(4).fit(W)
    a = pt.optq(W, X, lam=lam, grid=A, method="iteration")
    b = pt.optq(W, X, lam=lam, grid=A, block_size=3)
    assert np.array_equal(a.codes, b.codes)
    np.testing.assert_allclose(a.Q, b.Q, rtol=0, atol=1e-12)


@pytest.mark.parametrize("alg", ALGS)
@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_certificate_and_bounds_on_alphabet_runs(alg, rounding):
    """The identities (I2-I6) hold for any rounding; every bound that applies holds; B8 and L1 do not
    apply (uniform-grid statements); the run's values lie on the alphabet."""
    W, X, lam = _problem(4, n=4, N=12, m=40)
    A = pt.Alphabet.dint(4).fit(1.6 * W)  # some headroom: most rows do not clip
    r = _run(alg, W, X, lam, A, rounding)
    Xt = (X,) if alg in ("qronos", "gpfq") else ()
    c = pt.certify(r, X, *Xt)
    assert c.holds()
    for b in c.bounds:
        assert b.violations == 0, b.label
        if b.label.startswith(("B8", "L1")):
            assert not np.any(b.applies), b.label
    scale = A.row_scale(4)[:, None]
    on = np.isclose(r.Q[..., None], scale[..., None] * A.values, rtol=0, atol=1e-15).any(axis=-1)
    assert on.all()
    assert np.array_equal(r.Q, scale * A.values[r.codes])


def test_b1_alphabet_bounds_hold_and_local_form_is_sharper():
    W, X, lam = _problem(5, n=4, N=16, m=50)
    A = pt.Alphabet.dint(4).fit(2.0 * W)
    r = pt.optq(W, X, lam=lam, grid=A)
    c = pt.certify(r, X)
    b1, loc = c.bound("B1"), c.bound("B1.local")
    assert np.all(b1.applies) and b1.violations == 0 and loc.violations == 0
    assert np.all(loc.value <= b1.value * (1 + 1e-12))
    # independent: B1 = (G s_i)^2/4 sum_t D_t - lam ||w - q||^2 from the pivots of H
    D = pivots_from_data(X[:, r.order], lam).D
    want = (A.row_scale(4) * A.max_gap) ** 2 / 4 * np.sum(D) - lam * np.sum((W - r.Q) ** 2, axis=1)
    np.testing.assert_allclose(b1.value, want, rtol=1e-10)


def test_bound_not_claimed_where_the_alphabet_clips():
    W, X, lam = _problem(6, n=3, N=10)
    A = pt.Alphabet.dint(4).fit(0.5 * W)  # half the range: W itself clips on every row
    r = pt.optq(W, X, lam=lam, grid=A)
    c = pt.certify(r, X)
    assert np.all(np.asarray(r.clipped).any(axis=1))
    for label in ("B1", "B1.local", "B7"):
        b = c.bound(label)
        assert not np.any(b.applies)
        assert all(rec["holds"] is None for rec in b.records())


def _midpoint_alphabet_weights(X, lam, A: pt.Alphabet, intervals, eps=1e-12):
    """Weights whose OPTQ run on A puts every x_t a hair below the midpoint of the alphabet
    interval intervals[i, t] (built from I2: w_t = x_t + sum_{s<t} L_ts eta_s; natural order)."""
    L = pivots_from_data(X, lam).L
    v, s = A.values, A.row_scale(intervals.shape[0])[:, None]
    a, b = v[intervals], v[intervals + 1]
    x = s * ((a + b) / 2 - eps * (b - a))
    eta = x - s * a
    return x + eta @ np.tril(L, -1).T, s * (b - a)


def test_b1_local_and_b1_attained_on_a_construction():
    """Every x_t just below the midpoint of its interval: B1.local is attained. With every interval
    one of the largest gaps, B1 (largest gap) is attained as well."""
    inst = make_instance(7, "gaussian", m=40, N=12, n=2)
    X, lam = inst.X, 1.0
    A = pt.Alphabet.dint(4, scale=[0.1, 0.3])
    rng = np.random.default_rng(0)
    D = pivots_from_data(X, lam).D
    for pool in (np.arange(A.values.size - 1), np.r_[1:5, 9:13]):  # all intervals / largest gaps only
        idx = rng.choice(pool, size=(2, 12))
        W, g = _midpoint_alphabet_weights(X, lam, A, idx)
        r = pt.optq(W, X, lam=lam, grid=A)
        c = pt.certify(r, X)
        assert not np.asarray(r.clipped).any()
        full = c.identity_lhs / (0.25 * (g**2) @ D)  # (||X e||^2 + lam ||e||^2) / (1/4 sum g_t^2 D_t)
        assert np.all(np.abs(full - 1) <= 1e-9), full
        loc = c.bound("B1.local")
        assert loc.violations == 0 and np.all(loc.ratio >= 1 - 1e-6)
        if pool.size < A.values.size - 1:
            assert np.all(c.bound("B1").ratio >= 1 - 1e-6)


def test_the_local_bound_can_fail():
    """Negative control: the midpoint run judged with gaps half as long violates B1.local."""
    import dataclasses

    inst = make_instance(8, "gaussian", m=30, N=10, n=2)
    A = pt.Alphabet.dint(4, scale=[0.2, 0.2])
    idx = np.random.default_rng(1).choice(np.r_[1:5, 9:13], size=(2, 10))
    W, _ = _midpoint_alphabet_weights(inst.X, 1.0, A, idx)
    r = pt.optq(W, inst.X, lam=1.0, grid=A)
    v = A.values
    finer = pt.Alphabet(np.unique(np.r_[v, (v[:-1] + v[1:]) / 2]), scale=[0.2, 0.2])  # every gap halved
    lying = dataclasses.replace(r, grid=finer)
    c = pt.certify(lying, inst.X)
    assert c.bound("B1.local").violations == 2


def test_determinism_same_seed_same_bits():
    W, X, lam = _problem(9)
    A = pt.Alphabet.dint(3).fit(W)
    a = pt.optq(W, X, lam=lam, grid=A, rounding="stochastic", seed=5)
    b = pt.optq(W, X, lam=lam, grid=A, rounding="stochastic", seed=5)
    c = pt.optq(W, X, lam=lam, grid=A, rounding="stochastic", seed=6)
    assert np.array_equal(a.Q, b.Q) and np.array_equal(a.eta, b.eta)
    assert not np.array_equal(a.Q, c.Q)
    with pytest.raises(ValueError, match="seed"):
        pt.optq(W, X, lam=lam, grid=A, rounding="stochastic")


def test_fit_covers_each_row_exactly():
    W = np.array([[0.3, -1.2, 0.5], [2.0, 0.1, 0.0], [0.0, 0.0, 0.0]])
    A = pt.Alphabet.dint(4).fit(W)
    np.testing.assert_allclose(A.scale, [1.2 / 6, 2.0 / 6, 1.0])
    assert not A.round(W)[1].any()
    B = pt.Alphabet([-1.0, 0.0, 4.0]).fit(W)  # asymmetric: the smallest scale covering both ends
    np.testing.assert_allclose(B.scale, [1.2, 0.5, 1.0])
    assert not B.round(W)[1].any()


# -- torch ------------------------------------------------------------------------------------


def test_torch_rounding_and_runs_match_numpy():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    values = np.array([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0])
    x = rng.uniform(-4, 3, (5, 40))
    s = rng.uniform(0.5, 2.0, (5, 1))
    u = rng.random((5, 40))
    for rounding in ("nearest", "stochastic"):
        qn, cn = quantize_alphabet(x, s, values, rounding, u)
        qt, ct = quantize_alphabet(torch.as_tensor(x), torch.as_tensor(s), torch.as_tensor(values), rounding,
                                   torch.as_tensor(u))
        assert np.array_equal(qt.numpy(), qn) and np.array_equal(ct.numpy(), cn)
    W, X, lam = _problem(10, n=3, N=12, m=40)
    A = pt.Alphabet.dint(4).fit(1.5 * W)
    a = pt.rtn(W, grid=A)
    b = pt.rtn(torch.as_tensor(W), grid=A)
    assert np.array_equal(b.Q.numpy(), a.Q)
    for alg in ("optq", "gpfq"):  # the two sweeps (LDLQ is OPTQ's; Qronos adds a first step)
        Xt = (torch.as_tensor(X),) if alg in ("qronos", "gpfq") else ()
        kw = {} if alg == "gpfq" else {"lam": lam}
        a = getattr(pt, alg)(W, X, *(X,) * len(Xt), grid=A, **kw)
        b = getattr(pt, alg)(torch.as_tensor(W), torch.as_tensor(X), *Xt, grid=A, **kw)
        assert isinstance(b.grid, pt.Alphabet)
        assert np.array_equal(b.codes, a.codes), alg
        np.testing.assert_allclose(b.Q.numpy(), a.Q, rtol=0, atol=1e-9 * float(np.max(A.scale)))
        c = pt.certify(b, torch.as_tensor(X), *Xt)
        assert c.holds() and all(bc.violations == 0 for bc in c.bounds), alg


# -- the sympy check of the proofs --------------------------------------------------------------


def test_proofs_check_alphabet_rejects_wrong_claims():
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    import sympy as sp

    from proofs_check import alphabet

    assert alphabet.nearest_claim(alphabet.G / 2).passed
    assert not alphabet.nearest_claim(alphabet.G / 4).passed
    a, g, th = alphabet.A, alphabet.G, alphabet.TH
    assert alphabet.variance_claim(th * (1 - th) * g**2).passed
    assert not alphabet.variance_claim(g**2 / 4).passed
    assert not alphabet.variance_claim(th * g**2 + 0 * a).passed
    assert sp.Symbol("g", positive=True) == g


@examples(40)
@given(alphabets(max_size=7), st.integers(0, 2**31), st.sampled_from(["nearest", "stochastic"]),
       st.sampled_from(["optq", "ldlq"]))
def test_bounds_hold_on_random_alphabet_runs(values, seed, rounding, alg):
    """Any alphabet, any data: every bound that applies holds; B1.local <= B1 (g(x_t) <= G)."""
    assume(values[0] < 0 < values[-1])
    inst = make_instance(seed % 1000, "gaussian", m=20, N=8, n=3)
    lam = 0.05 * float(np.mean(np.sum(inst.X**2, axis=0)))
    try:
        A = pt.Alphabet(values).fit(2.0 * inst.W)
        r = _run(alg, inst.W, inst.X, lam, A, rounding, seed=seed)
    except ValueError as exc:  # a scale that overflows, or makes s_i G leave R1, is refused up front
        assert ("s_i G" in str(exc) and "R1" in str(exc)) or "overflows" in str(exc), exc
        assume(False)
    c = pt.certify(r, inst.X, full_pivot_check=False)
    assert c.holds()
    for b in c.bounds:
        assert b.violations == 0, b.label
    if rounding == "nearest":
        assert np.all(c.bound("B1.local").value <= c.bound("B1").value * (1 + 1e-12) + 1e-300)


def test_stochastic_mean_error_equals_mean_conditional_variance():
    """B3 on an alphabet: E||Xh(w-q)||^2 = E V with V = sum_t r_t (g_t - r_t) D_t read from the local
    gaps. Monte Carlo over 300 seeds; M = lhs - V is a martingale with Var M <= G^4/16 ||D||^2, so the
    mean of M must lie within 5 standard errors of 0."""
    inst = make_instance(12, "gaussian", m=16, N=6, n=2)
    lam = 0.1 * float(np.mean(np.sum(inst.X**2, axis=0)))
    A = pt.Alphabet([-3.0, -1.0, -0.25, 0.0, 0.5, 2.0, 4.0]).fit(3.0 * inst.W)  # wide: never clips
    Ms = []
    for seed in range(200):
        r = pt.optq(inst.W, inst.X, lam=lam, grid=A, rounding="stochastic", seed=seed)
        assert not np.asarray(r.clipped).any()
        b3 = pt.certify(r, inst.X, full_pivot_check=False).bound("B3")
        Ms.append(b3.extra["lhs"] - b3.empirical)
    M = np.array(Ms)
    D = pivots_from_data(inst.X, lam).D
    sd = (A.row_scale(2) * A.max_gap) ** 2 / 4 * np.linalg.norm(D)
    assert np.all(np.abs(M.mean(axis=0)) <= 5 * sd / np.sqrt(len(M))), (M.mean(axis=0), sd)
    # and the estimate is not degenerate: the errors really vary between seeds
    assert np.all(M.std(axis=0) > 0)


def test_incoherence_processing_uses_the_alphabet_as_given():
    """LDLQ with incoherence: the inner run rounds the transformed weights onto the alphabet (its Q
    lies on s_i V), and the certificate of the mapped-back run holds."""
    inst = make_instance(3, "gaussian", m=30, N=8, n=4)
    A = pt.Alphabet.dint(4, scale=0.3)
    r = pt.ldlq(inst.W, inst.X, lam=1.0, grid=A, incoherence="kron", seed=0)
    assert isinstance(r.inner.grid, pt.Alphabet)
    assert np.array_equal(r.inner.Q, 0.3 * A.values[r.codes])
    assert pt.certify(r, inst.X).holds()
