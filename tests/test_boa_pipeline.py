"""Method ``boa`` in the block pipeline: q/k/v by ``pt.boa_attention`` (I7), the rest by OPTQ; refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import PADDED_LENGTHS, padded_calibration

import ptqtheory as pt
from ptqtheory import report as rep
from ptqtheory.models import Config, ModelBlocks, capture_inputs, hf, quantize_model
from ptqtheory.models.validate import ValidateError, parse_settings

HEADS = 4


def _bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=HEADS, intermediate_size=64,
                     vocab_size=128, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertModel(cfg).eval()


def _forward(model, batch):
    return model(**batch)


LENGTHS = PADDED_LENGTHS


def _calibration():
    return padded_calibration(LENGTHS)


def _blocks(model):
    return [(f"encoder.layer.{i}", layer) for i, layer in enumerate(model.encoder.layer)]


QKV = ("attention.self.query", "attention.self.key", "attention.self.value")


def test_block0_qkv_equal_boa_attention_on_the_captured_inputs():
    cal = _calibration()
    ours, untouched = _bert(), _bert()
    res = quantize_model(ModelBlocks(ours, _blocks(ours)), cal, _forward, Config("boa", 3))
    # Independently: block 0's inputs from the float model (quantization cannot change them), the
    # sequence lengths from the masks, and the public boa_attention.
    att = untouched.encoder.layer[0].attention.self
    first = "encoder.layer.0.attention.self.query"
    X = capture_inputs(untouched, {first: att.query}, cal, _forward, stop_after=first)[first]
    assert X.shape[0] == sum(map(sum, LENGTHS))
    W = {k: getattr(att, k).weight.detach().double().numpy() for k in ("query", "key", "value")}
    ref = pt.boa_attention(X, W["query"], W["key"], W["value"], HEADS, bits=3,
                           lengths=[n for lens in LENGTHS for n in lens],
                           b_q=att.query.bias.detach().double().numpy(),
                           b_k=att.key.bias.detach().double().numpy(),
                           lam=pt.Damping.percdamp(0.01))
    got = ours.encoder.layer[0].attention.self
    for k, key in zip(("query", "key", "value"), "qkv", strict=True):
        np.testing.assert_array_equal(getattr(got, k).weight.detach().double().numpy(),
                                      ref.Q[key].astype(np.float32).astype(np.float64))
    # and BoA did not give OPTQ's codes on the stacked group
    optq = pt.optq(np.concatenate(list(W.values())), X, lam=pt.Damping.percdamp(0.01),
                   grid=pt.Grid.minmax(np.concatenate(list(W.values())), bits=3)).Q
    assert not np.array_equal(np.asarray(ref.Q["q"]), optq[:32])
    # The records: I7 held on every q/k/v layer, I2 on the others, with the report's keys.
    by_layer = {lr.layer: lr for lr in res.layers}
    assert len(by_layer) == 12
    keys = {
        "identity", "rows", "identity_holds", "identity_max_gap", "identity_rows_resolved", "pivots_hold",
        "clipped_rows", "err_l2_mean", "err_inf_max", "bounds", "skipped_bounds"}
    for b in range(2):
        for name in QKV:
            s = by_layer[f"encoder.layer.{b}.{name}"].summary
            assert keys <= set(s)
            assert s["identity"] == "I7" and s["identity_holds"] and s["pivots_hold"]
            assert s["rows"] == 32 and s["bounds"] == {}
        assert by_layer[f"encoder.layer.{b}.intermediate.dense"].summary["identity"] == "I2"
    # err_l2_mean of block 0's value: ||X (w - q)|| per row, by hand
    E = W["value"] - got.value.weight.detach().double().numpy()
    want = np.mean(np.linalg.norm(X @ E.T, axis=0))
    got_err = by_layer["encoder.layer.0.attention.self.value"].summary["err_l2_mean"]
    assert got_err == pytest.approx(want, rel=1e-6)
    setting = {"config": "boa-3b", "method": "boa", "bits": 3, "group_size": None, "seconds": 0.0,
               "layers": [lr.to_dict() for lr in res.layers]}
    assert rep.summarize([setting], 1e-6)["violations"] == 0
    assert rep.failures([setting]) == []


def test_an_i7_failure_counts_as_an_identity_failure():
    cal = _calibration()
    model = _bert()
    res = quantize_model(ModelBlocks(model, _blocks(model)), cal, _forward, Config("boa", 4))
    layers = [lr.to_dict() for lr in res.layers]
    layers[0]["summary"]["identity_holds"] = False
    setting = {"config": "boa-4b", "method": "boa", "bits": 4, "group_size": None, "seconds": 0.0,
               "layers": layers}
    assert rep.summarize([setting], 1e-6)["identity_failures"] == 1
    assert any("identity I7 failed" in line for line in rep.failures([setting]))


def test_torch_backend_gives_the_numpy_qkv():
    cal = _calibration()
    a, b = _bert(), _bert()
    quantize_model(ModelBlocks(a, _blocks(a)), cal, _forward, Config("boa", 4))
    quantize_model(ModelBlocks(b, _blocks(b)), cal, _forward, Config("boa", 4), device="cpu",
                   dtype=torch.float64, stream=True)
    for name in QKV:
        assert torch.equal(a.encoder.layer[0].get_submodule(name).weight,
                           b.encoder.layer[0].get_submodule(name).weight), name


def _llama_calibration():
    """Two batches of the tiny Llama's vocabulary with right and left padding (the real tokens of a
    left-padded sequence sit at positions > 0: the pipeline must take each token's rotary embedding
    from the model, not restart the positions)."""
    g = torch.Generator().manual_seed(2)
    out = []
    for pads in (((0, 0), (0, 5)), ((3, 0), (0, 0))):  # (left, right) padding per sequence
        ids = torch.randint(0, 128, (len(pads), 16), generator=g)
        mask = torch.ones(len(pads), 16, dtype=torch.long)
        for i, (left, right) in enumerate(pads):
            mask[i, :left] = 0
            mask[i, 16 - right:] = 0
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


LLAMA_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def test_llama_gqa_rope_block0_equals_boa_attention_and_every_row_is_certified():
    """Method boa on a tiny Llama (4 query heads, 2 key/value heads, RoPE, causal): block 0's q/k/v are
    pt.boa_attention on the captured inputs with n_kv_heads=2, causal=True and the rotary embeddings
    computed here from the model's rotary module at the positions the model gives the real tokens; every
    row of every layer is certified (I7 on q/k/v, I2 elsewhere)."""
    from tiny_models import llama

    cal = _llama_calibration()
    ours, untouched = llama(2), llama(2)
    res = quantize_model(ModelBlocks(ours, hf.decoder_blocks(ours)), cal, hf.forward, Config("boa", 3))
    att = untouched.model.layers[0].self_attn
    first = "model.layers.0.self_attn.q_proj"
    X = capture_inputs(untouched, {first: att.q_proj}, cal, hf.forward, stop_after=first)[first]
    cos_rows, sin_rows, lengths = [], [], []
    for batch in cal:
        mask = batch["attention_mask"].bool()
        pos = torch.arange(16)[None]
        with torch.no_grad():
            cos, sin = untouched.model.rotary_emb(torch.zeros(1, 16, 32), position_ids=pos)
        cos_rows.append(cos.expand(mask.shape[0], -1, -1)[mask].double().numpy())
        sin_rows.append(sin.expand(mask.shape[0], -1, -1)[mask].double().numpy())
        lengths += mask.sum(dim=1).tolist()
    W = {k: getattr(att, k).weight.detach().double().numpy() for k in ("q_proj", "k_proj", "v_proj")}
    ref = pt.boa_attention(X, W["q_proj"], W["k_proj"], W["v_proj"], 4, bits=3, lengths=lengths, causal=True,
                           n_kv_heads=2, cos=np.concatenate(cos_rows), sin=np.concatenate(sin_rows),
                           lam=pt.Damping.percdamp(0.01))
    got = ours.model.layers[0].self_attn
    for k, key in zip(("q_proj", "k_proj", "v_proj"), "qkv", strict=True):
        np.testing.assert_array_equal(getattr(got, k).weight.detach().double().numpy(),
                                      ref.Q[key].astype(np.float32).astype(np.float64))
    assert len(ref.runs["k"]) == 2 and len(ref.runs["q"]) == 4
    by_layer = {lr.layer: lr for lr in res.layers}
    assert len(by_layer) == 14
    for b in range(2):
        for name in LLAMA_QKV:
            s = by_layer[f"model.layers.{b}.{name}"].summary
            assert s["identity"] == "I7" and s["identity_holds"] and s["pivots_hold"], (b, name)
            assert s["rows"] == (32 if name.endswith("q_proj") else 16)
            assert s["boa"]["heads"] == (4 if name.endswith("q_proj") else 2)
        for name in ("self_attn.o_proj", "mlp.gate_proj", "mlp.down_proj"):
            s = by_layer[f"model.layers.{b}.{name}"].summary
            assert s["identity"] == "I2" and s["identity_holds"]
    setting = {"config": "boa-3b", "method": "boa", "bits": 3, "group_size": None, "seconds": 0.0,
               "layers": [lr.to_dict() for lr in res.layers]}
    assert rep.summarize([setting], 1e-6)["violations"] == 0
    assert rep.failures([setting]) == []


def _refused_model(kind):
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    if kind == "sliding window":
        return MistralForCausalLM(MistralConfig(sliding_window=8, **small)).eval()
    if kind == "query/key normalization":
        return Qwen3ForCausalLM(Qwen3Config(head_dim=8, **small)).eval()
    model = LlamaForCausalLM(LlamaConfig(**small)).eval()
    model.model.layers[0].self_attn.is_causal = False
    return model


@pytest.mark.parametrize("kind", ["sliding window", "query/key normalization", "not causal"])
def test_unsupported_decoder_attention_is_refused_before_any_work(kind):
    model = _refused_model(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cal, _ = hf.calibration_batches(None, tokens=32, random_tokens=32, vocab_size=128, seq_len=16, batch_size=2)
    with pytest.raises(ValueError, match=f"{kind}.*use optq or magr-optq") as info:
        quantize_model(ModelBlocks(model, hf.decoder_blocks(model)), cal, hf.forward, Config("boa", 4))
    assert "\n" not in str(info.value)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_an_attention_the_reference_does_not_reproduce_is_refused(monkeypatch):
    """The safety net: a Llama whose attention rotates with the other sign (sin -> -sin, a layout the
    static checks cannot see) passes boa_attention_module, but the reference forward no longer
    reproduces its attention output, and block 0's q/k/v group is refused with one line."""
    from tiny_models import llama
    from transformers.models.llama import modeling_llama as ml

    real = ml.apply_rotary_pos_emb
    monkeypatch.setattr(ml, "apply_rotary_pos_emb",
                        lambda q, k, cos, sin, *a, **kw: real(q, k, cos, -sin, *a, **kw))
    model = llama(1)
    with pytest.raises(ValueError, match=r"does not reproduce the attention .*relative error") as info:
        quantize_model(ModelBlocks(model, hf.decoder_blocks(model)), _llama_calibration(), hf.forward,
                       Config("boa", 4))
    assert "\n" not in str(info.value)


def test_validate_refuses_groups():
    with pytest.raises(ValidateError, match="no groups"):
        parse_settings("boa-4b-g128")
    with pytest.raises(ValueError, match="group_size=16: method 'boa'"):
        Config("boa", 4, group_size=16)


def test_quantize_command_refuses_boa(tmp_path):
    from ptqtheory.models.quantize import QuantizeError, run_quantize

    with pytest.raises(QuantizeError, match="--method boa"):
        run_quantize(tmp_path / "no-model", "boa", 4, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_lengths_and_biases_give_the_models_own_attention():
    """What the pipeline hands boa_attention (the captured rows, the per-sequence lengths from the masks,
    q/k/v biases, the head count) reproduces the BERT block's own attention on the real tokens: the
    factors BoA builds are the model's."""
    cal = _calibration()
    model = _bert()
    att = model.encoder.layer[0].attention.self
    first = "encoder.layer.0.attention.self.query"
    X = capture_inputs(model, {first: att.query}, cal, _forward, stop_after=first)[first]
    outs = []
    handle = att.register_forward_hook(
        lambda _m, _a, out: outs.append(out[0] if isinstance(out, tuple) else out))
    with torch.no_grad():
        for batch in cal:
            model(**batch)
    handle.remove()
    ctx = np.concatenate([o[b["attention_mask"].bool()].double().numpy()
                          for o, b in zip(outs, cal, strict=True)])
    W = [getattr(att, k).weight.detach().double().numpy() for k in ("query", "key", "value")]
    bias = [getattr(att, k).bias.detach().double().numpy() for k in ("query", "key", "value")]
    O, _ = pt.attention_heads(X, *W, HEADS, lengths=[n for lens in LENGTHS for n in lens], b_q=bias[0],
                              b_k=bias[1], b_v=bias[2])
    np.testing.assert_allclose(O, ctx, rtol=1e-4, atol=1e-5)


def test_boa_with_activation_quantization_is_refused():
    from ptqtheory.models import Config

    with pytest.raises(ValueError, match="act_bits"):
        Config("boa", 4, act_bits=8)
