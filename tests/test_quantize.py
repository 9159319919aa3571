"""``ptqtheory quantize MODEL_DIR`` on tiny SYNTHETIC causal LMs (CPU).

Every model here is built from a ``transformers`` config with random weights drawn from a seeded
torch generator (no download, nothing trained): a Llama-style model (grouped-query attention,
gated MLP) and an OPT-style model, two decoder blocks each, saved as safetensors to a temporary
folder. Calibration is seeded random token ids (``--random-tokens``), or a synthetic BPE tokenizer
trained on seeded synthetic text. The checks: exit codes, report files, every ``nn.Linear`` of every
decoder block certified with zero violations, the saved model equal to the exported grid codes, the
layer groups, refusal of pickled checkpoints, and torch float64 == numpy reference codes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ptqtheory.cli import main
from ptqtheory.models import Config, ModelBlocks, capture_block_inputs, discover_groups, hf, quantize_model


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    """Synthetic Llama: hidden 32, MLP 64, 4 heads / 2 KV heads, vocab 128, seeded random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128, max_position_embeddings=512)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg)
    return _save(model, tmp_path_factory.mktemp("synthetic-llama"))


@pytest.fixture(scope="module")
def opt_dir(tmp_path_factory) -> Path:
    """Synthetic OPT: hidden 32, FFN 64, 4 heads, vocab 128, seeded random weights."""
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                    vocab_size=128, word_embed_proj_dim=32, max_position_embeddings=512)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        model = OPTForCausalLM(cfg)
    return _save(model, tmp_path_factory.mktemp("synthetic-opt"))


def _block_linears(model) -> set[str]:
    names = set()
    for prefix, block in hf.decoder_blocks(model):
        names |= {f"{prefix}.{n}" for n, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    return names


def _check_output(out: Path, model_dir: Path, bits: int, group_size: int | None = None) -> dict:
    """Report files parse, every block linear is certified with no violation, and the saved model
    holds exactly the exported grid values."""
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    report = json.loads((out / "report.json").read_text())
    rows = list(csv.reader((out / "report.csv").read_text().splitlines()))
    assert rows[0][:5] == ["config", "method", "bits", "group_size", "layer"] and len(rows) > 1
    fmodel = hf.load_causal_lm(model_dir)
    layers = report["configs"][0]["layers"]
    names = {lr["layer"] for lr in layers}
    assert names == _block_linears(fmodel) and len(layers) == len(names)
    assert {r[4] for r in rows[1:]} == names
    assert report["summary"]["violations"] == 0 and report["summary"]["identity_failures"] == 0
    for lr in layers:
        s = lr["summary"]
        if s["identity"] is not None:
            assert s["identity_holds"] and s["pivots_hold"], lr["layer"]
        assert s["bounds"] and all(b["violations"] == 0 for b in s["bounds"].values()), lr["layer"]
    # rows whose error feedback pushed a weight off the min-max range clip; the bounds apply elsewhere
    assert all(b["rows_applied"] > 0 for b in report["summary"]["bounds"].values())

    saved = out / "model"
    assert any(saved.glob("*.safetensors")) and not any(saved.glob("*.bin"))
    qmodel = AutoModelForCausalLM.from_pretrained(saved, local_files_only=True, use_safetensors=True,
                                                  dtype=torch.float32)
    codes = load_file(str(out / "codes.safetensors"))
    qmods, fmods = dict(qmodel.named_modules()), dict(fmodel.named_modules())
    for name in names:
        Wq = qmods[name].weight.detach().numpy()
        k = codes[f"{name}.codes"].astype(np.int64)
        n, N = Wq.shape
        assert k.shape == (n, N) and k.min() >= 0 and k.max() <= 2**bits - 1
        reps = group_size or N
        delta = np.repeat(codes[f"{name}.delta"], reps, axis=1)[:, :N]
        zero = np.repeat(codes[f"{name}.zero"], reps, axis=1)[:, :N]
        # each row on its grid: the saved weights are the reported grid values delta (k - z)
        np.testing.assert_array_equal(Wq, (delta * (k - zero)).astype(np.float32), err_msg=name)
        assert not np.array_equal(Wq, fmods[name].weight.detach().numpy())
    # everything outside the decoder blocks' linear layers is untouched
    qstate, fstate = qmodel.state_dict(), fmodel.state_dict()
    for key, value in fstate.items():
        if key.removesuffix(".weight") not in names:
            torch.testing.assert_close(qstate[key], value, rtol=0, atol=0, msg=key)
    return report


def test_llama_optq(llama_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["quantize", str(llama_dir), "--method", "optq", "--bits", "4", "--random-tokens", "256",
                 "--out", str(out)])
    assert code == 0
    report = _check_output(out, llama_dir, 4)
    assert report["synthetic_calibration"] and report["calibration"]["tokens"] == 256
    assert report["precision"] == "float64" and report["streamed_statistics"] is False
    assert report["skipped_bounds"] == []
    labels = set(report["summary"]["bounds"])
    assert {"B1", "B1.data", "B2", "B7", "B8"} <= labels
    table = capsys.readouterr().out
    assert "0:q_proj+k_proj+v_proj" in table and "0:gate_proj+up_proj" in table and "violations: 0" in table


def test_opt_qronos_with_groups(opt_dir, tmp_path):
    out = tmp_path / "out"
    code = main(["quantize", str(opt_dir), "--method", "qronos", "--bits", "3", "--group-size", "16",
                 "--random-tokens", "256", "--seed", "2", "--out", str(out)])
    assert code == 0
    report = _check_output(out, opt_dir, 3, group_size=16)
    assert set(report["summary"]["bounds"]) == {"B2", "B9", "L1"}
    assert report["summary"]["bounds"]["B9"]["rows_applied"] > 0


def test_float32_streamed_stochastic(llama_dir, tmp_path):
    out = tmp_path / "out"
    code = main(["quantize", str(llama_dir), "--method", "optq-stochastic", "--bits", "4",
                 "--dtype", "float32", "--stream", "--random-tokens", "256", "--out", str(out)])
    assert code == 0
    report = _check_output(out, llama_dir, 4)
    assert report["precision"] == "float32" and report["streamed_statistics"] is True
    # statistics were streamed: the per-sample form of B5 comes from one more pass over the cached
    # block inputs, batch by batch, so nothing is skipped
    assert report["skipped_bounds"] == []
    for lr in report["configs"][0]["layers"]:
        assert lr["summary"]["skipped_bounds"] == []
        assert lr["summary"]["bounds"]["B5"]["rows_applied"] > 0
        assert np.isfinite(lr["summary"]["err_inf_max"])  # measured on the streamed batches
    assert {"B3", "B4", "B5", "B5.uniform", "B6", "B8.stochastic"} <= set(report["summary"]["bounds"])


def test_text_calibration_with_the_folders_tokenizer(llama_dir, tmp_path):
    """A synthetic BPE tokenizer (trained here on seeded synthetic text) saved next to the weights."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(0)
    words = ["the", "layer", "weights", "are", "rounded", "to", "a", "grid", "with", "error", "feedback",
             "of", "each", "column", "bound", "holds", "for", "every", "row", "and", "input"]
    text = "\n\n".join(" ".join(rng.choice(words, size=30)) + "." for _ in range(40))
    (tmp_path / "cal.txt").write_text(text)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(text.split("\n\n"), trainers.BpeTrainer(vocab_size=100,
                                                                    special_tokens=["<s>", "<unk>"]))
    folder = tmp_path / "with-tokenizer"
    shutil.copytree(llama_dir, folder)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="<unk>").save_pretrained(folder)
    out = tmp_path / "out"
    code = main(["quantize", str(folder), "--method", "qronos-ls", "--bits", "4", "--text",
                 str(tmp_path / "cal.txt"), "--tokens", "200", "--seq-len", "50", "--out", str(out)])
    assert code == 0
    report = _check_output(out, folder, 4)
    assert not report["synthetic_calibration"] and report["calibration"]["sequences"] == 4
    assert (out / "model" / "tokenizer.json").is_file()


def test_pickled_checkpoints_are_refused(tmp_path, capsys):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "pytorch_model.bin").write_bytes(b"not read")
    code = main(["quantize", str(folder), "--method", "optq", "--bits", "4", "--random-tokens", "64",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no .safetensors" in err and "pytorch_model.bin" in err and "never loaded" in err
    assert not (tmp_path / "out").exists()


def test_usage_errors(llama_dir, tmp_path, capsys):
    def run(*extra):
        return main(["quantize", str(llama_dir), "--bits", "4", "--out", str(tmp_path / "o"), *extra])

    assert run("--method", "optq") == 2  # the synthetic folder has no tokenizer
    assert "no tokenizer" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert run("--method", "optq", "--random-tokens", "64", "--device", "cuda") == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert run("--method", "optq", "--random-tokens", "64", "--device", "tpu") == 2
    assert main(["quantize", str(tmp_path / "missing"), "--method", "optq", "--bits", "4"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_models_without_decoder_blocks_are_refused(tmp_path, capsys):
    """A synthetic GPT-2 (blocks at transformer.h, not a supported layout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=128, n_positions=64))
    folder = _save(model, tmp_path / "gpt2")
    code = main(["quantize", str(folder), "--method", "rtn", "--bits", "4", "--random-tokens", "32",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and "cannot find the decoder blocks" in capsys.readouterr().err


def _batch(n_tokens: int = 64):
    batches, _ = hf.calibration_batches(None, tokens=n_tokens, random_tokens=n_tokens, vocab_size=128,
                                        seq_len=32, batch_size=2)
    return batches


def test_groups_follow_shared_inputs(llama_dir, opt_dir):
    model = hf.load_causal_lm(llama_dir)
    (prefix, block), _ = hf.decoder_blocks(model)
    cpu = torch.device("cpu")
    inputs = capture_block_inputs(model, block, _batch()[:1], hf.forward, cpu)
    groups = discover_groups(block, inputs, prefix=prefix)
    p = prefix + "."
    assert groups == [[p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"],
                      [p + "self_attn.o_proj"], [p + "mlp.gate_proj", p + "mlp.up_proj"],
                      [p + "mlp.down_proj"]]
    model = hf.load_causal_lm(opt_dir)
    blocks = hf.decoder_blocks(model)
    assert [n for n, _ in blocks] == ["model.decoder.layers.0", "model.decoder.layers.1"]
    prefix, block = blocks[0]
    inputs = capture_block_inputs(model, block, _batch()[:1], hf.forward, cpu)
    groups = discover_groups(block, inputs, prefix=prefix)
    p = prefix + "."
    # out_proj and fc1 read different tensors (a freed activation's address must not merge them)
    assert [sorted(g) for g in groups] == [
        sorted([p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"]),
        [p + "self_attn.out_proj"], [p + "fc1"], [p + "fc2"]]


@pytest.mark.parametrize("method", ["optq", "qronos"])
def test_torch_float64_gives_the_reference_codes(llama_dir, method):
    model = hf.load_causal_lm(llama_dir)
    blocks = hf.decoder_blocks(model)
    cal = _batch(128)
    codes: dict[str, dict] = {"numpy": {}, "torch": {}}

    def keep(which):
        def on_layer(name, run, rows, group):
            codes[which][name] = np.atleast_2d(run.codes)[rows]
        return on_layer

    cfg = Config(method, 4)
    ref = quantize_model(ModelBlocks(model, blocks), cal, hf.forward, cfg, on_layer=keep("numpy")).layers
    model = hf.load_causal_lm(llama_dir)
    blocks = hf.decoder_blocks(model)
    res = quantize_model(ModelBlocks(model, blocks), cal, hf.forward, cfg, device="cpu", dtype=torch.float64,
                         on_layer=keep("torch")).layers
    assert codes["numpy"].keys() == codes["torch"].keys() == _block_linears(model)
    for name, k in codes["numpy"].items():
        np.testing.assert_array_equal(codes["torch"][name], k, err_msg=name)
    for a, b in zip(ref, res, strict=True):
        assert a.layer == b.layer and b.summary["identity_holds"]
        assert a.summary["bounds"].keys() == b.summary["bounds"].keys()
        np.testing.assert_allclose(b.summary["err_l2_mean"], a.summary["err_l2_mean"], rtol=1e-9)
