"""AQAS (pt.aqas): the scaled problem computes the same layer, and the chosen scales minimize the stated
objective over the search grid (checked against an independent brute force)."""

from __future__ import annotations

import numpy as np
import pytest
from brute import rtn_minmax_rows

import ptqtheory as pt
from ptqtheory.tolerances import unit_roundoff


def _act_brute(X: np.ndarray, bits: int) -> np.ndarray:
    K = 2 ** (bits - 1) - 1
    step = np.abs(X).max() / K
    levels = step * np.arange(-K, K + 1)
    return levels[np.argmin(np.abs(X[..., None] - levels), axis=-1)]


def _J(W, X, s, wb, ab):
    return float(np.sum((X @ W.T - _act_brute(X / s, ab) @ rtn_minmax_rows(W * s, wb).T) ** 2))


def _outlier_case(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 12))
    X[:, 3] *= 80.0  # an activation outlier channel (as in LLMs)
    W = rng.standard_normal((6, 12))
    return W, X


def test_scaled_problem_computes_the_same_layer():
    W, X = _outlier_case()
    res = pt.aqas(W, X, w_bits=4, a_bits=8, n_grid=8)
    # X S^-1 (W S)^T == X W^T up to rounding: two scalings and a length-N dot product per entry
    N = W.shape[1]
    allow = (N + 2) * unit_roundoff() * (np.abs(X) @ np.abs(W).T)
    assert np.all(np.abs(res.X @ res.W.T - X @ W.T) <= allow)
    np.testing.assert_allclose(res.W, W * res.scales, rtol=0, atol=0)
    # power-of-two scales: bit-exact
    s = 2.0 ** np.arange(-3, N - 3)
    assert np.array_equal((X / s) @ (W * s).T, X @ W.T)


def test_certificate_of_the_scaled_problem_is_an_ordinary_certificate():
    W, X = _outlier_case(1)
    res = pt.aqas(W, X, w_bits=4, a_bits=8, n_grid=8)
    run = pt.optq(res.W, res.X, lam=pt.Damping.percdamp(0.01), grid=pt.Grid.minmax(res.W, bits=4))
    c = pt.certify(run, res.X)
    assert c.holds() and not c.violations
    # H_s = S^-1 H S^-1, and the scaled error is the original layer's error with weights Q S^-1
    H, Hs = X.T @ X, res.X.T @ res.X
    s = res.scales
    np.testing.assert_allclose(Hs, H / np.outer(s, s), rtol=1e-12)
    np.testing.assert_allclose(res.X @ (res.W - run.Q).T, X @ (W - run.Q / s).T, rtol=1e-9, atol=1e-9)
    # the pivots (squared Cholesky diagonal, any order) scale as D_j / s_j^2 (theory.md §7)
    D, Ds = np.diag(np.linalg.cholesky(H)) ** 2, np.diag(np.linalg.cholesky(Hs)) ** 2
    np.testing.assert_allclose(Ds, D / s ** 2, rtol=1e-9)


@pytest.mark.parametrize("family", ["smoothquant", "awq"])
def test_chosen_scales_minimize_the_objective_over_the_grid(family):
    W, X = _outlier_case(2)
    n = 10
    res = pt.aqas(W, X, w_bits=4, a_bits=4, n_grid=n, family=family)
    # brute force: the candidates written out independently, the objective with enumerated quantizers
    if family == "smoothquant":
        cands = [np.abs(X).max(0) ** a / np.abs(W).max(0) ** (1 - a) for a in np.arange(n + 1) / n]
    else:
        cands = [np.abs(X).mean(0) ** a for a in np.arange(n + 1) / n]
    cands = [c / np.sqrt(c.max() * c.min()) for c in cands]
    Js = np.array([_J(W, X, c, 4, 4) for c in cands])
    J1 = _J(W, X, np.ones(12), 4, 4)
    assert res.objective_unscaled == pytest.approx(J1, rel=1e-9)
    np.testing.assert_allclose(res.objectives, Js, rtol=1e-9)
    assert res.objective == pytest.approx(min(J1, Js.min()), rel=1e-9)
    # on the outlier case scaling helps (strictly), and the returned scales achieve the objective
    assert res.objective < J1
    assert _J(W, X, res.scales, 4, 4) == pytest.approx(res.objective, rel=1e-9)


def test_unscaled_wins_when_nothing_helps():
    # one input channel: every normalized candidate is s = 1
    rng = np.random.default_rng(3)
    X, W = rng.standard_normal((16, 1)), rng.standard_normal((4, 1))
    res = pt.aqas(W, X, n_grid=4)
    assert res.alpha is None and np.all(res.scales == 1.0)


def test_bad_input_is_refused():
    W, X = _outlier_case()
    with pytest.raises(ValueError, match="all-zero columns"):
        X0 = X.copy()
        X0[:, 2] = 0
        pt.aqas(W, X0)
    with pytest.raises(ValueError, match="family"):
        pt.aqas(W, X, family="gptq")
    with pytest.raises(ValueError, match="bits"):
        pt.aqas(W, X, a_bits=1)
    with pytest.raises(ValueError, match="X"):
        pt.aqas(W, X[:, :5])
    with pytest.raises(ValueError, match="n_grid"):
        pt.aqas(W, X, n_grid=0)
