r"""F11 — W4A8: OPTQ on the quantized inputs against Qronos, and Qronos' bound B9, on real layers.

On real linear layers of the embedded all-MiniLM-L6-v2 (float inputs :math:`X` captured with forward
pre-hooks on the float model, real tokens only, float64), the quantized layer's inputs are
:math:`\tilde X = Q_a(X)`: :math:`X` fake-quantized per token to ``a_bits`` bits
(:func:`ptqtheory.quantize_activations`, dynamic symmetric INT; A8 and A4). This is the W4A8 layer in
isolation: the only mismatch between the two streams is activation quantization. The weights go on a
4-bit per-channel min-max grid, percdamp 0.01.

**Top: per-layer output error.** :math:`\sum_{\text{rows}}\lVert Xw - \tilde Xq\rVert^2 /
\sum_{\text{rows}}\lVert Xw\rVert^2` (the W4A8 layer's output against the float layer's) for OPTQ run
on :math:`\tilde X` alone (GPTQ's convention: it sees only the quantized inputs) and for Qronos, which
sees :math:`X` and :math:`\tilde X` and minimizes exactly this error greedily (A4'); A8 filled markers,
A4 open.

**Bottom: B9 against the measurement.** For Qronos (A4'), per row,
:math:`\lVert Xw - \tilde Xq\rVert^2 \le \lVert r_0\rVert^2 + \frac{\delta^2}4\operatorname{tr}(\tilde D)
- \lambda\lVert w-q\rVert^2` (contract B9): the ratio measured / bound, median over the rows (marker)
and largest (line). ``CHECKS``: ``bound_b9 >= empirical_b9`` on every row where B9's hypotheses
(nearest rounding, no clip) held, with ``bound_b9`` the bound plus its float64 rounding allowance.

References
----------
Lee et al., "Enhancing Computation Efficiency in Large Language Models through Weight and Activation
Quantization", EMNLP 2023; Zhang, Colbert & Saab, "Qronos", arXiv 2505.11695.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from ..activations import quantize_activations
from ..api import certify
from ..calibration import Damping
from ..grids import Grid
from . import style
from .common import Check, documented, failures, finish
from .f8_optimality import SHORT, capture

NAME = "f11_w4a8"
CHECKS = [Check("bound_b9", "empirical_b9")]

PERCDAMP = 0.01
W_BITS = 4
A_BITS = (8, 4)
KINDS = ("attention.self.query", "attention.output.dense", "intermediate.dense", "output.dense")


QUICK: dict = dict(texts=8, layers=[f"encoder.layer.0.{k}" for k in KINDS[:2]])
FULL: dict = dict(texts=32, layers=[f"encoder.layer.{b}.{k}" for b in (0, 2, 5) for k in KINDS])


def layer_rows(names: list[str], W: dict, X: dict) -> tuple[list[dict], list[dict]]:
    """``(summary rows, per-row rows)``: every plotted number, for every layer and activation width."""
    summary, per_row = [], []
    for index, name in enumerate(names):
        Wl, Xl = W[name], X[name]
        ref = Xl @ Wl.T
        denom = float(np.sum(ref ** 2))
        grid = Grid.minmax(Wl, bits=W_BITS)
        for a_bits in A_BITS:
            Xt = quantize_activations(Xl, bits=a_bits, granularity="token")
            lam = Damping.percdamp(PERCDAMP)
            r_optq = alg.optq(Wl, Xt, lam=lam, grid=grid)
            r_qr = alg.qronos(Wl, Xl, Xt, lam=lam, grid=grid)
            err_optq = np.sum((ref - Xt @ r_optq.Q.T) ** 2, axis=0)
            err_qr = np.sum((ref - Xt @ r_qr.Q.T) ** 2, axis=0)
            b9 = certify(r_qr, Xl, Xt).bound("B9")
            held = b9.applies  # per row: every hypothesis of B9 held
            value, emp = np.asarray(b9.value, float), np.asarray(b9.empirical, float)
            atol = np.broadcast_to(np.asarray(b9.atol, float), value.shape)
            ratio = emp / value
            base = {"layer": name, "layer_index": index, "block": int(name.split(".")[2]),
                    "kind": SHORT[name.split(".", 3)[3]], "n": Wl.shape[0], "N": Wl.shape[1],
                    "m": Xl.shape[0], "w_bits": W_BITS, "a_bits": a_bits, "percdamp": PERCDAMP}
            summary.append({
                "panel": "layers", **base, "rel_err_optq_xt": float(err_optq.sum() / denom),
                "rel_err_qronos": float(err_qr.sum() / denom),
                "act_rel_err": float(np.sum((Xl - Xt) ** 2) / np.sum(Xl ** 2)),
                "b9_ratio_median": float(np.median(ratio[held])) if held.any() else float("nan"),
                "b9_ratio_max": float(np.max(ratio[held])) if held.any() else float("nan"),
                "b9_rows_held": int(held.sum()),
            })
            for i in range(Wl.shape[0]):
                per_row.append({"panel": "rows", **base, "row": i, "hypotheses_held": bool(held[i]),
                                "bound_b9": float(value[i] + atol[i]), "b9_value": float(value[i]),
                                "empirical_b9": float(emp[i]), "err_optq_xt": float(err_optq[i]),
                                "err_qronos": float(err_qr[i])})
    return summary, per_row


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    """Build F11: capture real layers, quantize at W4A8 and W4A4 with OPTQ and Qronos, plot, save.

    ``quick``: two layers of the first block and 8 paragraphs; the full build: four kinds of layer in
    blocks 0, 2 and 5, 32 paragraphs. A row's ``panel``: ``layers``, the plotted numbers; ``rows``, per
    row, B9's bound and measurement and both algorithms' errors. ``findings``: rows where B9 failed."""
    sz = QUICK if quick else FULL
    W, X = capture(sz["layers"], sz["texts"])
    summary, per_row = layer_rows(sz["layers"], W, X)
    rows = summary + per_row
    findings = failures(per_row, CHECKS)
    return finish(out_dir, NAME, rows, findings, lambda: _plot(summary))


def _plot(summary: list[dict]):
    from matplotlib.lines import Line2D

    fig, (ax, ax_b) = style.new_figure(nrows=2, width=style.PANEL[0] * 1.4, height=5.0)
    colors = {"optq": style.COLORS["vermillion"], "qronos": style.COLORS["blue"]}
    for a_bits, fill in zip(A_BITS, (True, False), strict=True):
        sel = [r for r in summary if r["a_bits"] == a_bits]
        x = np.array([r["layer_index"] for r in sel])
        for key, method, marker, dx in (("rel_err_optq_xt", "optq", "o", -0.1),
                                        ("rel_err_qronos", "qronos", "s", 0.1)):
            ax.plot(x + dx + (0 if fill else 0.04), [r[key] for r in sel], ls="none", marker=marker,
                    color=colors[method],
                    mfc=colors[method] if fill else "white")
        ax_b.vlines(x + (-0.08 if fill else 0.08), [r["b9_ratio_median"] for r in sel],
                    [r["b9_ratio_max"] for r in sel], color="0.3", lw=0.8)
        ax_b.plot(x + (-0.08 if fill else 0.08), [r["b9_ratio_median"] for r in sel], ls="none", marker="D",
                  color=colors["qronos"], mfc=colors["qronos"] if fill else "white")
    ax.set_yscale("log")
    ax.set_ylabel(r"$\sum\|Xw-\tilde Xq\|^2 / \sum\|Xw\|^2$")
    first = [r for r in summary if r["a_bits"] == A_BITS[0]]
    ticks = [r["layer_index"] for r in first]
    labels = [f"{r['block']}:{r['kind']}" for r in first]
    for a in (ax, ax_b):
        a.set_xticks(ticks)
        a.set_xticklabels(labels, rotation=90, fontsize=6)
    handles = [Line2D([], [], color=colors["optq"], marker="o", ls="none"),
               Line2D([], [], color=colors["qronos"], marker="s", ls="none"),
               Line2D([], [], color="0.3", marker="o", ls="none"),
               Line2D([], [], color="0.3", marker="o", mfc="white", ls="none")]
    ax.legend(handles, [r"OPTQ on $\tilde X$", r"Qronos ($X$, $\tilde X$)", "A8 (filled)", "A4 (open)"],
              fontsize=6.5, ncols=2, loc="upper left")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 8)
    ax_b.axhline(1.0, color="0.35", lw=0.6, ls="--")
    ax_b.set_ylim(0, 1.1)
    ax_b.set_ylabel("Qronos: measured / B9")
    ax_b.set_xlabel(f"MiniLM layer (block:kind), W{W_BITS} per-channel, per-token A8/A4, percdamp {PERCDAMP:g}")
    return fig
