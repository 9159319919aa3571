"""Hugging Face causal language models from a local folder (Llama, Qwen, Mistral, OPT style).

Only safetensors are loaded (``use_safetensors=True``, ``local_files_only=True``): a folder with pickled
checkpoints only (``pytorch_model.bin``, ``*.pt``) is refused before any read, and the hub is never contacted.
Decoder blocks: ``model.model.layers`` (Llama, Qwen, Mistral) or ``model.model.decoder.layers`` (OPT).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["ModelFolderError", "calibration_batches", "check_folder", "decoder_blocks", "forward",
           "load_causal_lm", "load_tokenizer", "token_batches"]

PICKLED = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


class ModelFolderError(ValueError):
    """The folder is not a loadable model folder (missing, no config, no safetensors, ...)."""


def check_folder(path: str | Path) -> Path:
    """The folder, after checking it holds a ``config.json`` and ``.safetensors`` weights."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder (MODEL_DIR must be a local model folder; "
                               "hub ids are not downloaded)")
    if not (folder / "config.json").is_file():
        raise ModelFolderError(f"{folder} has no config.json: not a Hugging Face model folder")
    if not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for pattern in PICKLED for p in folder.glob(pattern))
        found = f" (found {', '.join(pickled[:5])})" if pickled else ""
        raise ModelFolderError(
            f"{folder} holds no .safetensors weights{found}. Only safetensors are loaded: pickled "
            "checkpoints can run arbitrary code when unpickled and are never loaded. Convert the "
            "checkpoint to safetensors where you trust it (model.save_pretrained(dir))."
        )
    return folder


def load_causal_lm(path: str | Path, dtype: torch.dtype = torch.float32):
    """The model in ``dtype``, in eval mode, from safetensors only, without network access."""
    from transformers import AutoModelForCausalLM

    folder = check_folder(path)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                                 dtype=dtype)
    return model.eval()


def load_tokenizer(path: str | Path):
    """The folder's tokenizer, or ``None`` when it has none."""
    from transformers import AutoTokenizer

    folder = Path(path)
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        return None
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def decoder_blocks(model) -> list[tuple[str, torch.nn.Module]]:
    """``[(name, block)]`` of a causal LM's decoder blocks, in forward order."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    prefix = "model.layers"
    if not isinstance(layers, torch.nn.ModuleList):
        layers = getattr(getattr(inner, "decoder", None), "layers", None)
        prefix = "model.decoder.layers"
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise ModelFolderError(
            f"cannot find the decoder blocks of {type(model).__name__}: expected model.model.layers "
            "(Llama, Qwen, Mistral style) or model.model.decoder.layers (OPT style)"
        )
    return [(f"{prefix}.{i}", blk) for i, blk in enumerate(layers)]


def forward(model, batch: dict):
    """One forward pass without a KV cache."""
    return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                 use_cache=False)


def token_batches(sequences: list[list[int]], batch_size: int, device) -> list[dict]:
    batches = [torch.tensor(sequences[i:i + batch_size], dtype=torch.long, device=device)
               for i in range(0, len(sequences), batch_size)]
    return [{"input_ids": ids, "attention_mask": torch.ones_like(ids)} for ids in batches]


def calibration_batches(tokenizer, *, tokens: int, seq_len: int = 512, batch_size: int = 4,
                        text: str | Path | None = None, random_tokens: int | None = None,
                        vocab_size: int | None = None, seed: int = 0,
                        device="cpu") -> tuple[list[dict], dict]:
    """``(batches, description)``: calibration batches of equal-length sequences. With ``random_tokens``
    (synthetic, for folders without a tokenizer such as test models): that many token ids drawn uniformly from
    ``[0, vocab_size)`` by ``numpy.random.default_rng(seed)``. Otherwise about ``tokens`` tokens of the
    calibration text of :func:`ptqtheory.models.corpus.calibration_and_evaluation` (``text``: a UTF-8 file, or
    the default), in whole windows of ``seq_len`` (at least one) cut as the perplexity evaluation cuts its text
    (:func:`ptqtheory.models.perplexity.token_windows`: no padding, BOS first when expected)."""
    if seq_len < 1 or batch_size < 1:
        raise ValueError("seq_len and batch_size must be >= 1")
    if random_tokens is not None:
        if random_tokens < 1 or not vocab_size:
            raise ValueError("random tokens need a count >= 1 and the model's vocab_size")
        ids = np.random.default_rng(seed).integers(0, vocab_size, size=random_tokens).tolist()
        L = min(seq_len, len(ids))
        seqs = [ids[i:i + L] for i in range(0, len(ids) - L + 1, L)]
        desc = {"source": f"synthetic: {random_tokens} seeded random token ids (seed {seed}), "
                          f"vocab_size {vocab_size}", "synthetic": True}
    else:
        if tokenizer is None:
            raise ValueError("no tokenizer: pass random_tokens")
        from .corpus import calibration_and_evaluation
        from .perplexity import expects_bos, token_windows

        split = calibration_and_evaluation(text)
        ids = tokenizer(split.calibration, add_special_tokens=False, verbose=False)["input_ids"]
        length = min(seq_len, len(ids) + 1)
        windows = token_windows(ids, length, expects_bos(tokenizer), max_windows=max(1, tokens // length))
        seqs = windows.tolist()
        desc = {"source": split.source + " (the calibration text)", "synthetic": False,
                "fallback": split.fallback}
    top = max((max(q) for q in seqs if q), default=-1)
    if vocab_size is not None and top >= vocab_size:
        raise ValueError(f"the tokenizer produced token id {top} but the model's vocab_size is "
                         f"{vocab_size}: tokenizer and model do not match")
    desc.update(tokens=sum(len(s) for s in seqs), sequences=len(seqs), seq_len=len(seqs[0]) if seqs else 0)
    return token_batches(seqs, batch_size, device), desc
