"""The block-by-block pipeline: forward passes linear in depth, the same codes as a prefix rerun, one
block at a time, in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import GROUPS, write_stacked
from tiny_models import calibration as _calibration
from tiny_models import llama as _llama

import ptqtheory as pt
from ptqtheory.models import Config, ModelBlocks, capture_inputs, hf, quantize_model


class _Calls:
    """Counts calls of modules with forward pre-hooks, independently of the pipeline's own counter.

    The hook is a plain closure, so a deep copy of a block (the pipeline's float copy) shares it and
    its calls are counted too (a bound method would be deep-copied with its object).
    """

    def __init__(self, modules):
        count = [0]

        def hook(*_):
            count[0] += 1

        self._count = count
        self.handles = [m.register_forward_pre_hook(hook) for m in modules]

    @property
    def n(self) -> int:
        return self._count[0]

    def remove(self):
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize(("method", "device", "per_group"), [
    ("optq", None, 1),             # captured inputs: one pass per group, one stream
    ("qronos", None, 2),           # two streams (X and Xt)
    ("optq", "cpu", 1),            # torch backend, captured
])
def test_block_forwards_are_linear_in_depth(method, device, per_group):
    cal = _calibration(batches=3)
    counts = {}
    for depth in (2, 4):
        model = _llama(depth)
        blocks = hf.decoder_blocks(model)
        calls = _Calls([b for _, b in blocks])
        prefix = _Calls([model.model.embed_tokens])
        kw = {} if device is None else {"device": device, "dtype": torch.float64, "stream": False}
        res = quantize_model(ModelBlocks(model, blocks), cal, hf.forward, Config(method, 4), **kw)
        calls.remove()
        prefix.remove()
        # The prefix pass reaches block 0's pre-hooks once per batch and stops there, before the block
        # computes anything; every other call of a block is one the pipeline counts.
        assert res.block_forwards == calls.n - len(cal)
        assert prefix.n == len(cal)  # the model's prefix ran once per calibration batch
        # Per block: one call to find the groups, then (G + 1) passes per stream over the batches.
        assert res.block_forwards == depth * (1 + per_group * (len(GROUPS) + 1) * len(cal))
        counts[depth] = res.block_forwards
    assert counts[4] == 2 * counts[2]


def test_streamed_statistics_cost_one_more_pass_per_group():
    cal = _calibration(batches=2)
    model = _llama(2)
    res = quantize_model(ModelBlocks(model, hf.decoder_blocks(model)), cal, hf.forward, Config("optq", 4),
                         device="cpu", dtype=torch.float64, stream=True)
    assert res.block_forwards == 2 * (1 + (2 * len(GROUPS) + 1) * len(cal))


def _reference(model, float_model, cfg: Config, cal, lam):
    """The pipeline's mathematics written the slow, obvious way: for every group, rerun the WHOLE
    partly quantized model on the calibration set to get the group's inputs (and the untouched float
    model for X), run the public algorithm, write the weights back."""
    qmods, fmods = dict(model.named_modules()), dict(float_model.named_modules())
    for prefix, _ in hf.decoder_blocks(model):
        for group in GROUPS:
            names = [f"{prefix}.{g}" for g in group]
            first = names[0]
            Xt = capture_inputs(model, {first: qmods[first]}, cal, hf.forward, stop_after=first)[first]
            X = capture_inputs(float_model, {first: fmods[first]}, cal, hf.forward, stop_after=first)[first]
            W = np.concatenate([qmods[n].weight.detach().double().numpy() for n in names])
            if cfg.method == "magr-optq":
                W = pt.magr(W, Xt, group_size=cfg.group_size).V
            grid = pt.Grid.minmax(W, bits=cfg.bits, group_size=cfg.group_size)
            if cfg.method in ("optq", "magr-optq"):
                Q = pt.optq(W, Xt, lam=lam, grid=grid).Q
            elif cfg.method == "qronos":
                Q = pt.qronos(W, X, Xt, lam=lam, grid=grid).Q
            else:
                Q = pt.gpfq(W, X, Xt, grid=grid).Q
            write_stacked(qmods, names, Q)


@pytest.mark.parametrize("cfg", [Config("optq", 3, group_size=16), Config("qronos", 3), Config("gpfq", 4),
                                 Config("magr-optq", 3), Config("magr-optq", 3, group_size=16)])
def test_same_codes_as_rerunning_the_prefix(cfg):
    """Block inputs cached and handed on give bit for bit the weights of rerunning the model prefix."""
    cal = _calibration(batches=2)
    lam = pt.Damping.percdamp(0.01)
    ours = _llama(2)
    quantize_model(ModelBlocks(ours, hf.decoder_blocks(ours)), cal, hf.forward, cfg, lam=lam)
    ref, untouched = _llama(2), _llama(2)
    _reference(ref, untouched, cfg, cal, lam)
    for (name, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # and the quantization did something
    down = ours.model.layers[1].mlp.down_proj.weight
    assert not torch.equal(down, untouched.model.layers[1].mlp.down_proj.weight)


class _OneAtATime(ModelBlocks):
    """A block source that records loads and releases and fails if two blocks are out at once."""

    def __init__(self, model, blocks):
        super().__init__(model, blocks)
        self.log: list[tuple[str, int]] = []
        self.out: set[int] = set()

    def load(self, i, device):
        assert not self.out, f"block {i} loaded while {self.out} are still out"
        self.out.add(i)
        self.log.append(("load", i))
        return super().load(i, device)

    def release(self, i, block):
        self.out.discard(i)
        self.log.append(("release", i))
        super().release(i, block)


@pytest.mark.parametrize("method", ["optq", "qronos"])
def test_one_block_at_a_time_and_in_place(method):
    model = _llama(3)
    params = {n: p.data_ptr() for n, p in model.named_parameters()}
    source = _OneAtATime(model, hf.decoder_blocks(model))
    res = quantize_model(source, _calibration(1), hf.forward, Config(method, 4))
    assert source.log == [(op, i) for i in range(3) for op in ("load", "release")]
    # quantized in place: the same parameter storage, no copy of the model
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == params
    assert len(res.layers) == 3 * 7 and res.blocks == 3
    for r in res.layers:
        assert r.summary["identity_holds"] and all(b["violations"] == 0 for b in r.summary["bounds"].values())


def test_float32_streamed_run_matches_the_float64_reference_closely():
    cal = _calibration(2)
    codes: dict[str, dict] = {"f64": {}, "f32": {}}

    def keep(which):
        def on_layer(name, run, rows, group):
            codes[which][name] = np.asarray(torch.as_tensor(np.atleast_2d(run.codes))[rows])
        return on_layer

    a, b = _llama(2), _llama(2)
    quantize_model(ModelBlocks(a, hf.decoder_blocks(a)), cal, hf.forward, Config("optq", 4),
                   on_layer=keep("f64"))
    res = quantize_model(ModelBlocks(b, hf.decoder_blocks(b)), cal, hf.forward, Config("optq", 4), device="cpu",
                         dtype=torch.float32, stream=True, on_layer=keep("f32"))
    assert all(r.summary["identity_holds"] for r in res.layers)
    assert codes["f64"].keys() == codes["f32"].keys() and len(codes["f64"]) == 14
    for name, k in codes["f64"].items():
        # float32 flips codes only where x_t / delta lies near a rounding tie; the flips then propagate
        # through the later columns, so agreement is high but not total
        assert np.mean(codes["f32"][name] == k) > 0.8, name


def test_bad_arguments_are_refused_before_work():
    model = _llama(1)
    blocks = hf.decoder_blocks(model)
    with pytest.raises(TypeError, match="BlockSource"):
        quantize_model(blocks, _calibration(1), hf.forward, Config("optq", 4))
    with pytest.raises(ValueError, match="calibration is empty"):
        quantize_model(ModelBlocks(model, blocks), [], hf.forward, Config("optq", 4))
    with pytest.raises(ValueError, match="stream=True needs the torch backend"):
        quantize_model(ModelBlocks(model, blocks), _calibration(1), hf.forward, Config("optq", 4), stream=True)
    with pytest.raises(ValueError, match="bits"):
        Config("optq", 0)
    with pytest.raises(ValueError, match="method"):
        Config("gptq", 4)


def test_streamed_per_sample_bound_equals_the_bound_on_the_data():
    """B5 from one more pass over the cached block inputs, batch by batch, is the bound the certificate
    computes on the data held at once (the same function, maxima over batches)."""
    cal = _calibration(3)
    out = {}
    for stream in (False, True):
        model = _llama(1)
        res = quantize_model(ModelBlocks(model, hf.decoder_blocks(model)), cal, hf.forward,
                             Config("optq-stochastic", 4), device="cpu", dtype=torch.float64, stream=stream,
                             seed=3)
        out[stream] = res.layers
    for a, b in zip(out[False], out[True], strict=True):
        assert "B5" not in b.summary["skipped_bounds"]
        ba, bb = a.summary["bounds"]["B5"], b.summary["bounds"]["B5"]
        assert ba["rows_applied"] == bb["rows_applied"] > 0 and bb["violations"] == 0
        np.testing.assert_allclose(bb["max_ratio"], ba["max_ratio"], rtol=1e-9)


def test_b10_sup_from_batches_equals_b10_sup_on_the_data():
    """Stochastic Qronos: B10.sup from statistics plus a batched pass equals B10.sup on the data."""
    from ptqtheory import torch_backend as tb

    g = torch.Generator().manual_seed(5)
    X = torch.randn(96, 24, generator=g, dtype=torch.float64)
    Xt = X + 0.05 * torch.randn(96, 24, generator=g, dtype=torch.float64)
    W = torch.randn(10, 24, generator=g, dtype=torch.float64)
    grid = tb.minmax_grid(W, bits=3)
    acc = tb.TorchAccumulator(24, "cpu", with_mismatch=True)
    for i in range(0, 96, 32):
        acc.update(X[i:i + 32], Xt[i:i + 32])
    run = pt.qronos(W, acc, None, lam=pt.Damping.percdamp(0.01), grid=grid, rounding="stochastic", seed=1)

    def batches():
        return ((X[i:i + 40], Xt[i:i + 40]) for i in range(0, 96, 40))

    streamed = pt.certify(run, batches(), p=1e-3, samples=batches)
    whole = pt.certify(run, X, Xt, p=1e-3)
    assert "B10.sup" not in streamed.skipped_bounds
    a, b = whole.bound("B10.sup"), streamed.bound("B10.sup")
    np.testing.assert_allclose(b.value, a.value, rtol=1e-9)
    np.testing.assert_allclose(b.empirical, a.empirical, rtol=1e-9)
    assert np.array_equal(a.holds, b.holds)
    # Without samples the bound is listed as skipped, not silently dropped.
    assert "B10.sup" in pt.certify(run, batches(), p=1e-3).skipped_bounds


@pytest.mark.parametrize("device", [None, "cpu"])
def test_magr_records_its_certificate_and_the_end_to_end_bound(device):
    """MagR + OPTQ in the pipeline (numpy reference; torch with streamed statistics): every layer
    reports MagR's duality gap and the end-to-end bound, and ``err_l2_mean`` is the error against the
    float weights, recomputed here from the captured inputs."""
    cal = _calibration(batches=2)
    model, untouched = _llama(1), _llama(1)
    kw = {} if device is None else {"device": device, "dtype": torch.float64, "stream": True}
    res = quantize_model(ModelBlocks(model, hf.decoder_blocks(model)), cal, hf.forward,
                         Config("magr-optq", 4), **kw)
    for r in res.layers:
        s = r.summary
        assert s["magr"]["rows_uncertified"] == 0 and s["magr"]["iterations"] == 200
        assert s["magr"]["inf_ratio_median"] < 1  # MagR shrank the rows' largest magnitudes
        assert s["bounds"]["MagR"]["violations"] == 0 and s["bounds"]["MagR"]["rows_applied"] > 0
    # The first group reads the block's inputs, which MagR does not change: recompute its error.
    first = "model.layers.0.self_attn.q_proj"
    X = capture_inputs(untouched, {first: dict(untouched.named_modules())[first]}, cal, hf.forward,
                       stop_after=first)[first]
    w = dict(untouched.named_modules())[first].weight.detach().double().numpy()
    q = dict(model.named_modules())[first].weight.detach().double().numpy()
    want = np.mean(np.linalg.norm((w - q) @ X.T, axis=1))
    rec = next(r for r in res.layers if r.layer == first)
    # The model stores the codes in float32 (q here), the summary reads the run's float64 codes: they
    # differ by at most 2^-24 |q| entrywise, so the norms by at most ||X||_F 2^-24 ||q|| per row.
    storage = np.mean(np.linalg.norm(X) * 2.0**-24 * 1.001 * np.linalg.norm(q, axis=1))
    if device is not None:
        # From the statistics, d^T (X^T X) d: its float64 error is at most about (m + N) u |d|^T |X^T X| |d|
        # per row (m products for each entry, N^2 for the form), relative to ||X d||^2.
        D = w - q
        worst = np.max(np.sum((np.abs(D) @ np.abs(X.T @ X)) * np.abs(D), axis=1)
                       / np.sum((D @ X.T) ** 2, axis=1))
        storage += want * (X.shape[0] + X.shape[1]) * 2.0**-53 * worst
    assert rec.summary["err_l2_mean"] == pytest.approx(want, abs=storage)
    assert storage < 1e-5 * want  # the check is far finer than the effect of MagR below
    assert rec.summary["magr"]["err_l2_mean_vs_v"] != pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("alphabet", ["int", "dint"])
def test_alphabet_settings_quantize_onto_the_alphabet(alphabet):
    """``optq-4b-dint``: every quantized weight lies on its row's scaled alphabet (pt.Alphabet), the
    certificates hold, and the codes equal the public pt.optq with that alphabet on independently
    captured inputs (block 0's first group)."""
    from ptqtheory.models.validate import parse_settings

    (cfg,) = parse_settings(f"optq-4b-{alphabet}")
    assert cfg.alphabet == alphabet and cfg.name == f"optq-4b-{alphabet}"
    cal = _calibration(batches=1)
    model, untouched = _llama(1), _llama(1)
    res = quantize_model(ModelBlocks(model, hf.decoder_blocks(model)), cal, hf.forward, cfg)
    assert all(r.summary["identity_holds"] for r in res.layers)
    assert all(b["violations"] == 0 for r in res.layers for b in r.summary["bounds"].values())
    levels = pt.Alphabet.dint(4) if alphabet == "dint" else pt.Alphabet.integer(4)
    names = [f"model.layers.0.{g}" for g in GROUPS[0]]
    mods, fmods = dict(model.named_modules()), dict(untouched.named_modules())
    X = capture_inputs(untouched, {names[0]: fmods[names[0]]}, cal, hf.forward, stop_after=names[0])[names[0]]
    W = np.concatenate([fmods[n].weight.detach().double().numpy() for n in names])
    want = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=levels.fit(W)).Q
    got = np.concatenate([mods[n].weight.detach().double().numpy() for n in names])
    np.testing.assert_array_equal(got, want.astype(np.float32).astype(np.float64))
    # every row on its own scaled alphabet: q / s_i is one of the levels
    scales = np.asarray(levels.fit(W).scale, float).reshape(-1, 1)
    ratios = want / scales
    values = np.asarray(levels.values)
    assert np.all(np.min(np.abs(ratios[..., None] - values), axis=-1) <= 1e-12 * np.max(np.abs(values)))


def test_alphabet_settings_refused_where_unsupported():
    from ptqtheory.models.validate import ValidateError, parse_settings

    for bad in ("optq-4b-g16-dint", "owq-4b-dint", "boa-4b-int"):
        with pytest.raises(ValidateError, match="alphabet"):
            parse_settings(bad)


def test_gpfq_setting_rounds_dead_quantized_inputs_and_says_so():
    """An 8-bit activation grid can round a whole small channel of Xt to 0 (it happened on MiniLM's
    FFN output with gpfq-4b-a8t). The pipeline's GPFQ rounds those weights to nearest, the run's notes
    name the column, and the certificate still holds (I6 on the remaining sweep)."""
    from ptqtheory.models.pipeline import run_setting

    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 6))
    Xt = X.copy()
    Xt[:, 2] = 0.0  # a dead quantized input
    W = rng.standard_normal((5, 6))
    cfg = Config(method="gpfq", bits=4, act_bits=8)
    run = run_setting(cfg, W, X, Xt, 0.0, seed=0)
    assert any("dead columns [2]" in note for note in run.notes)
    grid = pt.Grid.minmax(W, bits=4)
    np.testing.assert_array_equal(run.Q[:, 2], pt.rtn(W, grid=grid).Q[:, 2])  # rounded to nearest
    assert pt.certify(run, X, Xt).identity_holds
