r"""F13 — BoA against OPTQ on real attention layers: the attention-output error per block and head, and I7.

On the encoder blocks of the embedded all-MiniLM-L6-v2 (attention inputs :math:`X` captured with a
forward pre-hook on the float model's query projection, real tokens only, float64, attention within
each paragraph), the query, key and value projections are quantized with a 3-bit per-channel min-max
grid and percdamp 0.01 on every factor:

* **OPTQ**: ``pt.optq`` on each projection with :math:`H = X^TX + \lambda I`;
* **BoA**: ``pt.boa_attention`` (query: :math:`H_{out} = K_h^TK_h`, key: :math:`H_{out} = Q_h^TQ_h`, both
  with :math:`H_{in} = X^TX`; value: :math:`H_{in} = \sum(A_hX)^T(A_hX)`, :math:`H_{out} = I`).

**Top.** Relative error of the attention output (all heads, before the output projection) with all
three projections quantized, :math:`\|O(\hat W) - O(W)\|_F/\|O(W)\|_F`, per block, on the calibration
tokens and on held-out paragraphs.

**Middle.** The same per head (calibration tokens): BoA's error over OPTQ's (below 1: BoA is better).

**Bottom.** I7 on every BoA run (one per head and projection): the relative gap
:math:`|lhs - rhs|/\max(lhs, rhs)` of :math:`\operatorname{tr}(H_{out}EH_{in}E^T) = \sum\eta^2D^{out}D^{in}`
(markers) and the allowance of the error model over the same scale (line), log scale. ``CHECKS``: the
gap is within the allowance on every run (``bound_gap_allowance`` >= ``empirical_gap``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..boa import attention_heads, boa_attention
from ..calibration import Damping
from ..grids import Grid
from ..tolerances import RTOL_IDENTITY
from . import style
from .common import Check, documented, failures, finish

NAME = "f13_boa"
CHECKS = [Check("bound_gap_allowance", "empirical_gap")]

BITS = 3
PERCDAMP = 0.01


QUICK: dict = dict(texts=6, held_texts=4, blocks=(0,), heads=2)
FULL: dict = dict(texts=48, held_texts=32, blocks=tuple(range(6)), heads=None)


def capture(blocks, texts: int, held_texts: int) -> dict:
    """The float MiniLM's attention inputs of the named blocks, with the sequence lengths and weights.

    Returns ``{"cal": {block: (X, lengths)}, "held": {...}, "weights": {block: (Wq, Wk, Wv, bq, bk, bv)},
    "heads": n_heads}``; calibration and held-out paragraphs from :func:`ptqtheory.models.text.split`,
    at most 128 tokens each, padding dropped.
    """
    import torch

    from ..models import minilm, text
    from ..models.capture import capture_inputs

    model, tok = minilm.load()
    cal, held = text.split()
    layers = {f"encoder.layer.{b}.attention.self.query": model.encoder.layer[b].attention.self.query
              for b in blocks}
    last = f"encoder.layer.{max(blocks)}.attention.self.query"
    out: dict = {"cal": {}, "held": {}, "weights": {}, "heads": int(model.config.num_attention_heads)}
    for split, paras in (("cal", cal[:texts]), ("held", held[:held_texts])):
        batches = minilm.batches(tok, paras, max_length=128, batch_size=8)
        lengths = [int(v) for b in batches for v in b["attention_mask"].sum(1)]
        X = capture_inputs(model, layers, batches, minilm.forward, stop_after=last)
        for b in blocks:
            out[split][b] = (X[f"encoder.layer.{b}.attention.self.query"], lengths)
    for b in blocks:
        sa = model.encoder.layer[b].attention.self
        out["weights"][b] = tuple(t.detach().to(torch.float64).numpy().copy() for t in (
            sa.query.weight, sa.key.weight, sa.value.weight, sa.query.bias, sa.key.bias, sa.value.bias))
    return out


def _rel(A, B) -> float:
    return float(np.linalg.norm(A - B) / np.linalg.norm(B))


def _block_rows(block: int, data: dict, heads: int | None) -> list[dict]:
    from .. import algorithms as alg

    Wq, Wk, Wv, bq, bk, bv = data["weights"][block]
    H = data["heads"] if heads is None else heads
    dh = Wq.shape[0] // data["heads"]
    keep = slice(0, H * dh)  # the first H heads (heads are independent: a subset is the same problem)
    Wq, Wk, Wv, bq, bk, bv = Wq[keep], Wk[keep], Wv[keep], bq[keep], bk[keep], bv[keep]
    X, L = data["cal"][block]
    damp = Damping.percdamp(PERCDAMP)
    optq = {k: alg.optq(W, X, lam=damp, grid=Grid.minmax(W, bits=BITS)).Q for k, W in
            (("q", Wq), ("k", Wk), ("v", Wv))}
    res = boa_attention(X, Wq, Wk, Wv, H, bits=BITS, lengths=L, b_q=bq, b_k=bk, lam=damp)
    rows: list[dict] = []
    errs = {}
    for split in ("cal", "held"):
        Xs, Ls = data[split][block]
        ref = attention_heads(Xs, Wq, Wk, Wv, H, Ls, bq, bk, bv)[0]
        Oo = attention_heads(Xs, optq["q"], optq["k"], optq["v"], H, Ls, bq, bk, bv)[0]
        Ob = attention_heads(Xs, res.Q["q"], res.Q["k"], res.Q["v"], H, Ls, bq, bk, bv)[0]
        errs[split] = (_rel(Oo, ref), _rel(Ob, ref))
        if split == "cal":
            for h in range(H):
                c = slice(h * dh, (h + 1) * dh)
                eo, eb = _rel(Oo[:, c], ref[:, c]), _rel(Ob[:, c], ref[:, c])
                rows.append({"panel": "heads", "block": block, "head": h, "m": Xs.shape[0], "bits": BITS,
                             "rel_err_optq": eo, "rel_err_boa": eb, "ratio_boa_optq": eb / eo})
    rows.insert(0, {"panel": "blocks", "block": block, "heads": H, "m": X.shape[0],
                    "m_held": data["held"][block][0].shape[0], "bits": BITS, "percdamp": PERCDAMP,
                    "cal_rel_err_optq": errs["cal"][0], "cal_rel_err_boa": errs["cal"][1],
                    "held_rel_err_optq": errs["held"][0], "held_rel_err_boa": errs["held"][1]})
    for proj, certs in res.certificates.items():
        for h, cert in enumerate(certs):
            scale = max(abs(cert.lhs), abs(cert.rhs))
            rows.append({"panel": "identity", "block": block, "head": h, "projection": proj,
                         "lhs": cert.lhs, "rhs": cert.rhs, "gap": cert.gap, "atol": cert.atol,
                         "rel_gap": abs(cert.gap) / scale, "rel_allowance": cert.atol / scale + RTOL_IDENTITY,
                         "empirical_gap": abs(cert.gap),
                         "bound_gap_allowance": cert.atol + RTOL_IDENTITY * scale,
                         "structure_residual": cert.structure_residual, "structure_atol": cert.structure_atol,
                         "hypotheses_held": True, "holds": cert.holds()})
    return rows


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    """Build F13: capture the attention inputs, quantize with OPTQ and BoA, plot, save PDF, PNG, CSV.

    ``quick``: block 0, its first 2 heads, 6 calibration and 4 held-out paragraphs; the full build
    covers the 6 blocks and 12 heads with 48 and 32 paragraphs (minutes on one core). A row's
    ``panel``: ``blocks`` top, ``heads`` middle, ``identity`` bottom. ``findings``: an I7 gap outside
    its allowance."""
    sz = QUICK if quick else FULL
    data = capture(sz["blocks"], sz["texts"], sz["held_texts"])
    rows: list[dict] = []
    for b in sz["blocks"]:
        rows += _block_rows(b, data, sz["heads"])
    ident = [r for r in rows if r["panel"] == "identity"]
    findings = failures(ident, CHECKS)
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows))


def _plot(rows: list[dict]):
    fig, (ax, ax_h, ax_i) = style.new_figure(nrows=3, width=2 * style.PANEL[0], height=7.0)
    blocks = [r for r in rows if r["panel"] == "blocks"]
    x = np.array([r["block"] for r in blocks])
    c_o, c_b = style.COLORS["vermillion"], style.COLORS["blue"]
    for split, text, ls, mk in (("cal", "calibration", "-", "o"), ("held", "held-out", "--", "s")):
        for method, name, color in (("optq", "OPTQ", c_o), ("boa", "BoA", c_b)):
            ax.plot(x, [r[f"{split}_rel_err_{method}"] for r in blocks], color=color, ls=ls, marker=mk,
                    label=f"{name}, {text}")
    ax.set_xticks(x)
    ax.set_xlabel(f"MiniLM block ({BITS}-bit per-channel min-max, percdamp {PERCDAMP:g})")
    ax.set_ylabel("attention output\nrelative error")
    ax.legend(ncols=2, fontsize=6.5)

    heads = [r for r in rows if r["panel"] == "heads"]
    H = max(r["head"] for r in heads) + 1
    xh = np.array([r["block"] * (H + 1) + r["head"] for r in heads])
    ax_h.bar(xh, [r["ratio_boa_optq"] - 1 for r in heads], bottom=1, color=c_b, width=0.8)
    ax_h.axhline(1.0, color="0.35", lw=0.6)
    ax_h.set_ylabel("per head:\nBoA error / OPTQ error")

    ident = [r for r in rows if r["panel"] == "identity"]
    colors = {"q": style.COLORS["vermillion"], "k": style.COLORS["green"], "v": style.COLORS["blue"]}
    for p, mk in (("q", "o"), ("k", "s"), ("v", "^")):
        sel = [r for r in ident if r["projection"] == p]
        xi = np.array([r["block"] * (H + 1) + r["head"] for r in sel])
        ax_i.plot(xi, np.maximum([r["rel_gap"] for r in sel], 1e-18), color=colors[p], marker=mk, ls="none",
                  ms=3, label=f"{p}: |lhs - rhs| / max")
        ax_i.plot(xi, [r["rel_allowance"] for r in sel], color=colors[p], lw=0.6)
    ax_i.set_yscale("log")
    for a in (ax_h, ax_i):
        a.set_xticks([b["block"] * (H + 1) + (H - 1) / 2 for b in blocks])
        a.set_xticklabels([f"block {b['block']}" for b in blocks])
    ax_i.set_ylabel("I7 relative gap\n(line: allowance)")
    ax_i.legend(ncols=3, fontsize=6.5)
    return fig
