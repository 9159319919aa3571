"""Calibration statistics and damping conventions (THEORY.md notation: H = X^T X + lam I, unnormalized)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ptqtheory as pt


def _data(seed, m=23, N=6):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, N)) * rng.uniform(0.1, 10.0, size=N)
    Xt = X + 0.1 * rng.standard_normal((m, N))
    return X, Xt


def _gptq_hessian(X, batch_sizes, percdamp):
    """GPTQ's add_batch / fasterquant arithmetic, transcribed: H ends as (2/m) X^T X, then damped."""
    N = X.shape[1]
    H = np.zeros((N, N))
    nsamples = 0
    start = 0
    for b in batch_sizes:
        inp = X[start : start + b].T  # GPTQ holds (N, tokens)
        start += b
        H *= nsamples / (nsamples + b)
        nsamples += b
        inp = np.sqrt(2 / nsamples) * inp
        H += inp @ inp.T
    assert start == X.shape[0]
    damp = percdamp * np.mean(np.diag(H))
    return H + damp * np.eye(N)


def _rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), p=st.floats(1e-4, 1.0), m=st.integers(1, 30))
def test_percdamp_matches_gptq(seed, p, m):
    X, _ = _data(seed, m=m, N=5)
    H_gptq = _gptq_hessian(X, [1] * min(m, 3) + ([m - 3] if m > 3 else []), p)
    lam = pt.Damping.percdamp(p).resolve(X.T @ X)
    # our lam by hand: p * mean of the squared column norms
    assert lam == pytest.approx(p * np.sum(X**2) / X.shape[1], rel=1e-13)
    ours = (2 / m) * (X.T @ X + lam * np.eye(5))
    assert _rel(ours, H_gptq) < 1e-12
    assert _rel((2 / m) * pt.hessian(X, pt.Damping.percdamp(p)), H_gptq) < 1e-12


def test_percdamp_hand_case_and_run_records_it():
    X = np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])  # column norms^2: 1, 9, 4 -> mean 14/3
    lam = pt.Damping.percdamp(0.03).resolve(X.T @ X)
    assert lam == pytest.approx(0.03 * 14 / 3, rel=1e-15)
    W = np.array([[0.3, -0.2, 0.7]])
    run = pt.optq(W, X, lam=pt.Damping.percdamp(0.03), grid=pt.Grid(0.1))
    assert run.lam == pytest.approx(0.14, rel=1e-14)
    assert "percdamp" in run.damping


def test_lambda_max_is_alpha_times_top_eigenvalue():
    X = np.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # X^T X = diag(9, 1)
    assert pt.Damping.lambda_max(0.5).resolve(X.T @ X) == pytest.approx(4.5, rel=1e-14)
    X, _ = _data(3, m=40, N=7)
    top = np.linalg.svd(X, compute_uv=False)[0] ** 2  # sigma_max(X)^2 = lambda_max(X^T X)
    assert pt.Damping.lambda_max(0.02).resolve(X.T @ X) == pytest.approx(0.02 * top, rel=1e-12)
    H = pt.hessian(X, pt.Damping.lambda_max(0.02))
    np.testing.assert_allclose(H, X.T @ X + 0.02 * top * np.eye(7), rtol=1e-12, atol=0)


def test_absolute_damping_and_hessian():
    X, _ = _data(5)
    H = pt.hessian(X, 0.7)
    np.testing.assert_allclose(H, X.T @ X + 0.7 * np.eye(6), rtol=1e-14, atol=0)
    np.testing.assert_allclose(pt.hessian(X), X.T @ X, rtol=1e-14, atol=0)
    assert pt.Damping.absolute(0.7).resolve(X.T @ X) == 0.7
    np.testing.assert_allclose(pt.hessian(X, pt.Damping.absolute(0.7)), H, rtol=0, atol=0)
    np.testing.assert_allclose(pt.gram(X), X.T @ X, rtol=1e-14)


@pytest.mark.parametrize("batch_sizes", [[10, 1, 20, 6], [37], [1] * 37])
def test_accumulator_matches_full_statistics(batch_sizes):
    X, Xt = _data(11, m=37, N=5)
    acc = pt.Accumulator(5, with_mismatch=True)
    start = 0
    for b in batch_sizes:
        acc.update(X[start : start + b], Xt[start : start + b])
        start += b
    assert acc.m == 37
    assert _rel(acc.gram_X, X.T @ X) < 1e-12
    assert _rel(acc.gram_Xt, Xt.T @ Xt) < 1e-12
    assert _rel(acc.cross_Xt_X, Xt.T @ X) < 1e-12
    assert _rel(acc.H(0.3), X.T @ X + 0.3 * np.eye(5)) < 1e-12
    Ht, G = acc.Ht_G(0.3)
    assert _rel(Ht, Xt.T @ Xt + 0.3 * np.eye(5)) < 1e-12
    assert _rel(G, Xt.T @ X + 0.3 * np.eye(5)) < 1e-12
    # a Damping convention resolves from X^T X (not from Xt)
    lam = 0.01 * np.sum(X**2) / 5
    assert _rel(acc.H(pt.Damping.percdamp(0.01)), X.T @ X + lam * np.eye(5)) < 1e-12


def test_accumulator_float32_batches_accumulate_in_float64():
    rng = np.random.default_rng(2)
    X32 = (rng.standard_normal((500, 8)) * 1e3 + 7.0).astype(np.float32)
    Xt32 = (X32 + rng.standard_normal((500, 8)).astype(np.float32)).astype(np.float32)
    acc = pt.Accumulator(8, with_mismatch=True)
    for s in range(0, 500, 64):
        acc.update(X32[s : s + 64], Xt32[s : s + 64])
    X64, Xt64 = X32.astype(np.float64), Xt32.astype(np.float64)
    assert acc.gram_X.dtype == np.float64
    # float32 accumulation would be off by ~1e-7 relative here
    assert _rel(acc.gram_X, X64.T @ X64) < 1e-12
    assert _rel(acc.gram_Xt, Xt64.T @ Xt64) < 1e-12
    assert _rel(acc.cross_Xt_X, Xt64.T @ X64) < 1e-12


def test_accumulator_misuse_raises():
    X, Xt = _data(1, m=10, N=4)
    with pytest.raises(ValueError, match="Xt_batch"):
        pt.Accumulator(4).update(X, Xt)
    with pytest.raises(ValueError, match="Xt_batch"):
        pt.Accumulator(4, with_mismatch=True).update(X)
    with pytest.raises(ValueError, match="with_mismatch"):
        pt.Accumulator(4).Ht_G(0.1)
    with pytest.raises(ValueError, match="X_batch"):
        pt.Accumulator(5).update(X)
    with pytest.raises(ValueError, match="Xt_batch"):
        pt.Accumulator(4, with_mismatch=True).update(X, Xt[:7])
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="X_batch"):
        pt.Accumulator(4).update(bad)


@pytest.mark.parametrize(
    "make",
    [
        lambda: pt.Damping.percdamp(-0.01),
        lambda: pt.Damping.percdamp(float("nan")),
        lambda: pt.Damping.percdamp(float("inf")),
        lambda: pt.Damping.lambda_max(-1.0),
        lambda: pt.Damping.absolute(-1e-9),
        lambda: pt.Damping("gptq", 0.01),
    ],
)
def test_invalid_damping_raises(make):
    with pytest.raises(ValueError, match="Damping"):
        make()


def test_invalid_absolute_lam_raises():
    X, _ = _data(0)
    with pytest.raises(ValueError, match="lam"):
        pt.hessian(X, -0.5)
    with pytest.raises(ValueError, match="lam"):
        pt.hessian(X, float("nan"))
    with pytest.raises(TypeError, match="lam"):
        pt.hessian(X, "0.1")
    with pytest.raises(TypeError, match="lam"):
        pt.hessian(X, True)
