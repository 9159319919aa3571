"""Activation quantization (W4A8): pt.quantize_activations and pt.ActivationQuantizer against brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import GROUPS, write_stacked
from tiny_models import llama as _llama

import ptqtheory as pt


def brute(x: float, step: float, K: int) -> float:
    """The nearest of the levels k*step, k in -K..K (ties to the even k), by enumeration."""
    if step == 0:
        return 0.0
    best, best_k = None, None
    for k in range(-K, K + 1):
        d = abs(x - k * step)
        if best is None or d < best - 1e-300 or (d == best and k % 2 == 0):
            best, best_k = d, k
    return best_k * step


def brute_array(X: np.ndarray, bits: int, granularity: str, scale=None) -> np.ndarray:
    K = 2 ** (bits - 1) - 1
    rows = X.reshape(-1, X.shape[-1])
    out = np.empty_like(rows)
    top = max(abs(v) for v in rows.ravel())
    for i, r in enumerate(rows):
        if scale is not None:
            step = scale
        elif granularity == "tensor":
            step = top / K
        else:
            step = max(abs(v) for v in r) / K
        for j, v in enumerate(r):
            out[i, j] = brute(float(v), step, K)
    return out.reshape(X.shape)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("granularity", ["tensor", "token"])
def test_dynamic_matches_brute_force(bits, granularity):
    rng = np.random.default_rng(bits)
    X = rng.standard_normal((3, 5, 7)) * np.array([1, 10, 0.1, 1, 1, 50, 1])
    X[1, 2] = 0.0  # an all-zero token
    got, info = pt.quantize_activations(X, bits=bits, granularity=granularity, return_info=True)
    want = brute_array(X, bits, granularity)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(X).max())
    assert info.clipped == 0 and info.total == X.size
    # the bound |x - Q(x)| <= step/2, entrywise
    K = 2 ** (bits - 1) - 1
    steps = (np.abs(X).max() / K if granularity == "tensor"
             else np.abs(X.reshape(-1, 7)).max(axis=1, keepdims=True) / K)
    err = np.abs(X.reshape(-1, 7) - got.reshape(-1, 7))
    assert np.all(err <= steps / 2 * (1 + 1e-12))
    if granularity == "token":
        assert np.all(got[1, 2] == 0)


def test_ties_round_to_even_and_levels_are_symmetric():
    # step 1 (max 127 with 8 bits): 0.5 -> 0, 1.5 -> 2, -2.5 -> -2; no level -128
    X = np.array([[0.5, 1.5, -2.5, 127.0, -127.0]])
    got = pt.quantize_activations(X, bits=8)
    np.testing.assert_array_equal(got, [[0.0, 2.0, -2.0, 127.0, -127.0]])


def test_static_clips_and_counts():
    X = np.array([[0.1, -0.5, 3.0, -7.0]])
    got, info = pt.quantize_activations(X, bits=3, mode="static", scale=1.0, return_info=True)
    # K = 3: levels -3..3; 3.0 stays, -7 clips to -3, 0.1 -> 0, -0.5 -> -0 (tie to even)
    np.testing.assert_array_equal(got, [[0.0, -0.0, 3.0, -3.0]])
    assert info.clipped == 1 and info.clipped_fraction == 0.25
    # 3.4 rounds to 3 (within half a step of the last level): not a clip
    _, info = pt.quantize_activations(np.array([3.4]), bits=3, mode="static", scale=1.0, return_info=True)
    assert info.clipped == 0


def test_quantizer_calibrates_once_and_reports_clipping():
    rng = np.random.default_rng(0)
    q = pt.ActivationQuantizer(bits=8, mode="static")
    cal = rng.standard_normal((64, 16))
    q.calibrate(cal)
    assert q.scale == pytest.approx(np.abs(cal).max() / 127, rel=1e-15)
    np.testing.assert_array_equal(q(cal), brute_array(cal, 8, "tensor", scale=q.scale))
    assert q.clipped == 0
    later = cal * 2.0
    out = q(later)
    want_clipped = int(np.count_nonzero(np.abs(later) > 127.5 * q.scale))
    assert q.clipped == want_clipped > 0
    assert q.clipped_fraction == pytest.approx(want_clipped / (2 * cal.size))
    assert np.abs(out).max() <= 127 * q.scale * (1 + 1e-15)


def test_dynamic_quantizer_never_clips():
    q = pt.ActivationQuantizer(bits=4, granularity="token")
    X = np.random.default_rng(1).standard_normal((10, 6)) * 1e3
    np.testing.assert_allclose(q(X), brute_array(X, 4, "token"), rtol=0, atol=1e-9)
    assert q.clipped_fraction == 0.0


@pytest.mark.parametrize("granularity", ["tensor", "token"])
def test_torch_matches_numpy(granularity):
    X = np.random.default_rng(2).standard_normal((2, 4, 9))
    got = pt.quantize_activations(torch.from_numpy(X), bits=8, granularity=granularity)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and got.shape == (2, 4, 9)
    np.testing.assert_allclose(got.numpy(), brute_array(X, 8, granularity), rtol=0, atol=1e-12)
    g32 = pt.quantize_activations(torch.from_numpy(X).float(), bits=8, granularity=granularity)
    assert g32.dtype == torch.float32


def test_bad_input_is_refused_before_work():
    X = np.ones((2, 3))
    with pytest.raises(ValueError, match="bits"):
        pt.quantize_activations(X, bits=1)
    with pytest.raises(TypeError, match="bits"):
        pt.quantize_activations(X, bits=8.0)
    with pytest.raises(ValueError, match="granularity"):
        pt.quantize_activations(X, granularity="channel")
    with pytest.raises(ValueError, match="mode"):
        pt.quantize_activations(X, mode="fixed")
    with pytest.raises(ValueError, match="scale"):
        pt.quantize_activations(X, mode="static")
    with pytest.raises(ValueError, match="scale"):
        pt.quantize_activations(X, scale=1.0)
    with pytest.raises(ValueError, match="scale"):
        pt.quantize_activations(X, mode="static", scale=0.0)
    with pytest.raises(ValueError, match="per tensor"):
        pt.quantize_activations(X, mode="static", scale=1.0, granularity="token")
    with pytest.raises(ValueError, match="NaN"):
        pt.quantize_activations(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        pt.quantize_activations(torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(TypeError, match="X"):
        pt.quantize_activations("abc")
    for empty in (np.zeros((0, 4)), torch.zeros(0, 4), np.zeros((3, 0))):  # no token to take a step from
        with pytest.raises(ValueError, match="at least one token"):
            pt.quantize_activations(empty, granularity="tensor")
    with pytest.raises(TypeError, match="floating"):
        pt.quantize_activations(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="calibrate"):
        pt.ActivationQuantizer(mode="static")(X)
    with pytest.raises(ValueError, match="calibrate"):
        pt.ActivationQuantizer(mode="dynamic").calibrate(X)


# --------------------------------------------------------------------------------------------------
# The pipeline with activation quantization (Config.act_bits): against rerunning the whole model

def _token_hook(bits: int):
    """An independent per-token quantizer in the model's dtype, written out: step max|x|/K, rint, times step."""
    K = 2 ** (bits - 1) - 1

    def hook(_m, args):
        x = args[0]
        step = x.abs().amax(dim=-1, keepdim=True) / K
        q = torch.where(step > 0, torch.round(x / torch.where(step > 0, step, 1.0)) * step, 0.0)
        return (q.to(x.dtype), *args[1:])
    return hook


@pytest.mark.parametrize("method", ["optq", "qronos"])
def test_pipeline_quantizes_the_quantized_streams_inputs(method):
    from ptqtheory.models import ModelBlocks, capture_inputs, hf, quantize_model
    from ptqtheory.models.pipeline import Config

    cal, _ = hf.calibration_batches(None, tokens=128, random_tokens=128, vocab_size=128, seq_len=32,
                                    batch_size=2)
    lam = pt.Damping.percdamp(0.01)
    cfg = Config(method, 4, act_bits=4)
    assert cfg.name == f"{method}-4b-a4"
    ours = _llama(2)
    res = quantize_model(ModelBlocks(ours, hf.decoder_blocks(ours)), cal, hf.forward, cfg, lam=lam)
    assert len(res.activation_hooks) == 2 * 7
    # The reference: rerun the whole partly quantized model for every group, with an independent
    # activation quantizer on every layer of the quantized model (X from the untouched float model).
    ref, untouched = _llama(2), _llama(2)
    qmods, fmods = dict(ref.named_modules()), dict(untouched.named_modules())
    for prefix, _ in hf.decoder_blocks(ref):
        for group in GROUPS:
            names = [f"{prefix}.{g}" for g in group]
            for n in names:
                qmods[n].register_forward_pre_hook(_token_hook(4))
            Xt = capture_inputs(ref, {names[0]: qmods[names[0]]}, cal, hf.forward,
                                stop_after=names[0])[names[0]]
            X = capture_inputs(untouched, {names[0]: fmods[names[0]]}, cal, hf.forward,
                               stop_after=names[0])[names[0]]
            # Xt lies on the per-token 4-bit grid: at most 15 distinct values per row
            assert all(len(np.unique(r)) <= 15 for r in Xt)
            W = np.concatenate([qmods[n].weight.detach().double().numpy() for n in names])
            grid = pt.Grid.minmax(W, bits=4)
            Q = pt.optq(W, Xt, lam=lam, grid=grid).Q if method == "optq" else pt.qronos(W, X, Xt, lam=lam,
                                                                                      grid=grid).Q
            write_stacked(qmods, names, Q)
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # Evaluation runs with activations quantized: the same logits as the reference with its hooks,
    # different ones once the pipeline's hooks are removed.
    ids = cal[0]["input_ids"]
    with torch.no_grad():
        a = ours(input_ids=ids).logits
        b = ref(input_ids=ids).logits
        for h in res.activation_hooks:
            h.remove()
        c = ours(input_ids=ids).logits
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_config_and_settings_names():
    from ptqtheory.models.pipeline import Config
    from ptqtheory.models.validate import ValidateError, parse_settings

    assert [c.name for c in parse_settings("optq-4b-a8,qronos-3b-g128-a8t,rtn-4b")] == \
        ["optq-4b-a8", "qronos-3b-g128-a8t", "rtn-4b"]
    assert parse_settings("qronos-4b-a8")[0] == Config("qronos", 4, act_bits=8)
    with pytest.raises(ValueError, match="bits"):
        Config("optq", 4, act_bits=1)
    with pytest.raises(ValueError, match="act_granularity"):
        Config("optq", 4, act_bits=8, act_granularity="channel")
    with pytest.raises(ValidateError, match="bits"):
        parse_settings("optq-4b-a1")


def test_activation_term_of_the_error_split_is_bounded():
    """W4A8.2: ||(X - Q_a(X)) w|| <= ||w||_1 / 2 * sqrt(sum_i Delta_i^2), per-token dynamic steps."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((40, 9)) * np.array([1, 30, 1, 1, 0.1, 1, 1, 5, 1])
    w = rng.standard_normal(9)
    for bits in (3, 4, 8):
        Xq, info = pt.quantize_activations(X, bits=bits, granularity="token", return_info=True)
        lhs = np.linalg.norm((X - Xq) @ w)
        assert lhs <= 0.5 * np.abs(w).sum() * np.sqrt(np.sum(info.scale ** 2)) * (1 + 1e-12)
        np.testing.assert_allclose(info.scale, np.abs(X).max(axis=1) / (2 ** (bits - 1) - 1), rtol=1e-15)


def test_eval_seq_len_is_checked_before_work(tmp_path):
    """SLAC: --eval-seq-len (evaluation windows, apart from the calibration --seq-len) is checked first."""
    from ptqtheory.models.validate import ValidateError, run_validate

    with pytest.raises(ValidateError, match="eval-seq-len"):
        run_validate(tmp_path / "r", model="minilm", eval_seq_len=128)
    with pytest.raises(ValidateError, match="eval-seq-len"):
        run_validate(tmp_path / "r", model="smollm2", eval_seq_len=1)
    assert not (tmp_path / "r").exists()
