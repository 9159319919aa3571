"""BoA on decoder attention: grouped-query heads, rotary position embeddings (RoPE), causal masks.

Each statement is checked against an independent computation:

* the reference forward pass (``attention_heads`` with ``n_kv_heads``, ``cos``, ``sin``, ``causal``)
  against Hugging Face's own ``LlamaAttention`` on a tiny seeded Llama (GQA, RoPE, padding left and
  right), float64;
* ``apply_rope`` and ``rope_average`` against explicit rotation matrices :math:`R_t`;
* with GQA and no RoPE, on one sequence without a mask (where the logit objective is exactly
  Kronecker), the certificate's objective equals the brute-force sum over the query heads of the
  logit (query, key) or attention-output (value) errors;
* I7 with GQA and RoPE, its objective recomputed from the formula (explicit rotations, the Gram
  matrices summed over the group), never from the run's factors;
* the value's objective is the exact attention-output error also with RoPE, causal masks and several
  sequences.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ptqtheory as pt
from ptqtheory.boa import apply_rope, attention_heads, boa_attention, rope_average


def _rope_tables(lengths, dh, base=10000.0, scale=1.0):
    """cos, sin per token, positions restarting at 0 in every sequence (the rotate_half convention)."""
    inv = 1.0 / base ** (np.arange(0, dh, 2) / dh)
    pos = np.concatenate([np.arange(n) for n in lengths]).astype(float)
    ang = np.outer(pos, inv)
    ang = np.concatenate([ang, ang], axis=1)
    return scale * np.cos(ang), scale * np.sin(ang)


def _R(c, s):
    """The explicit rotation matrix of one token: y -> y * c + rotate_half(y) * s."""
    d = c.shape[0]
    h = d // 2
    J = np.zeros((d, d))
    J[:h, h:], J[h:, :h] = -np.eye(h), np.eye(h)
    return np.diag(c) + np.diag(s) @ J


def _instance(seed, d=10, heads=4, kv=2, dh=4, lengths=(7, 5)):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((sum(lengths), d))
    Wq = rng.standard_normal((heads * dh, d))
    Wk = rng.standard_normal((kv * dh, d))
    Wv = rng.standard_normal((kv * dh, d))
    return X, Wq, Wk, Wv


# -- the reference forward pass against Hugging Face's -----------------------------------------------


def test_reference_forward_matches_hf_llama_attention():
    """attention_heads with GQA (4 query heads, 2 key/value heads), the model's cos/sin per token and
    causal masks per sequence reproduces LlamaAttention's output before o_proj on the real tokens, with
    right and left padding (left padding: the real tokens' positions do not start at 0)."""
    from tiny_models import llama

    model = llama(1).double()
    # the default (sdpa) attention: eager computes its softmax in float32
    att = model.model.layers[0].self_attn
    ids = torch.randint(0, 128, (3, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, 8:] = 0  # right padding
    mask[2, :3] = 0  # left padding
    seen = {}

    def pre(_m, args, kwargs):
        seen["x"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        seen["pe"] = kwargs["position_embeddings"]

    h1 = att.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = att.o_proj.register_forward_pre_hook(lambda _m, a: seen.__setitem__("o", a[0]))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask, use_cache=False)
    h1.remove()
    h2.remove()
    keep = mask.bool()
    X = seen["x"][keep].numpy()
    cos, sin = (t.expand(3, 12, -1)[keep].numpy() for t in seen["pe"])
    W = [getattr(att, n).weight.detach().numpy() for n in ("q_proj", "k_proj", "v_proj")]
    O, _ = attention_heads(X, *W, 4, lengths=[12, 8, 9], causal=True, n_kv_heads=2, cos=cos, sin=sin)
    ref = seen["o"][keep].numpy()
    np.testing.assert_allclose(O, ref, rtol=1e-12, atol=1e-12)
    # negative controls: without RoPE, or with every query head reading key/value head 0, it differs
    O_plain, _ = attention_heads(X, *W, 4, lengths=[12, 8, 9], causal=True, n_kv_heads=2)
    assert np.max(np.abs(O_plain - ref)) > 1e-3
    Wk0 = np.concatenate([W[1][:8], W[1][:8]])
    O_kv0, _ = attention_heads(X, W[0], Wk0, W[2], 4, lengths=[12, 8, 9], causal=True, n_kv_heads=2,
                               cos=cos, sin=sin)
    assert np.max(np.abs(O_kv0 - ref)) > 1e-3


def test_apply_rope_and_rope_average_against_explicit_rotations():
    rng = np.random.default_rng(0)
    dh = 6
    cos, sin = _rope_tables([5, 4], dh, base=7.0, scale=1.3)
    Y = rng.standard_normal((9, dh))
    Yr = apply_rope(Y, cos, sin)
    for t in range(9):
        np.testing.assert_allclose(Yr[t], _R(cos[t], sin[t]) @ Y[t], rtol=1e-13, atol=1e-14)
    B = rng.standard_normal((11, dh))
    G = B.T @ B
    want = np.mean([_R(cos[t], sin[t]).T @ G @ _R(cos[t], sin[t]) for t in range(9)], axis=0)
    np.testing.assert_allclose(rope_average(G, cos, sin), want, rtol=1e-12, atol=1e-12)
    assert np.max(np.abs(rope_average(G, cos, sin) - G)) > 1e-2  # the rotation is not a no-op


# -- GQA: the factors give the exact sums over the query heads --------------------------------------


def test_gqa_factors_give_the_exact_sum_of_the_per_query_head_objectives():
    """One sequence, no mask, no RoPE: the logit error of query head h (keys fixed) and the summed logit
    errors of the query heads a key head serves (queries fixed) are exactly Kronecker; the certificate's
    undamped objective err_out^2 equals them, computed here by brute force from the logits."""
    X, Wq, Wk, Wv = _instance(1, lengths=(9,))
    bq, bk = np.random.default_rng(5).standard_normal((2, 16))
    res = boa_attention(X, Wq, Wk, Wv, 4, bits=2, n_kv_heads=2, b_q=bq, b_k=bk[:8], lam=0.1)
    assert res.holds()
    Qf, Kf = X @ Wq.T + bq, X @ Wk.T + bk[:8]
    Qq, Kq = X @ res.Q["q"].T + bq, X @ res.Q["k"].T + bk[:8]
    g = 2
    for h in range(4):
        c, j = slice(4 * h, 4 * h + 4), slice(4 * (h // g), 4 * (h // g) + 4)
        dS = (Qf[:, c] - Qq[:, c]) @ Kf[:, j].T
        assert res.certificates["q"][h].err_out ** 2 == pytest.approx(np.sum(dS ** 2), rel=1e-10)
    for j in range(2):
        kc = slice(4 * j, 4 * j + 4)
        dK = Kf[:, kc] - Kq[:, kc]
        total = sum(np.sum((Qf[:, 4 * h:4 * h + 4] @ dK.T) ** 2) for h in (g * j, g * j + 1))
        assert res.certificates["k"][j].err_out ** 2 == pytest.approx(total, rel=1e-10)
        # one query head alone is not the objective (the sum is)
        one = np.sum((Qf[:, 4 * g * j:4 * g * j + 4] @ (Kf[:, kc] - Kq[:, kc]).T) ** 2)
        assert abs(res.certificates["k"][j].err_out ** 2 - one) > 1e-6 * total


def test_value_objective_is_the_summed_attention_output_error_with_rope_and_masks():
    """The value head's objective is exact whatever the logits: the sum over the query heads it serves
    of their attention-output errors, computed by the reference forward with the quantized W_v."""
    lengths = [7, 5]
    X, Wq, Wk, Wv = _instance(2, lengths=lengths)
    cos, sin = _rope_tables(lengths, 4)
    kw = dict(lengths=lengths, causal=True, n_kv_heads=2, cos=cos, sin=sin)
    res = boa_attention(X, Wq, Wk, Wv, 4, bits=2, lam=0.05, **kw)
    O, _ = attention_heads(X, Wq, Wk, Wv, 4, **kw)
    Oq, _ = attention_heads(X, Wq, Wk, res.Q["v"], 4, **kw)
    for j in range(2):
        err = sum(np.sum((O[:, 4 * h:4 * h + 4] - Oq[:, 4 * h:4 * h + 4]) ** 2) for h in (2 * j, 2 * j + 1))
        assert res.certificates["v"][j].err_out ** 2 == pytest.approx(err, rel=1e-10)
    assert res.holds()


# -- I7 with GQA and RoPE, objective from the formula -----------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_identity_i7_with_gqa_and_rope_from_the_formula(seed):
    """tr(H_out E H_in E^T) with H_out = mean_t R_t^T (sum of the group's rotated Gram matrices) R_t +
    lam_out I and H_in = X^T X + lam_in I, formed here with explicit rotation matrices, equals both
    sides of each head's certificate (lhs from the run's data, rhs = sum eta^2 D_out D_in)."""
    lengths = [6, 8, 3]
    X, Wq, Wk, Wv = _instance(seed, lengths=lengths)
    cos, sin = _rope_tables(lengths, 4)
    res = boa_attention(X, Wq, Wk, Wv, 4, bits=3, lengths=lengths, causal=True, n_kv_heads=2, cos=cos, sin=sin,
                        lam=pt.Damping.percdamp(0.01), order_out="decreasing_norm")
    assert res.holds()
    T = X.shape[0]
    Rs = [_R(cos[t], sin[t]) for t in range(T)]
    # the rotated projections, token by token: R_t (W_i x_t) for every head i
    rot = {name: np.stack([np.concatenate([Rs[t] @ (M[4 * i:4 * i + 4] @ X[t]) for i in range(M.shape[0] // 4)])
                           for t in range(T)]) for name, M in (("q", Wq), ("k", Wk))}

    def gram(name, i):
        Y = rot[name][:, 4 * i:4 * i + 4]
        return Y.T @ Y

    for name, M, heads in (("q", Wq, 4), ("k", Wk, 2)):
        for i in range(heads):
            G = gram("k", i // 2) if name == "q" else gram("q", 2 * i) + gram("q", 2 * i + 1)
            run, cert = res.runs[name][i], res.certificates[name][i]
            H_out = np.mean([R.T @ G @ R for R in Rs], axis=0) + run.lam_out * np.eye(4)
            H_in = X.T @ X + run.lam_in * np.eye(X.shape[1])
            E = M[4 * i:4 * i + 4] - res.Q[name][4 * i:4 * i + 4]
            want = np.trace(H_out @ E @ H_in @ E.T)
            assert cert.lhs == pytest.approx(want, rel=1e-9)
            assert cert.rhs == pytest.approx(want, rel=1e-9)
            # the run's row damping is 1% of the mean diagonal of the rotary-averaged Gram
            gram_out = H_out - run.lam_out * np.eye(4)
            assert run.lam_out == pytest.approx(0.01 * np.mean(np.diag(gram_out)), rel=1e-9)


def test_rope_changes_the_row_factors():
    """The rotation enters the factors: the same instance without cos/sin quantizes q or k differently."""
    lengths = [12, 10]
    X, Wq, Wk, Wv = _instance(7, lengths=lengths)
    cos, sin = _rope_tables(lengths, 4, base=3.0)
    a = boa_attention(X, Wq, Wk, Wv, 4, bits=2, lengths=lengths, causal=True, n_kv_heads=2, cos=cos, sin=sin)
    b = boa_attention(X, Wq, Wk, Wv, 4, bits=2, lengths=lengths, causal=True, n_kv_heads=2)
    assert not (np.array_equal(a.Q["q"], b.Q["q"]) and np.array_equal(a.Q["k"], b.Q["k"]))


@pytest.mark.parametrize("kwargs, match", [
    ({"n_kv_heads": 3}, "n_kv_heads"),
    ({"n_kv_heads": 0}, "n_kv_heads"),
    ({"cos": np.ones((12, 4))}, "cos and sin"),
    ({"cos": np.ones((11, 4)), "sin": np.ones((11, 4))}, "cos"),
    ({"cos": np.full((12, 4), np.nan), "sin": np.ones((12, 4))}, "cos"),
])
def test_bad_decoder_input_is_refused(kwargs, match):
    X, Wq, Wk, Wv = _instance(0)
    args = {"n_kv_heads": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        boa_attention(X, Wq, Wk, Wv, 4, **args)
    with pytest.raises(ValueError, match="W_k"):
        boa_attention(X, Wq, Wk, Wv, 4)  # GQA shapes without n_kv_heads


def test_rope_helpers_refuse_mismatched_embeddings():
    """apply_rope and rope_average check their inputs like boa_attention does, before any work."""
    from ptqtheory.boa import apply_rope, rope_average

    with pytest.raises(ValueError, match="cos must be"):
        apply_rope(np.ones((3, 4)), np.ones((3, 5)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="needs cos and sin"):
        apply_rope(np.ones((3, 4)), None, None)
    with pytest.raises(ValueError, match="sin must be"):
        rope_average(np.eye(4), np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="even head_dim"):
        rope_average(np.eye(3), np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="cos must be"):
        rope_average(np.eye(4), np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="at least one token"):
        rope_average(np.eye(4), np.ones((0, 4)), np.ones((0, 4)))
    with pytest.raises(ValueError, match="G must be"):
        rope_average(np.ones((4, 3)), np.ones((2, 4)), np.ones((2, 4)))
