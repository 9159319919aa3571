"""OWQ (pt.owq): kept columns, the I2 certificate, the restricted bounds, input checks, parity.

Every expected value comes from an independent computation: the pivots and the factor L from a
Cholesky factorization written here, the sensitivity from loops, the tight case from the midpoint
construction of docs/theory.md (B1), effective bits by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

import ptqtheory as pt
from ptqtheory.models.pipeline import Config, run_setting


def _problem(seed=0, m=40, n=4, N=10, loud=(3, 7)):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, N))
    for j, s in zip(loud, (9.0, 5.0), strict=False):
        X[:, j] *= s
    W = rng.standard_normal((n, N))
    return W, X


def _factor(X, lam, perm):
    """Pivots D and unit lower L of H = X^T X + lam I in the order perm (H^{-1} = C C^T, C lower)."""
    Xp = X[:, perm]
    H = Xp.T @ Xp + lam * np.eye(len(perm))
    C = np.linalg.cholesky(np.linalg.inv(H))
    return np.diag(C) ** -2, C / np.diag(C)[None, :]


def _rtn_minmax(W, bits):
    """Per-row min-max round to nearest, written out (GPTQ's find_params)."""
    maxq = 2**bits - 1
    out = np.empty_like(W)
    for i, w in enumerate(W):
        lo, hi = min(w.min(), 0.0), max(w.max(), 0.0)
        d = (hi - lo) / maxq
        z = np.floor(-lo / d + 0.5)
        out[i] = d * (np.clip(np.floor(w / d + z + 0.5), 0, maxq) - z)
    return out


def test_kept_columns_are_the_updated_weights():
    W, X = _problem()
    lam = 0.5
    r = pt.owq(W, X, lam=lam, grid=pt.Grid.minmax(W, bits=3), keep=3)
    assert isinstance(r, pt.OWQRun) and r.algorithm == "owq" and r.keep == 3
    K = np.flatnonzero(r.kept)
    assert np.all(r.eta[:, K] == 0) and np.array_equal(r.Q[:, K], r.x[:, K])
    # independently: x_K = w_K - sum over quantized s of eta_s L_{K,s}, kept columns last in the order
    perm = np.asarray(r.order)
    nq = len(perm) - 3
    assert set(perm[nq:]) == set(K)
    _, L = _factor(X, lam, perm)
    eta_p = r.eta[:, perm]
    xK = W[:, perm[nq:]] - eta_p[:, :nq] @ L[nq:, :nq].T
    np.testing.assert_allclose(r.Q[:, perm[nq:]], xK, rtol=1e-10, atol=1e-12)
    # not rounded: the kept values are off the grid the others use
    delta = pt.Grid.minmax(W[:, ~r.kept], bits=3).delta
    codes = r.Q[:, K] / delta[:, None]
    assert np.max(np.abs(codes - np.rint(codes))) > 1e-3


def test_identity_sums_over_quantized_columns_only():
    W, X = _problem(1)
    lam = 0.2
    r = pt.owq(W, X, lam=lam, grid=pt.Grid.minmax(W, bits=2), keep=2, order="decreasing_norm")
    D, _ = _factor(X, lam, np.asarray(r.order))
    E = W - r.Q
    lhs = np.sum((E @ X.T) ** 2, axis=1) + lam * np.sum(E**2, axis=1)
    quantized = ~r.kept[np.asarray(r.order)]
    rhs = (r.eta[:, r.order][:, quantized] ** 2) @ D[quantized]
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10)
    c = pt.certify(r, X)
    assert c.identity == "I2" and c.holds()
    np.testing.assert_allclose(c.identity_rhs, rhs, rtol=1e-10)


def test_restricted_b1_value_and_hypotheses():
    W, X = _problem(2)
    lam = 0.3
    r = pt.owq(W, X, lam=lam, grid=pt.Grid.minmax(W, bits=3), keep=4)
    c = pt.certify(r, X)
    b1 = c.bound("B1")
    perm = np.asarray(r.order)
    D, _ = _factor(X, lam, perm)
    q = ~r.kept[perm]
    delta = r.grid.expand(*W.shape)[0][:, perm]
    expected = 0.25 * (delta[:, q] ** 2) @ D[q] - lam * np.sum((W - r.Q) ** 2, axis=1)
    np.testing.assert_allclose(b1.value, expected, rtol=1e-10)
    assert "restricted" in b1.reference and not b1.violations
    assert {h.name for h in b1.hypotheses} == {"nearest rounding", "no clip"}
    # the unrestricted sum would be larger by the kept columns' terms
    assert np.all(0.25 * (delta**2) @ D - lam * np.sum((W - r.Q) ** 2, axis=1) > b1.value)
    for label in ("B1.data", "B2", "B7", "B7.drift", "B7.lam"):
        assert not c.bound(label).violations, label
    # B2 restricted: the quantized pivots summed, against B2 on X_S (full column rank: k = |S|, the
    # data form sum_S (||X_t||^2 + lam))
    b2 = c.bound("B2")
    Xs = X[:, perm[q]]
    np.testing.assert_allclose(b2.empirical, np.sum(D[q]), rtol=1e-10)
    np.testing.assert_allclose(b2.value, np.sum(Xs**2) + lam * Xs.shape[1], rtol=1e-10)


def test_restricted_b1_is_attained_at_midpoints():
    """The midpoint construction (docs/theory.md B1) on the quantized columns: every x_t a midpoint."""
    rng = np.random.default_rng(3)
    m, N, keep, lam, d = 30, 8, 2, 0.4, 0.25
    X = rng.standard_normal((m, N)) * np.linspace(1.0, 3.0, N)
    top = np.argsort(-np.sum(X**2, axis=0))[:keep]  # "diag" keeps the loudest inputs, loudest first
    perm = np.concatenate([[j for j in range(N) if j not in top], top])
    _, L = _factor(X, lam, perm)
    nq = N - keep
    xi = d * (rng.integers(-3, 3, size=N) + 0.5)
    eta_bar = np.where(np.arange(N) < nq, -d / 2, 0.0)
    w_p = xi + (L - np.eye(N)) @ eta_bar
    w = np.empty(N)
    w[perm] = w_p
    r = pt.owq(w, X, lam=lam, grid=pt.Grid(d), keep=keep, sensitivity="diag")
    assert np.array_equal(np.asarray(r.order), perm)
    b1 = pt.certify(r, X).bound("B1")
    assert not b1.violations
    assert b1.ratio[0] == pytest.approx(1.0, abs=1e-9)


def test_keep_zero_is_optq_bit_for_bit():
    W, X = _problem(4)
    for kw in ({}, {"order": "decreasing_norm"}, {"method": "iteration"}, {"block_size": 3}):
        g = pt.Grid.minmax(W, bits=3)
        a = pt.owq(W, X, lam=pt.Damping.percdamp(0.01), grid=g, keep=0, **kw)
        b = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=g, **kw)
        assert np.array_equal(a.Q, b.Q) and np.array_equal(a.eta, b.eta), kw
    g = pt.Grid.minmax(W, bits=3, group_size=4)
    a, b = pt.owq(W, X, lam=0.1, grid=g, keep=0), pt.optq(W, X, lam=0.1, grid=g)
    assert np.array_equal(a.Q, b.Q)


def test_keep_all_columns_gives_zero_error():
    W, X = _problem(5)
    r = pt.owq(W, X, lam=0.1, grid=pt.Grid.minmax(W, bits=2), keep=W.shape[1])
    assert np.array_equal(r.Q, W) and np.all(r.eta == 0)
    assert pt.certify(r, X).holds()


def test_groups_end_where_the_kept_columns_begin():
    W, X = _problem(6, N=11)
    r = pt.owq(W, X, lam=0.1, grid=pt.Grid.minmax(W, bits=3, group_size=4), keep=3)
    assert pt.certify(r, X).holds()
    perm = np.asarray(r.order)
    delta = r.grid.expand(*W.shape)[0][:, perm]
    # quantized positions 0..7: two groups of 4, each refitted from its own columns
    assert len({tuple(delta[:, t]) for t in range(0, 4)}) == 1
    assert len({tuple(delta[:, t]) for t in range(4, 8)}) == 1


def test_sensitivity_matches_brute_force():
    W, X = _problem(7)
    rtn = _rtn_minmax(W, 3)
    brute = np.array([sum(X[i, j] ** 2 for i in range(X.shape[0])) * sum((W[i, j] - rtn[i, j]) ** 2
                                                                          for i in range(W.shape[0]))
                      for j in range(W.shape[1])])
    s = pt.owq_sensitivity(W, X, pt.Grid.minmax(W, bits=3))
    np.testing.assert_allclose(s, brute, rtol=1e-12)
    r = pt.owq(W, X, lam=0.1, grid=pt.Grid.minmax(W, bits=3), keep=3)
    assert set(np.flatnonzero(r.kept)) == set(np.argsort(-brute)[:3])
    assert list(np.asarray(r.order)[-3:]) == list(np.argsort(-brute)[:3])  # most sensitive first
    np.testing.assert_allclose(pt.owq_sensitivity(W, X, pt.Grid.minmax(W, bits=3), "diag"),
                               np.sum(X**2, axis=0), rtol=1e-12)


def test_grid_is_refitted_on_the_quantized_columns():
    W, X = _problem(8)
    W[:, 3] *= 20  # a loud input with a large weight: kept, and no longer stretches the grid
    r = pt.owq(W, X, lam=0.1, grid=pt.Grid.minmax(W, bits=4), keep=1)
    assert r.kept[3]
    expected = pt.Grid.minmax(np.delete(W, 3, axis=1), bits=4).delta
    np.testing.assert_allclose(r.grid.expand(*W.shape)[0][:, 0], expected, rtol=0)


def test_effective_bits_and_keep_for_bits():
    assert pt.effective_bits(384, 4, 4) == 4 + 4 * 12 / 384
    assert pt.effective_bits(100, 0, 3) == 3.0
    assert pt.effective_bits(128, 2, 3, index_bits=32 / 64) == 3 + 2 * (13 + 0.5) / 128
    assert pt.keep_for_bits(384, 4, 4.1) == 4  # round(3.2) = 3, then even
    assert pt.keep_for_bits(4096, 3, 3.01) == 4  # round(3.15) = 3 -> 4
    assert pt.keep_for_bits(384, 4, 4.1, even=False) == 3
    assert pt.keep_for_bits(10, 4, 16) == 10
    W, X = _problem(9)
    r = pt.owq(W, X, lam=0.1, grid=pt.Grid.minmax(W, bits=3), keep=2)
    assert r.bits == 3 and r.effective_bits == 3 + 2 * 13 / 10


@pytest.mark.parametrize("kwargs, exc, words", [
    ({"keep": -1}, ValueError, "keep"),
    ({"keep": 11}, ValueError, "keep"),
    ({"keep": 1.0}, TypeError, "keep"),
    ({"keep": True}, TypeError, "keep"),
    ({"grid": None}, TypeError, "grid"),
    ({"sensitivity": "hessian"}, ValueError, "sensitivity"),
    ({"order": "min_pivot"}, ValueError, "min_pivot"),
    ({"method": "paper"}, ValueError, "method"),
    ({"block_size": 0}, ValueError, "block_size"),
])
def test_bad_arguments_raise_before_work(kwargs, exc, words):
    W, X = _problem()
    args = {"lam": 0.1, "grid": pt.Grid.minmax(W, bits=3), "keep": 2, **kwargs}
    with pytest.raises(exc, match=words):
        pt.owq(W, X, **args)


@pytest.mark.parametrize("call, words", [
    (lambda: pt.keep_for_bits(100, 4, 3.5), "target_bits"),
    (lambda: pt.keep_for_bits(100, 4, 17), "target_bits"),
    (lambda: pt.effective_bits(10, 11, 4), "keep"),
    (lambda: pt.effective_bits(10, 1, 4, index_bits=-1), "index_bits"),
])
def test_bad_bit_arguments(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_same_seed_same_bits():
    W, X = _problem(10)
    g = pt.Grid.minmax(W, bits=3)
    a = pt.owq(W, X, lam=0.1, grid=g, keep=2, order="random", seed=7)
    b = pt.owq(W, X, lam=0.1, grid=g, keep=2, order="random", seed=7)
    assert np.array_equal(a.Q, b.Q) and np.array_equal(a.order, b.order)
    with pytest.raises(ValueError):
        pt.owq(W, X, lam=0.1, grid=g, keep=2, order="random")


def test_torch_matches_numpy_and_certifies():
    torch = pytest.importorskip("torch")
    W, X = _problem(11)
    g = pt.Grid.minmax(W, bits=3)
    a = pt.owq(W, X, lam=0.2, grid=g, keep=3)
    b = pt.owq(torch.tensor(W), torch.tensor(X), lam=0.2, grid=g, keep=3)
    assert b.backend == "torch" and np.array_equal(b.kept, a.kept)
    np.testing.assert_allclose(b.Q.numpy(), a.Q, rtol=0, atol=1e-12)
    c = pt.certify(b, torch.tensor(X))
    assert c.holds() and not c.violations
    with pytest.raises(ValueError, match="method"):
        pt.owq(torch.tensor(W), torch.tensor(X), lam=0.2, grid=g, keep=3, method="iteration")


def test_torch_statistics_input():
    """A TorchAccumulator (the pipeline's streamed path): the score reads the diagonal of X^T X."""
    torch = pytest.importorskip("torch")
    from ptqtheory.torch_backend import TorchAccumulator

    W, X = _problem(13)
    acc = TorchAccumulator(X.shape[1], torch.device("cpu"))
    for part in np.array_split(X, 3):
        acc.update(torch.tensor(part))
    g = pt.Grid.minmax(W, bits=3)
    a = pt.owq(W, X, lam=0.2, grid=g, keep=2)
    b = pt.owq(torch.tensor(W), acc, lam=0.2, grid=g, keep=2)
    assert np.array_equal(b.kept, a.kept)
    np.testing.assert_allclose(b.Q.numpy(), a.Q, rtol=0, atol=1e-12)
    assert pt.certify(b, [torch.tensor(X)]).holds()


def test_pipeline_method_keeps_the_default_columns():
    rng = np.random.default_rng(12)
    W, X = rng.standard_normal((6, 40)), rng.standard_normal((80, 40))
    run = run_setting(Config("owq", 4), W, None, X, pt.Damping.percdamp(0.01), seed=0)
    assert run.algorithm == "owq" and run.keep == pt.keep_for_bits(40, 4, 4.1) == 0
    W, X = rng.standard_normal((6, 384)), rng.standard_normal((500, 384))
    run = run_setting(Config("owq", 4), W, None, X, pt.Damping.percdamp(0.01), seed=0)
    assert run.keep == 4 and pt.certify(run, X).holds()


def test_proof_negative_control():
    """The wrong variants fail the checks: kept weights stored as the original w (not the updated x), the
    identity with the pivots of H_SS, the midpoint sum with 1/2 for 1/4."""
    import sympy as sp

    from proofs_check import owq as check

    assert not check.identity_claim(kept="original").passed
    assert not check.pivot_claim(restricted=True).passed
    assert not check.midpoint_claim(sp.Rational(1, 2)).passed
