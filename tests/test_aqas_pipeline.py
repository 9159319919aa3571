"""AQAS as a W4A8 setting of the block pipeline (``Config.aqas``, suffix ``-aqas``): the activation hook
computes Q_a(x S^-1) Q_s^T, the first group's weights and the quantized layer's output equal an
independent recomputation of the scaled problem, every row is certified, the recorded objectives are
never worse than the unscaled ones (and J(1) equals a hand-written objective); names and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brute import rtn_minmax_rows
from tiny_models import llama, padded_calibration

import ptqtheory as pt
from ptqtheory import report as rep
from ptqtheory.models import Config, ModelBlocks, capture_inputs, hf, quantize_model
from ptqtheory.models.validate import ValidateError, parse_settings
from ptqtheory.tolerances import unit_roundoff


def _act_token(X: np.ndarray, bits: int) -> np.ndarray:
    """Per-token symmetric INT quantizer written out: step max|x|/K per row, rint, times the step."""
    K = 2 ** (bits - 1) - 1
    step = np.abs(X).max(axis=-1, keepdims=True) / K
    safe = np.where(step > 0, step, 1.0)
    return np.where(step > 0, np.rint(X / safe) * step, 0.0)


def test_hook_computes_the_scaled_quantized_product():
    from ptqtheory.models.pipeline import _activation_hooks

    rng = np.random.default_rng(0)
    lin = torch.nn.Linear(6, 3).double()
    block = torch.nn.Sequential(lin)
    (handle, hook), = _activation_hooks(block, ["0"], 4, "token")
    s = np.array([0.5, 2.0, 1.0, 8.0, 0.25, 3.0])
    hook.scales = torch.from_numpy(s)
    x = rng.standard_normal((2, 5, 6)) * np.array([1, 1, 1, 40, 1, 1])  # an outlier channel
    with torch.no_grad():
        got = block(torch.from_numpy(x)).numpy()
    Q = lin.weight.detach().numpy()
    Xq = _act_token(x.reshape(-1, 6) / s, 4)
    b = lin.bias.detach().numpy()
    want = (Xq @ Q.T + b).reshape(2, 5, 3)
    allow = 8 * unit_roundoff() * (np.abs(Xq) @ np.abs(Q).T + np.abs(b)).reshape(2, 5, 3)
    assert np.all(np.abs(got - want) <= allow)
    # not the unscaled product: the scaling matters
    assert not np.allclose(got, (_act_token(x.reshape(-1, 6), 4) @ Q.T).reshape(2, 5, 3)
                           + lin.bias.detach().numpy(), atol=1e-6)
    handle.remove()
    with torch.no_grad():
        np.testing.assert_allclose(block(torch.from_numpy(x)).numpy(), x @ Q.T + lin.bias.detach().numpy(),
                                   rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------------
# Whole models: the tiny Llama and a tiny BERT (float64, so the pipeline and the recomputation agree bit
# for bit on the first group)


def _bert(seed: int = 0):
    from transformers import BertConfig, BertModel

    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                     vocab_size=128, max_position_embeddings=64)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return BertModel(cfg).eval().double()


def _bert_forward(model, batch):
    return model(**batch)


def _bert_calibration():
    return padded_calibration()


def _case(kind: str):
    """(fresh model, untouched twin, blocks, calibration, forward, block-0 first group, prefix)."""
    if kind == "llama":
        a, b = llama(2).double(), llama(2).double()
        return a, b, hf.decoder_blocks(a), hf.decoder_blocks, llama_cal(), hf.forward, \
            ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], "model.layers.0"
    a, b = _bert(), _bert()

    def blocks(m):
        return [(f"encoder.layer.{i}", layer) for i, layer in enumerate(m.encoder.layer)]
    return a, b, blocks(a), blocks, _bert_calibration(), _bert_forward, \
        ["attention.self.query", "attention.self.key", "attention.self.value"], "encoder.layer.0"


def llama_cal():
    from tiny_models import calibration

    return calibration()


@pytest.mark.parametrize("kind", ["llama", "bert"])
@pytest.mark.parametrize("method", ["optq", "qronos"])
def test_first_group_and_its_output_equal_an_independent_recomputation(kind, method):
    ours, untouched, blocks, _, cal, forward, group, prefix = _case(kind)
    lam = pt.Damping.percdamp(0.01)
    cfg = Config(method, 4, act_bits=8, aqas=True)
    res = quantize_model(ModelBlocks(ours, blocks), cal, forward, cfg, lam=lam)
    names = [f"{prefix}.{g}" for g in group]
    fm = dict(untouched.named_modules())
    # Block 0's first group reads the float prefix's output (nothing before it is quantized).
    X0 = capture_inputs(untouched, {names[0]: fm[names[0]]}, cal, forward, stop_after=names[0])[names[0]]
    W = np.concatenate([fm[n].weight.detach().numpy() for n in names])
    a = pt.aqas(W, X0, w_bits=4, a_bits=8, n_grid=10, a_granularity="token")
    s = a.scales
    by_layer = {lr.layer: lr.summary for lr in res.layers}
    rec = by_layer[names[0]]["aqas"]
    assert rec["alpha"] == a.alpha and rec["objective_group"] == pytest.approx(a.objective, rel=1e-12)
    Ws, Xs = W * s, X0 / s
    Xts = _act_token(Xs, 8)
    grid = pt.Grid.minmax(Ws, bits=4)
    Q = pt.optq(Ws, Xts, lam=lam, grid=grid).Q if method == "optq" else pt.qronos(Ws, Xs, Xts, lam=lam,
                                                                                    grid=grid).Q
    om = dict(ours.named_modules())
    start = 0
    for n in names:
        rows = om[n].weight.shape[0]
        np.testing.assert_array_equal(om[n].weight.detach().numpy(), Q[start:start + rows])
        start += rows
    # The quantized model's first layer computes Q_a(x S^-1) Q_s^T + b on the real tokens.
    outs: list[torch.Tensor] = []
    h = om[names[0]].register_forward_hook(lambda _m, _a, y: outs.append(y.detach()))
    with torch.no_grad():
        for batch in cal:
            forward(ours, batch)
    h.remove()
    y = torch.cat([o[bt["attention_mask"].bool()] if "attention_mask" in bt else o.reshape(-1, o.shape[-1])
                   for o, bt in zip(outs, cal, strict=True)]).numpy()
    n0 = om[names[0]].weight.shape[0]
    bias = om[names[0]].bias
    want = Xts @ Q[:n0].T + (0.0 if bias is None else bias.detach().numpy())
    allow = (W.shape[1] + 2) * unit_roundoff() * (np.abs(Xts) @ np.abs(Q[:n0]).T + 1.0)
    assert np.all(np.abs(y - want) <= allow)


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_every_row_certified_and_the_objective_never_worse(kind):
    ours, untouched, blocks, _, cal, forward, group, prefix = _case(kind)
    cfg = Config("qronos", 4, act_bits=4, aqas=True)  # 4-bit activations: the scales matter
    res = quantize_model(ModelBlocks(ours, blocks), cal, forward, cfg)
    assert res.layers and all("aqas" in lr.summary for lr in res.layers)
    chosen = 0
    for lr in res.layers:
        sm, aq = lr.summary, lr.summary["aqas"]
        assert sm["identity_holds"] and sm["pivots_hold"]
        assert all(b["violations"] == 0 for b in sm["bounds"].values())
        assert aq["objective_group"] <= aq["objective_unscaled_group"]
        chosen += aq["alpha"] is not None
        if aq["alpha"] is None:
            assert aq["scales_min"] == aq["scales_max"] == 1.0
    assert chosen > 0  # the search does choose scales on these models
    setting = {"config": cfg.name, "method": "qronos", "bits": 4, "group_size": None, "seconds": 0.0,
               "layers": [lr.to_dict() for lr in res.layers]}
    assert rep.failures([setting]) == []
    # J(1) of the first group, written out: per-token Q_a of the inputs, RTN on the rows' min-max grids
    names = [f"{prefix}.{g}" for g in group]
    fm = dict(untouched.named_modules())
    X0 = capture_inputs(untouched, {names[0]: fm[names[0]]}, cal, forward, stop_after=names[0])[names[0]]
    W = np.concatenate([fm[n].weight.detach().numpy() for n in names])
    J1 = np.sum((X0 @ W.T - _act_token(X0, 4) @ rtn_minmax_rows(W, 4).T) ** 2)
    rec = {lr.layer: lr.summary["aqas"] for lr in res.layers}
    assert rec[names[0]]["objective_unscaled_group"] == pytest.approx(J1, rel=1e-9)
    n0 = fm[names[0]].weight.shape[0]
    J1_first = np.sum((X0 @ W[:n0].T - _act_token(X0, 4) @ rtn_minmax_rows(W[:n0], 4).T) ** 2)
    assert rec[names[0]]["objective_unscaled"] == pytest.approx(J1_first, rel=1e-9)


def test_a_dead_input_channel_keeps_the_identity_scales():
    """An input channel that is zero on every token has no defined scale: that group keeps s = 1 and says
    why; the other groups still search."""
    model = _bert()
    with torch.no_grad():  # block 0's q/k/v read the embeddings' LayerNorm: channel 3 becomes 0
        model.embeddings.LayerNorm.weight[3] = 0.0
        model.embeddings.LayerNorm.bias[3] = 0.0
    blocks = [(f"encoder.layer.{i}", layer) for i, layer in enumerate(model.encoder.layer)]
    res = quantize_model(ModelBlocks(model, blocks), _bert_calibration(), _bert_forward,
                         Config("optq", 4, act_bits=4, aqas=True))
    rec = {lr.layer: lr.summary for lr in res.layers}
    q0 = rec["encoder.layer.0.attention.self.query"]
    assert q0["aqas"]["fallback"] == "1 all-zero input channels: identity scales"
    assert q0["aqas"]["alpha"] is None and q0["identity_holds"]
    assert q0["aqas"]["objective_group"] == q0["aqas"]["objective_unscaled_group"] > 0
    others = [s for name, s in rec.items() if not name.startswith("encoder.layer.0.attention.self")]
    assert others and all(s["aqas"]["fallback"] is None for s in others)


def test_names_round_trip_and_bad_combinations_are_refused():
    cfgs = parse_settings("optq-4b-a8-aqas,qronos-4b-a8t-aqas,optq-3b-g128-a8-aqas")
    assert [c.name for c in cfgs] == ["optq-4b-a8-aqas", "qronos-4b-a8t-aqas", "optq-3b-g128-a8-aqas"]
    assert cfgs[0] == Config("optq", 4, act_bits=8, aqas=True)
    assert cfgs[1].act_granularity == "tensor" and cfgs[2].group_size == 128
    assert parse_settings("optq-4b-a8")[0].aqas is False
    for bad, why in (("optq-4b-aqas", "act_bits"), ("optq-4b-dint-a8-aqas", "alphabet"),
                     ("boa-4b-a8-aqas", "boa"), ("optq-4b-aqas-a8", "not a setting name")):
        with pytest.raises(ValidateError, match=why):
            parse_settings(bad)
    with pytest.raises(ValueError, match="act_bits"):
        Config("qronos", 4, aqas=True)
    with pytest.raises(TypeError, match="aqas"):
        Config("qronos", 4, act_bits=8, aqas=1)  # type: ignore[arg-type]
