"""BoA against OPTQ on SmolLM2's attention (grouped-query heads, RoPE, causal): the attention-output error.

For the first ``--blocks`` decoder blocks of SmolLM2-135M-Instruct (9 query heads, 3 key/value heads of
width 64, hidden size 576), the block's attention input ``X`` (after ``input_layernorm``) and each
token's rotary ``cos``, ``sin`` are captured from the *float* model on calibration windows of the
validate corpus (so both methods see the same data), and the query, key and value projections are
quantized with

* **OPTQ**: ``pt.optq`` on each projection, :math:`H = X^TX + \\lambda I`;
* **BoA**: ``pt.boa_attention`` with ``n_kv_heads=3``, ``causal=True`` and the rotary embeddings
  (docs/theory.md section 7, I7, "Decoders"),

both with per-channel asymmetric min-max grids and ``Damping.percdamp(0.01)``. Per block:
``attn_rel`` = :math:`\\|O(\\hat W) - O(W)\\|_F/\\|O(W)\\|_F`, the relative error of the attention output
before ``o_proj`` (``pt.attention_heads``, which reproduces Hugging Face's LlamaAttention,
``tests/test_boa_gqa.py``) with all three projections quantized, on the calibration windows and on
held-out windows; ``forward_check_rel`` compares ``pt.attention_heads`` with the model's own ``o_proj``
input; I7 on every BoA run.

Usage::

    python benchmarks/boa_vs_optq_smollm2.py --blocks 30 --bits 4 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import ptqtheory as pt
from ptqtheory.boa import attention_heads, boa_attention


def capture(model, windows: list[list[int]], n_blocks: int) -> list[dict]:
    """Per block: X, cos, sin (float64, tokens stacked) and the model's own o_proj input."""
    layers = model.model.layers[:n_blocks]
    store = [{"X": [], "cos": [], "sin": [], "ctx": []} for _ in layers]
    hooks = []
    for i, layer in enumerate(layers):
        def pre(_m, args, kwargs, i=i):
            x = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            store[i]["X"].append(x[0].double().numpy())
            cos, sin = kwargs["position_embeddings"]
            store[i]["cos"].append(cos[0].double().numpy())
            store[i]["sin"].append(sin[0].double().numpy())

        def ctx(_m, args, i=i):
            store[i]["ctx"].append(args[0][0].double().numpy())

        hooks.append(layer.self_attn.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(layer.self_attn.o_proj.register_forward_pre_hook(ctx))
    try:
        with torch.no_grad():
            for w in windows:
                model(input_ids=torch.tensor([w]), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    lengths = [len(w) for w in windows]
    return [{k: np.concatenate(v) for k, v in s.items()} | {"lengths": lengths} for s in store]


def rel(A, B) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--heldout-windows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    from ptqtheory.models import smollm2
    from ptqtheory.models.validate import _smollm2_data

    cal_w, held_w, _ = _smollm2_data(None, args.tokens, args.seq_len, args.heldout_windows)
    model, _ = smollm2.load()
    model = model.double().eval()
    t0 = time.perf_counter()
    cal, held = capture(model, cal_w, args.blocks), capture(model, held_w, args.blocks)
    heads, kv = model.config.num_attention_heads, model.config.num_key_value_heads
    damp = pt.Damping.percdamp(0.01)
    rows = []
    for b in range(args.blocks):
        att = model.model.layers[b].self_attn
        W = [getattr(att, n).weight.detach().double().numpy() for n in ("q_proj", "k_proj", "v_proj")]
        c = cal[b]
        kw = dict(causal=True, n_kv_heads=kv)
        O, _ = attention_heads(c["X"], *W, heads, c["lengths"], cos=c["cos"], sin=c["sin"], **kw)
        t = time.perf_counter()
        res = boa_attention(c["X"], *W, heads, bits=args.bits, lengths=c["lengths"], lam=damp, cos=c["cos"],
                            sin=c["sin"], **kw)
        t_boa = time.perf_counter() - t
        t = time.perf_counter()
        opt = [pt.optq(M, c["X"], lam=damp, grid=pt.Grid.minmax(M, bits=args.bits)).Q for M in W]
        t_optq = time.perf_counter() - t
        row = {"block": b, "forward_check_rel": rel(O, c["ctx"]), "I7_holds": res.holds(),
               "I7_max_rel_gap": max(abs(x.gap) / max(abs(x.lhs), abs(x.rhs), 1e-300)
                                     for cs in res.certificates.values() for x in cs),
               "seconds_boa": t_boa, "seconds_optq": t_optq}
        for name, data in (("cal", cal[b]), ("held", held[b])):
            dkw = dict(cos=data["cos"], sin=data["sin"], **kw)
            ref, _ = attention_heads(data["X"], *W, heads, data["lengths"], **dkw)
            for meth, Qs in (("boa", [res.Q["q"], res.Q["k"], res.Q["v"]]), ("optq", opt)):
                Oq, _ = attention_heads(data["X"], *Qs, heads, data["lengths"], **dkw)
                row[f"attn_rel_{name}_{meth}"] = rel(Oq, ref)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.startswith("attn_rel")}
    summary["boa_better_held"] = sum(r["attn_rel_held_boa"] < r["attn_rel_held_optq"] for r in rows)
    summary["boa_better_cal"] = sum(r["attn_rel_cal_boa"] < r["attn_rel_cal_optq"] for r in rows)
    out = {"model": "SmolLM2-135M-Instruct", "bits": args.bits, "blocks": args.blocks,
           "calibration_tokens": int(sum(cal[0]["lengths"])), "heldout_tokens": int(sum(held[0]["lengths"])),
           "I7_all_hold": all(r["I7_holds"] for r in rows), "summary": summary, "rows": rows,
           "seconds": time.perf_counter() - t0, "complete": True}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "boa_vs_optq_smollm2.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
