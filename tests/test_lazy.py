"""Blocks streamed from a safetensors folder reproduce the fully loaded model, one block at a time.

Tiny random models (seeded, synthetic) saved with ``save_pretrained``: a single-file untied Llama,
a sharded Llama with tied embeddings, and an OPT (tied, blocks at ``model.decoder.layers``). The
skeleton's prefix (everything before block 0) and each loaded block, run by hand block by block,
give the fully loaded model's block outputs and logits bit for bit in float32.
"""

from __future__ import annotations

from unittest import mock

import accelerate  # noqa: F401  (the llm extra, installed by the README's test command: fail, never skip)
import pytest
import torch
import transformers
from safetensors import safe_open

from ptqtheory.models import lazy
from ptqtheory.models.hf import ModelFolderError, decoder_blocks, load_causal_lm
from ptqtheory.models.lazy import SafetensorsBlocks


class Stop(Exception):
    pass


def _save(folder, *, tied: bool, shard: str | None, layers: int = 3, seed: int = 0, opt: bool = False) -> None:
    if opt:
        cfg = transformers.OPTConfig(hidden_size=32, ffn_dim=64, num_attention_heads=4,
                                     num_hidden_layers=layers, vocab_size=96, max_position_embeddings=64,
                                     word_embed_proj_dim=32)
    else:
        cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                       num_key_value_heads=2, num_hidden_layers=layers, vocab_size=96,
                                       max_position_embeddings=64, tie_word_embeddings=tied)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    with torch.no_grad():  # HF's init leaves norms at one; random ones catch a norm not loaded
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.2 if "norm" not in name else 0.1) + ("norm" in name))
    kw = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, **kw)


@pytest.fixture(scope="module", params=[(False, None, False), (True, "20KB", False), (True, None, True)],
                ids=["llama-single-untied", "llama-sharded-tied", "opt"])
def folder(request, tmp_path_factory):
    tied, shard, opt = request.param
    path = tmp_path_factory.mktemp("model")
    _save(path, tied=tied, shard=shard, opt=opt)
    if shard:
        assert (path / lazy.INDEX).is_file()
    return path


def _block_outputs(model, ids):
    """Each block's output in the fully loaded model."""
    outs, handles = [], []
    for _, blk in decoder_blocks(model):
        handles.append(blk.register_forward_hook(lambda _m, _a, out: outs.append(
            (out[0] if isinstance(out, tuple) else out).detach().clone())))
    try:
        with torch.no_grad():
            logits = model(input_ids=ids, use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    return outs, logits


def _suffix(model, h):
    """The logits from the last block's output: final norm (if any), then ``lm_head``."""
    inner = model.model
    norm = inner.norm if hasattr(inner, "norm") else inner.decoder.final_layer_norm
    return model.lm_head(h if norm is None else norm(h))


def _prefix(src: SafetensorsBlocks, ids):
    """Block 0's inputs (args, kwargs) from the skeleton's forward pass, stopped at block 0."""
    block0 = src.model.get_submodule(src.names[0])
    got = {}

    def hook(_m, args, kwargs):
        got["args"], got["kwargs"] = args, kwargs
        raise Stop

    h = block0.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad(), pytest.raises(Stop):
            src.model(input_ids=ids, use_cache=False)
    finally:
        h.remove()
    return got["args"], got["kwargs"]


def test_blocks_reproduce_the_full_model_bit_for_bit(folder):
    full = load_causal_lm(folder)
    ids = torch.randint(0, 96, (2, 11), generator=torch.Generator().manual_seed(1))
    ref_blocks, ref_logits = _block_outputs(full, ids)
    src = SafetensorsBlocks(folder)
    assert len(src) == 3 and src.names == [name for name, _ in decoder_blocks(full)]
    assert all(p.device.type == "meta" for n, p in src.model.named_parameters() if ".layers." in n)
    assert all(p.device.type == "cpu" for n, p in src.model.named_parameters() if ".layers." not in n)
    if full.config.tie_word_embeddings:
        assert src.model.lm_head.weight is src.model.get_input_embeddings().weight
    for _, b in src.model.named_buffers():  # e.g. the rotary inv_freq: built for real, not meta
        assert b.device.type == "cpu"
    args, kwargs = _prefix(src, ids)
    h = args[0] if args else kwargs.pop("hidden_states")
    args = args[1:]
    for i in range(len(src)):
        block = src.load(i, "cpu")
        assert block is src.model.get_submodule(src.names[i])
        assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in block.parameters())
        with torch.no_grad():
            out = block(h, *args, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
        assert torch.equal(h, ref_blocks[i]), f"block {i}"
        src.release(i, block)
        assert all(p.device.type == "meta" for p in block.parameters())
    with torch.no_grad():
        logits = _suffix(src.model, h)
    assert torch.equal(logits, ref_logits)


def test_load_reads_only_that_blocks_tensors(folder):
    src = SafetensorsBlocks(folder)
    read: list[str] = []
    real = lazy.safe_open

    class Recording:
        def __init__(self, *a, **k):
            self.f = real(*a, **k)

        def __enter__(self):
            self.inner = self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def get_tensor(self, key):
            read.append(key)
            return self.inner.get_tensor(key)

    with mock.patch.object(lazy, "safe_open", Recording):
        block = src.load(1, torch.device("cpu"))
    assert len(read) == len(list(block.parameters())) > 0
    assert all(k.startswith(src.names[1] + ".") for k in read)
    with pytest.raises(ValueError, match="already loaded"):
        src.load(1, "cpu")
    src.release(1, block)
    with pytest.raises(ValueError, match="is not loaded"):
        src.release(1, block)
    with pytest.raises(IndexError, match="block index in"):
        src.load(3, "cpu")


def test_release_writes_the_given_weights(folder, tmp_path):
    src = SafetensorsBlocks(folder, out_dir=tmp_path / "out")
    block = src.load(2, "cpu")
    with torch.no_grad():  # stand-in for quantized weights
        for p in block.parameters():
            p.mul_(0.5).round_()
    given = {f"{src.names[2]}.{k}": v.clone() for k, v in block.state_dict().items()}
    src.release(2, block)
    path = tmp_path / "out" / "block-0002.safetensors"
    assert path == src.block_file(2) and path.is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["block-0002.safetensors"]  # no temp left
    with safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == sorted(given)
        assert f.metadata()["name"] == src.names[2]
        for k, v in given.items():
            assert torch.equal(f.get_tensor(k), v)
    assert all(p.device.type == "meta" for p in block.parameters())


def test_refusals(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelFolderError, match=r"no \.safetensors weights \(found pytorch_model\.bin\)"):
        SafetensorsBlocks(tmp_path)
    good = tmp_path / "good"
    _save(good, tied=False, shard=None, layers=1)
    with pytest.raises(ValueError, match="dtype must be a floating"):
        SafetensorsBlocks(good, dtype=torch.int8)
    src = SafetensorsBlocks(good)
    block = src.load(0, "cpu")
    with pytest.raises(ValueError, match="not block 0"):
        src.release(0, torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="out_dir was not given"):
        src.block_file(0)
    src.release(0, block)


def test_pipeline_streamed_from_disk_equals_in_memory(tmp_path):
    """``quantize_model`` over :class:`SafetensorsBlocks` = over the fully loaded model, bit for bit."""
    from ptqtheory.models.hf import forward
    from ptqtheory.models.pipeline import Config, ModelBlocks, quantize_model

    folder = tmp_path / "m"
    _save(folder, tied=True, shard="20KB", layers=2)
    gen = torch.Generator().manual_seed(2)
    calib = [{"input_ids": torch.randint(0, 96, (2, 12), generator=gen)} for _ in range(2)]
    cfg = Config("optq", bits=3)
    full = load_causal_lm(folder)
    ref = quantize_model(ModelBlocks(full, decoder_blocks(full)), calib, forward, cfg, device="cpu",
                         dtype=torch.float32, stream=True)
    src = SafetensorsBlocks(folder, out_dir=tmp_path / "q")
    got = quantize_model(src, calib, forward, cfg, device="cpu", dtype=torch.float32, stream=True)
    assert [r.layer for r in got.layers] == [r.layer for r in ref.layers] and len(got.layers) == 14
    assert got.block_forwards == ref.block_forwards
    assert all(r.summary["identity_holds"] for r in got.layers)
    assert all(p.device.type == "meta" for n, p in src.model.named_parameters() if ".layers." in n)
    quantized = dict(full.named_parameters())
    for i in range(len(src)):
        with safe_open(str(src.block_file(i)), framework="pt") as f:
            assert len(f.keys()) == 9
            for k in f.keys():
                assert torch.equal(f.get_tensor(k), quantized[k]), k
