"""BoA (pt.boa, pt.boa_attention, I7), each statement checked against an independent computation:

* I7 against the loss evaluated from the data (never from the run's factors), on random instances;
* BoA equals OPTQ run on vec(W) with the full Kronecker data X_out (x) X_in (one long row, the
  project's OPTQ, a different code path and factorization);
* with a diagonal H_out (no coupling) BoA is OPTQ row by row, bit for bit;
* the row factor is used: a coupled H_out changes the result, and a wrong factor breaks I7;
* the attention objectives: the value's objective is the head's attention-output error;
* input validation and determinism.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ptqtheory as pt
from ptqtheory.boa import attention_heads, boa, boa_attention, certify_boa


def _instance(seed, n=4, N=6, m=15, p=8, scale_out=1.0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, N))
    X = rng.standard_normal((m, N)) @ np.diag(rng.uniform(0.2, 3.0, N))
    Xo = scale_out * rng.standard_normal((p, n)) + rng.standard_normal((1, n))
    return W, X, Xo


def _loss(W, Q, X, Xo, lam_in, lam_out):
    """tr(H_out E H_in E^T) with the formed factors (an independent evaluation)."""
    E = W - Q
    H_in = X.T @ X + lam_in * np.eye(W.shape[1])
    H_out = (np.eye(W.shape[0]) if Xo is None else Xo.T @ Xo) + lam_out * np.eye(W.shape[0])
    return float(np.trace(H_out @ E @ H_in @ E.T))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 5), N=st.integers(1, 7), bits=st.integers(1, 4),
       lam_in=st.sampled_from([0.0, 0.05, 1.0]), lam_out=st.sampled_from([0.0, 0.3]),
       order_in=st.sampled_from(["natural", "decreasing_norm"]),
       order_out=st.sampled_from(["natural", "decreasing_norm"]))
def test_identity_holds_on_random_instances(seed, n, N, bits, lam_in, lam_out, order_in, order_out):
    W, X, Xo = _instance(seed, n, N, m=N + 5, p=n + 3)
    run = boa(W, X, Xo, lam_in=lam_in, lam_out=lam_out, grid=pt.Grid.minmax(W, bits=bits),
              order_in=order_in, order_out=order_out)
    cert = certify_boa(run, X, Xo)
    assert cert.holds(), cert
    # the certificate's left side is the loss: compare with the formed factors (float, relative)
    ref = _loss(W, run.Q, X, Xo, run.lam_in, run.lam_out)
    assert abs(cert.lhs - ref) <= 1e-10 * max(ref, 1e-300) + 1e-12
    # and the right side is the identity's sum of eta^2 D_out D_in, assembled here from pt.pivots
    Hi = X[:, run.order_in].T @ X[:, run.order_in] + run.lam_in * np.eye(N)
    Ho = Xo[:, run.order_out].T @ Xo[:, run.order_out] + run.lam_out * np.eye(n)
    Di, Do = pt.pivots(Hi).D, pt.pivots(Ho).D
    eta = run.eta[run.order_out][:, run.order_in]
    rhs = float(np.sum(eta**2 * np.outer(Do, Di)))
    assert abs(rhs - ref) <= 1e-8 * max(ref, 1e-300) + 1e-12


def test_negative_control_wrong_pivots_break_the_identity():
    """The check can fail: the same run with the row pivots dropped (as if H_out = I) is rejected."""
    W, X, Xo = _instance(3, scale_out=2.0)
    run = boa(W, X, Xo, lam_in=0.1, lam_out=0.1, grid=pt.Grid.minmax(W, bits=2))
    import dataclasses

    wrong = dataclasses.replace(run, D_out=np.ones_like(run.D_out))
    assert certify_boa(run, X, Xo).holds()
    assert not certify_boa(wrong, X, Xo).holds()


@pytest.mark.parametrize("seed", range(4))
def test_boa_is_optq_on_the_vectorized_weights(seed):
    """BoA = OPTQ on vec(W) (row-major) for H_out (x) H_in, i.e. on the data [X_out; sqrt(lam_o) I]
    (x) [X_in; sqrt(lam_i) I]: run pt.optq on that one long row and compare."""
    n, N = 3, 5
    W, X, Xo = _instance(seed, n, N, m=9, p=5)
    lam_i, lam_o = 0.2, 0.1
    grid = pt.Grid.minmax(W, bits=2)
    run = boa(W, X, Xo, lam_in=lam_i, lam_out=lam_o, grid=grid)
    Xh_i = np.vstack([X, np.sqrt(lam_i) * np.eye(N)])
    Xh_o = np.vstack([Xo, np.sqrt(lam_o) * np.eye(n)])
    big = np.kron(Xh_o, Xh_i)
    delta, zero, lo, hi = grid.expand(n, N)
    g_vec = pt.Grid(delta.reshape(1, -1), zero.reshape(1, -1), lo.reshape(1, -1), hi.reshape(1, -1))
    ref = pt.optq(W.reshape(1, -1), big, lam=0.0, grid=g_vec, method="iteration")
    np.testing.assert_allclose(run.Q.reshape(1, -1), ref.Q, atol=1e-9)
    np.testing.assert_allclose(run.eta.reshape(1, -1), ref.eta, atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_uncoupled_rows_are_optq_row_by_row_bit_for_bit(seed):
    """A diagonal H_out (X_out diagonal, lam_out 0) has L_out = I: every row is pt.optq on that row."""
    n, N = 5, 9
    W, X, _ = _instance(seed, n, N, m=20)
    Xo = np.diag(np.random.default_rng(seed).uniform(0.5, 2.0, n))
    grid = pt.Grid.minmax(W, bits=3)
    run = boa(W, X, Xo, lam_in=pt.Damping.percdamp(0.01), grid=grid, block_size=4)
    for i in range(n):
        r = pt.optq(W[i], X, lam=pt.Damping.percdamp(0.01), grid=pt.Grid.minmax(W[i:i + 1], bits=3),
                    block_size=4)
        assert np.array_equal(run.Q[i], r.Q) and np.array_equal(run.eta[i], r.eta)
    # and H_out = I (no X_out) is pt.optq on the whole matrix
    run_i = boa(W, X, None, lam_in=pt.Damping.percdamp(0.01), grid=grid, block_size=4)
    ref = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=grid, block_size=4)
    assert np.array_equal(run_i.Q, ref.Q)


def test_row_coupling_changes_the_result_and_lowers_the_kronecker_loss_on_average():
    """With a coupled H_out the row feedback is active: BoA differs from OPTQ row by row, and on
    average over instances it has the lower Kronecker loss (what the feedback is for)."""
    wins, diffs = 0, 0
    for seed in range(12):
        W, X, Xo = _instance(seed, n=6, N=8, m=20, p=3, scale_out=0.3)  # strongly correlated rows
        grid = pt.Grid.minmax(W, bits=2)
        b = boa(W, X, Xo, lam_in=0.01, lam_out=0.01, grid=grid)
        o = pt.optq(W, X, lam=0.01, grid=grid)
        lb, lo_ = _loss(W, b.Q, X, Xo, 0.01, 0.01), _loss(W, o.Q, X, Xo, 0.01, 0.01)
        diffs += not np.array_equal(b.Q, o.Q)
        wins += lb < lo_
    assert diffs >= 10 and wins >= 8


def test_value_objective_is_the_attention_output_error():
    """For the value, ||A X (W - Q)^T||_F summed over sequences is the head's attention-output error
    computed by attention_heads with the quantized W_v (independent forward pass)."""
    rng = np.random.default_rng(0)
    d, heads, dh = 8, 2, 3
    lengths = [5, 7]
    X = rng.standard_normal((sum(lengths), d))
    Wq, Wk, Wv = (rng.standard_normal((heads * dh, d)) for _ in range(3))
    res = boa_attention(X, Wq, Wk, Wv, heads, bits=2, lengths=lengths, lam=0.0)
    O, _ = attention_heads(X, Wq, Wk, Wv, heads, lengths)
    Oq, _ = attention_heads(X, Wq, Wk, res.Q["v"], heads, lengths)
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        np.testing.assert_allclose(res.certificates["v"][h].err_out, np.linalg.norm(O[:, c] - Oq[:, c]),
                                   rtol=1e-10)
    assert res.holds()


def test_heads_swept_together_equal_heads_swept_alone():
    """boa_attention sweeps the query heads together (shared H_in): each head's result is pt.boa on that
    head alone, with its own row factor K_h."""
    rng = np.random.default_rng(4)
    d, heads, dh, T = 7, 3, 4, 16
    X = rng.standard_normal((T, d))
    Wq, Wk, Wv = (rng.standard_normal((heads * dh, d)) for _ in range(3))
    damp = pt.Damping.percdamp(0.01)
    res = boa_attention(X, Wq, Wk, Wv, heads, bits=2, lam=damp, order_out="decreasing_norm")
    K = X @ Wk.T
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        alone = boa(Wq[c], X, K[:, c], lam_in=damp, lam_out=damp, grid=pt.Grid.minmax(Wq[c], bits=2),
                    order_out="decreasing_norm")
        np.testing.assert_allclose(res.Q["q"][c], alone.Q, atol=1e-12)
        np.testing.assert_array_equal(res.runs["q"][h].order_out, alone.order_out)
        assert res.certificates["q"][h].holds()


def test_query_objective_is_the_logit_error():
    """For the query, ||K_h (W - Q) X^T||_F is the error of the head's logits Q_h K_h^T (with K fixed)."""
    rng = np.random.default_rng(1)
    d, heads, dh, T = 6, 2, 3, 9
    X = rng.standard_normal((T, d))
    Wq, Wk, Wv = (rng.standard_normal((heads * dh, d)) for _ in range(3))
    bq, bk = rng.standard_normal(heads * dh), rng.standard_normal(heads * dh)
    res = boa_attention(X, Wq, Wk, Wv, heads, bits=2, b_q=bq, b_k=bk, causal=True)
    K = X @ Wk.T + bk
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        S = (X @ Wq[c].T + bq[c]) @ K[:, c].T
        Sq = (X @ res.Q["q"][c].T + bq[c]) @ K[:, c].T
        np.testing.assert_allclose(res.certificates["q"][h].err_out, np.linalg.norm(S - Sq), rtol=1e-10)


def test_attention_heads_matches_a_direct_softmax():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((4, 3))
    Wq, Wk, Wv = (rng.standard_normal((2, 3)) for _ in range(3))
    O, A = attention_heads(X, Wq, Wk, Wv, 1, causal=True)
    S = (X @ Wq.T) @ (X @ Wk.T).T / np.sqrt(2)
    for i in range(4):
        p = np.exp(S[i, :i + 1] - S[i, :i + 1].max())
        p /= p.sum()
        np.testing.assert_allclose(O[i], p @ (X @ Wv.T)[:i + 1], rtol=1e-12)
        np.testing.assert_allclose(A[0][0][i, :i + 1], p, rtol=1e-12)


def test_determinism():
    W, X, Xo = _instance(5)
    g = pt.Grid.minmax(W, bits=3)
    a = boa(W, X, Xo, lam_in=0.1, lam_out=0.1, grid=g, order_in="decreasing_norm", order_out="decreasing_norm")
    b = boa(W, X, Xo, lam_in=0.1, lam_out=0.1, grid=g, order_in="decreasing_norm", order_out="decreasing_norm")
    assert np.array_equal(a.Q, b.Q) and np.array_equal(a.eta, b.eta)


@pytest.mark.parametrize("kwargs, match", [
    ({"grid": None}, "grid"),
    ({"lam_out": 0.5, "X_out": None}, "lam_out"),
    ({"X_out": np.ones((3, 2))}, "X_out"),
    ({"X_out": np.full((3, 4), np.nan)}, "X_out"),
    ({"order_out": "min_pivot"}, "order_out"),
    ({"order_in": "random"}, "order_in"),
    ({"X_in": None}, "X_in"),
    ({"X_in": np.ones((3, 5))}, "X"),
    ({"block_size": 0}, "block_size"),
])
def test_bad_input_is_refused(kwargs, match):
    W, X, Xo = _instance(0)
    args = {"W": W, "X_in": X, "X_out": Xo, "lam_in": 0.1, "lam_out": 0.1, "grid": pt.Grid.minmax(W, bits=2)}
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        boa(**args)


def test_singular_row_factor_is_refused():
    W, X, _ = _instance(0)
    with pytest.raises(pt.SingularHessianError):
        boa(W, X, np.zeros((3, 4)), lam_in=0.1, lam_out=0.0, grid=pt.Grid.minmax(W, bits=2))


def test_front_end_validation():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 4))
    W = rng.standard_normal((4, 4))
    with pytest.raises(ValueError, match="n_heads"):
        boa_attention(X, W, W, W, 3)
    with pytest.raises(ValueError, match="lengths"):
        boa_attention(X, W, W, W, 2, lengths=[2, 2])
    with pytest.raises(ValueError, match="W_k"):
        boa_attention(X, W, W[:, :3], W, 2)
    with pytest.raises(TypeError, match="BoARun"):
        certify_boa("not a run", X)


def test_benchmark_runs_and_reproduces_the_models_attention(tmp_path):
    """benchmarks/boa_vs_optq.py end to end on a few tokens of MiniLM's block 0: its reference forward
    pass (attention_heads) reproduces the model's own attention context (captured from transformers),
    every I7 certificate holds, and the JSON has one row per block and bit width."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "boa_vs_optq.py"
    spec = importlib.util.spec_from_file_location("bench_boa_vs_optq", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--tokens", "60", "--heldout-tokens", "40", "--bits", "3", "--blocks", "1",
                     "--out", str(tmp_path)]) == 0
    out = json.loads((tmp_path / "boa_vs_optq_minilm.json").read_text())
    assert out["complete"] and out["forward_check_rel"] < 1e-5
    (row,) = out["rows"]
    assert row["I7_holds"] and row["I7_heads_certified"] == 36
    assert row["logit_q_boa"] > 0 and row["logit_q_optq"] > 0
