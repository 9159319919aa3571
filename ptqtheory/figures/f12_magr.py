r"""F12 — MagR on real layers: how much it shrinks the rows, what it does to OPTQ's error, and its bound.

On the real linear layers of the embedded all-MiniLM-L6-v2 (inputs captured as for F8: float model,
real tokens only, float64), per layer, with a 3-bit per-channel min-max grid and percdamp 0.01:

**Top: magnitude reduction.** The median over the rows of :math:`\|v\|_\infty / \|w\|_\infty`, where
:math:`v` is MagR's output (:func:`ptqtheory.magr`, the authors' per-channel setting: ``alpha = 1e-3``
on the data normalized by :math:`\lambda_{\max}(X^TX)`, 200 proximal-gradient steps), and the median
relative output change :math:`\|X(v - w)\| / \|Xw\|` that MagR paid for it.

**Bottom: end-to-end error.** The relative error :math:`\|X(w - q)\|_F / \|Xw\|_F` of OPTQ on
:math:`w` (grid fitted to :math:`w`) and of OPTQ on :math:`v` (grid fitted to :math:`v`), both
against the float weights :math:`w`, and the MagR + OPTQ bound of :func:`ptqtheory.magr_bound`
(:math:`\|X(w - v)\| + \sqrt{\mathrm{B1}(v)}` per row, summed in squares over the rows where it
applies: B1's hypotheses, nearest rounding and no clipping, held).

``CHECKS``: per row, MagR's duality gap is at least :math:`-`its rounding allowance (weak duality;
``bound_gap`` against ``empirical_negative_gap``), and the end-to-end bound holds where it applies
(``bound_magr`` against ``empirical_magr``). Whether MagR lowers the error is measured, not assumed:
the CSV has both errors per layer.

References
----------
Zhang, Zhang, Saab et al., "MagR: Weight Magnitude Reduction for Enhancing Post-Training
Quantization", NeurIPS 2024 (arXiv 2406.00800).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from ..calibration import Damping
from ..grids import Grid
from ..magr import magr, magr_bound
from . import style
from .common import Check, documented, failures, finish
from .f8_optimality import KINDS, SHORT, capture

NAME = "f12_magr"
CHECKS = [Check("bound_gap", "empirical_negative_gap", applies="always"),
          Check("bound_magr", "empirical_magr")]

BITS = 3
PERCDAMP = 0.01


QUICK: dict = dict(texts=8, layers=[f"encoder.layer.0.{k}" for k in KINDS[:1] + KINDS[3:4]], iterations=40)
FULL: dict = dict(texts=64, layers=[f"encoder.layer.{b}.{k}" for b in range(6) for k in KINDS], iterations=200)


def _frobenius(X: np.ndarray, D: np.ndarray) -> float:
    return float(np.linalg.norm(D @ X.T))


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    """Build F12: capture real layers, run MagR and OPTQ, plot, save PDF, PNG, CSV.

    ``quick``: two layers of the first block, 8 calibration paragraphs and 40 MagR steps; the full
    build covers all 36 layers with 64 paragraphs and the authors' 200 steps (a few minutes on one
    core: each step costs a product with the :math:`N\times N` Gram matrix). A row's ``panel``:
    ``layers``, one row per layer, every plotted number; ``rows``, one row per weight row with the
    checked inequalities."""
    sz = QUICK if quick else FULL
    W, X = capture(sz["layers"], sz["texts"])
    layer_rows: list[dict] = []
    per_row: list[dict] = []
    lam = Damping.percdamp(PERCDAMP)
    for index, name in enumerate(sz["layers"]):
        Wl, Xl = W[name], X[name]
        res = magr(Wl, Xl, iterations=sz["iterations"])
        plain = alg.optq(Wl, Xl, lam=lam, grid=Grid.minmax(Wl, bits=BITS))
        run = alg.optq(res.V, Xl, lam=lam, grid=Grid.minmax(res.V, bits=BITS))
        check = magr_bound(res, Wl, run, Xl)
        ref = _frobenius(Xl, Wl)
        applies = check.applies
        layer_rows.append({
            "panel": "layers", "layer": name, "layer_index": index, "block": int(name.split(".")[2]),
            "kind": SHORT[name.split(".", 3)[3]], "n": Wl.shape[0], "N": Wl.shape[1], "m": Xl.shape[0],
            "bits": BITS, "percdamp": PERCDAMP, "alpha": res.alpha, "iterations": res.iterations,
            "inf_ratio_median": float(np.median(res.v_inf / res.w_inf)),
            "output_change_relative_median": float(np.median(
                res.output_change / np.linalg.norm(Wl @ Xl.T, axis=1))),
            "gap_max": float(np.max(res.gap)), "reference_norm": ref,
            "optq_relative_error": _frobenius(Xl, Wl - plain.Q) / ref,
            "magr_optq_relative_error": _frobenius(Xl, Wl - run.Q) / ref,
            "magr_bound_relative": (float(np.sqrt(np.sum(check.value[applies] ** 2))) / ref
                                    if applies.any() else None),
            "magr_error_relative_applied": (float(np.sqrt(np.sum(check.empirical[applies] ** 2))) / ref
                                            if applies.any() else None),
            "rows_applied": int(np.count_nonzero(applies)),
        })
        for i in range(Wl.shape[0]):
            per_row.append({
                "panel": "rows", "layer": name, "row": i, "always": True,
                "bound_gap": float(res.gap_allowance[i]), "empirical_negative_gap": float(-res.gap[i]),
                "hypotheses_held": bool(applies[i]), "bound_magr": float(check.value[i] + check.atol[i]),
                "empirical_magr": float(check.empirical[i]),
            })
    rows = layer_rows + per_row
    findings = failures(per_row, CHECKS)
    return finish(out_dir, NAME, rows, findings, lambda: _plot(layer_rows))


def _plot(layer_rows: list[dict]):
    fig, (ax, ax_e) = style.new_figure(nrows=2, width=2 * style.PANEL[0], height=5.0)
    x = np.array([r["layer_index"] for r in layer_rows])
    blue, red, green = (style.COLORS[c] for c in ("blue", "vermillion", "green"))
    ax.plot(x, [r["inf_ratio_median"] for r in layer_rows], color=blue, marker="o", ls="none",
            label=r"median $\|v\|_\infty / \|w\|_\infty$")
    ax.plot(x, [r["output_change_relative_median"] for r in layer_rows], color=red, marker="s", ls="none",
            label=r"median $\|X(v - w)\| / \|Xw\|$")
    ax.set_yscale("log")
    ax.set_ylabel("per row (median)")
    ax.legend(loc="best", fontsize=6.5)
    ax_e.plot(x, [r["optq_relative_error"] for r in layer_rows], color="0.3", marker="o", ls="none",
              label="OPTQ on $w$")
    ax_e.plot(x, [r["magr_optq_relative_error"] for r in layer_rows], color=blue, marker="s", ls="none",
              label="MagR + OPTQ")
    bound = [(i, r["magr_bound_relative"]) for i, r in zip(x, layer_rows, strict=True)
             if r["magr_bound_relative"] is not None]
    if bound:
        ax_e.plot(*zip(*bound, strict=True), color=green, marker="_", ms=9, ls="none",
                  label=r"bound $\|X(w-v)\| + \sqrt{B1(v)}$ (rows where it applies)")
    ax_e.set_yscale("log")
    ax_e.set_ylabel(r"$\|X(w - q)\|_F / \|Xw\|_F$")
    ax_e.set_xticks(x)
    ax_e.set_xticklabels([r["kind"] if r["kind"] != "q" else f"{r['block']}:q" for r in layer_rows],
                         rotation=90, fontsize=6)
    ax_e.set_xlabel(f"MiniLM layer (block:kind), {BITS}-bit per-channel min-max grid, percdamp {PERCDAMP:g}")
    ax_e.legend(loc="best", fontsize=6.5)
    return fig
