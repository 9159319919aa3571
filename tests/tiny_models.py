"""Tiny seeded Llama models and calibration batches shared by the pipeline tests."""

from __future__ import annotations

import torch

from ptqtheory.models import hf

GROUPS = (("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj",),
          ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",))
"""A Llama block's layer groups in call order (the layers of a group read one input)."""


def llama(depth: int, seed: int = 0):
    """A random ``depth``-block Llama (hidden 32, 4 heads, 2 key/value heads), the same for a seed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=depth, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128, max_position_embeddings=512)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(cfg).eval()


def calibration(batches: int = 2):
    """``batches`` batches of two random-token sequences of 32 tokens."""
    cal, _ = hf.calibration_batches(None, tokens=64 * batches, random_tokens=64 * batches, vocab_size=128,
                                    seq_len=32, batch_size=2)
    return cal


# Real tokens per sequence: padding at the end of some sequences, whose rows the pipeline drops.
PADDED_LENGTHS = ((10, 7, 4), (10, 10))


def padded_calibration(lengths=PADDED_LENGTHS, width: int = 10, vocab: int = 128, seed: int = 1) -> list[dict]:
    """One batch per entry of ``lengths``: random tokens, ``width`` positions, the first ``n`` of each
    sequence real (attention mask 1) and the rest padding."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for lens in lengths:
        ids = torch.randint(0, vocab, (len(lens), width), generator=g)
        mask = torch.zeros(len(lens), width, dtype=torch.long)
        for i, n in enumerate(lens):
            mask[i, :n] = 1
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


def write_stacked(mods: dict, names, Q) -> None:
    """Write the rows of ``Q`` (the group's layers stacked in the order ``names``) into the layers'
    weights, as the pipeline does after quantizing a group."""
    start = 0
    for n in names:
        rows = mods[n].weight.shape[0]
        with torch.no_grad():
            mods[n].weight.copy_(torch.from_numpy(Q[start:start + rows]))
        start += rows
