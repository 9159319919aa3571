"""THEORY.md T6: in exact rational arithmetic, A2, A3 and A4 satisfy I1-I5 with zero error.

The same reference code runs on object arrays of ``sympy.Rational`` (ptqtheory/_linalg.py sends the
solves to sympy). Data: N <= 6, rationals with small numerators and denominators, lam a rational
square (so that [X; sqrt(lam) I] is rational). Rational data make exact rounding ties common; exact
arithmetic resolves them half up, as the specification says.
"""

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ptqtheory as pt

Rat = sympy.Rational


def rational_matrix(draw, rows, cols, den_max=6, num_max=12):
    out = np.empty((rows, cols), dtype=object)
    for i in range(rows):
        for j in range(cols):
            out[i, j] = Rat(draw(st.integers(-num_max, num_max)), draw(st.integers(1, den_max)))
    return out


@st.composite
def exact_cases(draw):
    N = draw(st.integers(1, 6))
    m = draw(st.integers(1, 6))
    n = draw(st.integers(1, 2))
    W = rational_matrix(draw, n, N)
    X = rational_matrix(draw, m, N)
    Xt = rational_matrix(draw, m, N)
    root = Rat(draw(st.integers(0, 3)), draw(st.integers(1, 3)))
    delta = Rat(draw(st.integers(1, 5)), draw(st.integers(1, 4)))
    return W, X, Xt, root**2, delta


def _definite(X, lam) -> bool:
    H = sympy.Matrix(X.tolist()).T * sympy.Matrix(X.tolist()) + lam * sympy.eye(X.shape[1])
    return H.det() != 0


def _assert_exactly_zero(c: pt.Certificate):
    assert all(g == 0 for g in c.identity_gap), c.identity_gap
    assert all(a == 0 for a in c.identity_atol)
    if c.structure_residual is not None:
        assert all(r == 0 for r in c.structure_residual)
    p = c.pivot_check
    assert p.gap_projection == 0 and p.gap_inverse == 0 and p.logdet_gap == 0 and p.bounds_hold
    assert p.holds(0.0)


EXACT = settings(max_examples=60)


@EXACT
@given(exact_cases())
def test_A2_paper_iteration_exact(case):
    W, X, _, lam, delta = case
    if not _definite(X, lam):
        with pytest.raises(pt.SingularHessianError):
            pt.optq(W, X, lam=lam, grid=pt.Grid(delta), method="iteration")
        return
    r = pt.optq(W, X, lam=lam, grid=pt.Grid(delta), method="iteration")
    assert r.precision == "exact" and isinstance(r.Q[0, 0], sympy.Rational)
    c = pt.certify(r, X)
    assert c.identity == "I2"
    _assert_exactly_zero(c)


@EXACT
@given(exact_cases())
def test_A3_ldlq_exact_equals_A2(case):
    W, X, _, lam, delta = case
    assume(_definite(X, lam))
    r3 = pt.ldlq(W, X, lam=lam, grid=pt.Grid(delta))
    r2 = pt.optq(W, X, lam=lam, grid=pt.Grid(delta), method="iteration")
    assert np.array_equal(r3.Q, r2.Q) and np.array_equal(r3.eta, r2.eta)
    _assert_exactly_zero(pt.certify(r3, X))


@EXACT
@given(exact_cases(), st.sampled_from(["paper", "ls"]))
def test_A4_qronos_exact(case, variant):
    W, X, Xt, lam, delta = case
    assume(_definite(Xt, lam))
    r = pt.qronos(W, X, Xt, lam=lam, grid=pt.Grid(delta), variant=variant, method="iteration")
    c = pt.certify(r, X, Xt)
    assert c.identity == ("I5" if variant == "paper" else "I4")
    _assert_exactly_zero(c)
    if variant == "paper":
        same = pt.qronos(W, X, X, lam=lam, grid=pt.Grid(delta), method="iteration") if \
            _definite(X, lam) else None
        if same is not None:  # A4 with Xt = X is OPTQ, exactly
            ref = pt.optq(W, X, lam=lam, grid=pt.Grid(delta), method="iteration")
            assert np.array_equal(same.Q, ref.Q)


@EXACT
@given(exact_cases())
def test_float64_reference_agrees_with_exact_run_away_from_ties(case):
    """The float64 paper iteration picks the exact run's grid points wherever no x_t lies within
    1e-9 of a rounding boundary (near a boundary both answers are right to float precision)."""
    W, X, _, lam, delta = case
    assume(_definite(X, lam))
    exact = pt.optq(W, X, lam=lam, grid=pt.Grid(delta), method="iteration")
    s = np.asarray(exact.x / delta, dtype=float) + 0.5
    assume(np.min(np.abs(s - np.round(s))) >= 1e-9)
    f = pt.optq(np.asarray(W, float), np.asarray(X, float), lam=float(lam),
                grid=pt.Grid(float(delta)), method="iteration")
    assert np.array_equal(f.codes, np.asarray(exact.codes, dtype=float).astype(np.int64))


def test_exact_mode_rejects_mixed_and_stochastic_inputs():
    W = np.array([[Rat(1, 2), Rat(1, 3)]], dtype=object)
    X = np.array([[Rat(1), Rat(2)], [Rat(3), Rat(1)]], dtype=object)
    with pytest.raises(ValueError, match="exact"):
        pt.optq(W, np.asarray(X, float), grid=pt.Grid(Rat(1, 4)), method="iteration")
    with pytest.raises(ValueError, match="nearest"):
        pt.optq(W, X, grid=pt.Grid(Rat(1, 4)), rounding="stochastic", seed=0, method="iteration")
    with pytest.raises(ValueError, match="square"):
        pt.optq(W, X, lam=Rat(2), grid=pt.Grid(Rat(1, 4)), method="iteration")
