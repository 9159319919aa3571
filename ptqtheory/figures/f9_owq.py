r"""F9 — OWQ against OPTQ: layer error against effective bits per weight, and the restricted B1 bound.

On real linear layers of the embedded all-MiniLM-L6-v2 (inputs captured from the float model as for F8:
real tokens only, float64), with a per-channel asymmetric min-max grid and percdamp 0.01:

* **OPTQ** at 2, 3 and 4 bits (effective bits = bits);
* **OWQ** (:func:`ptqtheory.owq`) at 2 and 3 bits with the kept columns chosen for effective bit
  targets :math:`b + \{0.05, 0.1, 0.25, 0.5\}` (:func:`ptqtheory.keep_for_bits`, the authors'
  convention: a kept column costs 16 instead of :math:`b` bits per weight; indices and scales not
  counted).

Left: the relative output error :math:`\sum\|X(w-q)\|^2 / \sum\|Xw\|^2` summed over the layers' rows
(markers and solid lines), against the parameter-weighted mean effective bits. Right: the same error
on the rows where B1's hypotheses held (nearest rounding, no clip) against B1 summed over those rows,
restricted to the quantized columns for OWQ (:math:`\frac14\sum_{t\notin K}\delta_t^2D_t -
\lambda\|w-q\|^2`, docs/theory.md section 7): bound over empirical, per setting.

``CHECKS``: per layer and setting, B1 summed over the rows where it applies is at least the error
summed over the same rows (``bound_b1`` >= ``empirical_b1``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from ..api import certify
from ..calibration import Damping
from ..grids import Grid
from ..owq import keep_for_bits, owq
from . import style
from .common import Check, documented, failures, finish
from .f8_optimality import KINDS, capture

NAME = "f9_owq"
CHECKS = [Check("bound_b1", "empirical_b1")]

PERCDAMP = 0.01
OPTQ_BITS = (2, 3, 4)
OWQ_BITS = (2, 3)
EXTRA = (0.05, 0.1, 0.25, 0.5)


QUICK: dict = dict(texts=12, layers=["encoder.layer.0.attention.self.query",
                                     "encoder.layer.0.attention.output.dense"],
                   optq_bits=(3, 4), owq_bits=(3,), extra=(0.25,))
FULL: dict = dict(texts=64, layers=[f"encoder.layer.{b}.{k}" for b in range(6) for k in KINDS],
                  optq_bits=OPTQ_BITS, owq_bits=OWQ_BITS, extra=EXTRA)


def settings(optq_bits, owq_bits, extra) -> list[tuple[str, int, float | None]]:
    """``(method, bits, extra effective bits or None)`` for every setting measured."""
    return [("optq", b, None) for b in optq_bits] + [("owq", b, e) for b in owq_bits for e in extra]


def measure(name: str, W: np.ndarray, X: np.ndarray, method: str, bits: int, extra: float | None,
            percdamp: float = PERCDAMP) -> dict:
    """One layer under one setting: errors, the certificate, B1 on the rows where it applies."""
    n, N = W.shape
    grid = Grid.minmax(W, bits=bits)
    lam = Damping.percdamp(percdamp)
    if method == "optq":
        run = alg.optq(W, X, lam=lam, grid=grid)
        keep, eff = 0, float(bits)
    else:
        keep = keep_for_bits(N, bits, bits + float(extra or 0.0))
        run = owq(W, X, lam=lam, grid=grid, keep=keep)
        eff = float(run.effective_bits or bits)
    cert = certify(run, X)
    b1 = cert.bound("B1")
    applies = np.asarray(b1.applies, dtype=bool)
    err = np.sum(((W - run.Q) @ X.T) ** 2, axis=1)
    ref = np.sum((W @ X.T) ** 2, axis=1)
    return {
        "layer": name, "n": n, "N": N, "m": X.shape[0], "method": method, "bits": bits,
        "extra": extra, "keep": keep, "effective_bits": eff, "percdamp": percdamp, "lam": float(run.lam),
        "err_sq": float(np.sum(err)), "ref_sq": float(np.sum(ref)),
        "rel_err": float(np.sqrt(np.sum(err) / np.sum(ref))),
        "identity_holds": bool(cert.holds()), "rows_applied": int(np.count_nonzero(applies)),
        "hypotheses_held": bool(np.any(applies)),
        "bound_b1": float(np.sum(np.asarray(b1.value)[applies])),
        "empirical_b1": float(np.sum(np.asarray(b1.empirical)[applies])),
        "b1_violations": int(b1.violations),
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Per setting, over the layers: relative error, parameter-weighted effective bits, B1 / empirical."""
    out = []
    keys = list(dict.fromkeys((r["method"], r["bits"], r["extra"]) for r in rows))
    for method, bits, extra in keys:
        sel = [r for r in rows if (r["method"], r["bits"], r["extra"]) == (method, bits, extra)]
        params = np.array([r["n"] * r["N"] for r in sel], dtype=float)
        err = sum(r["err_sq"] for r in sel)
        b_emp = sum(r["empirical_b1"] for r in sel)
        out.append({
            "panel": "summary", "method": method, "bits": bits, "extra": extra, "layers": len(sel),
            "effective_bits": float(np.sum(params * [r["effective_bits"] for r in sel]) / np.sum(params)),
            "keep_total": int(sum(r["keep"] for r in sel)),
            "rel_err": float(np.sqrt(err / sum(r["ref_sq"] for r in sel))),
            "rel_err_median": float(np.median([r["rel_err"] for r in sel])),
            "bound_b1": float(sum(r["bound_b1"] for r in sel)), "empirical_b1": float(b_emp),
            "b1_over_empirical": float(sum(r["bound_b1"] for r in sel) / b_emp) if b_emp > 0 else None,
            "rows_applied": int(sum(r["rows_applied"] for r in sel)),
            "identity_all": bool(all(r["identity_holds"] for r in sel)),
            "hypotheses_held": False,  # summaries are not checked (their layers are)
        })
    return out


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    """Build F9: capture layers, run OPTQ and OWQ, certify every row, plot, save PDF, PNG, CSV.

    ``quick``: two 384 x 384 layers of the first block, 12 paragraphs, 3 settings; the full build
    covers all 36 layers, 64 paragraphs and 11 settings. A row's ``panel``: ``layers``, one row per
    layer and setting; ``summary``, per setting. ``findings``: B1 sums below the error, or an identity
    that failed."""
    sz = QUICK if quick else FULL
    W, X = capture(sz["layers"], sz["texts"])
    layer_rows = [{"panel": "layers", **measure(name, W[name], X[name], *s)}
                  for s in settings(sz["optq_bits"], sz["owq_bits"], sz["extra"]) for name in sz["layers"]]
    summary = summarize(layer_rows)
    rows = layer_rows + summary
    findings = failures(layer_rows, CHECKS)
    findings += [f"identity failed: {r['layer']} {r['method']} {r['bits']}b" for r in layer_rows
                 if not r["identity_holds"]]
    return finish(out_dir, NAME, rows, findings, lambda: _plot(summary))


def _plot(summary: list[dict]):
    fig, (ax, ax_b) = style.new_figure(ncols=2)
    optq_rows = [r for r in summary if r["method"] == "optq"]
    ax.plot([r["effective_bits"] for r in optq_rows], [r["rel_err"] for r in optq_rows],
            color=style.COLORS["blue"], marker="o", label="OPTQ (integer bits)")
    colors = [style.COLORS[c] for c in ("vermillion", "green", "purple")]
    owq_bits = sorted({r["bits"] for r in summary if r["method"] == "owq"})
    for b, color, marker in zip(owq_bits, colors, style.MARKERS[1:], strict=False):
        sel = sorted((r for r in summary if r["method"] == "owq" and r["bits"] == b),
                     key=lambda r: r["effective_bits"])
        base = [r for r in optq_rows if r["bits"] == b]
        xs = [r["effective_bits"] for r in base + sel]
        ys = [r["rel_err"] for r in base + sel]
        ax.plot(xs, ys, color=color, marker=marker, label=f"OWQ {b}-bit + kept fp16 columns")
    ax.set_yscale("log")
    ax.set_xlabel("effective bits per weight (kept columns at 16 bits)")
    ax.set_ylabel(r"$\sqrt{\sum\|X(w-q)\|^2 / \sum\|Xw\|^2}$")
    ax.legend(fontsize=6.5)
    labels, ratios, cols = [], [], []
    for r in summary:
        if r["b1_over_empirical"] is None:
            continue
        tag = f"{r['bits']}b" if r["method"] == "optq" else f"{r['bits']}b+{r['extra']:g}"
        labels.append(f"{r['method'].upper()} {tag}")
        ratios.append(r["b1_over_empirical"])
        cols.append(style.COLORS["blue"] if r["method"] == "optq" else style.COLORS["vermillion"])
    ax_b.barh(range(len(ratios)), ratios, color=cols)
    ax_b.axvline(1.0, color="0.3", lw=0.6)
    ax_b.set_yticks(range(len(ratios)))
    ax_b.set_yticklabels(labels, fontsize=6)
    ax_b.set_xscale("log")
    ax_b.set_xlabel("B1 (restricted for OWQ) / error, rows where it applies")
    return fig
