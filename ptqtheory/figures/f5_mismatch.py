r"""F5 — mismatched inputs: Qronos, OPTQ, GPFQ and RTN as :math:`\tilde X` drifts from :math:`X`; tests B9.

A layer sees inputs :math:`X` in the float model and :math:`\tilde X` in the partly quantized
model. The error that matters, and that Qronos targets, is :math:`\|Xw - \tilde Xq\|_2` (plotted:
:math:`\|XW^\top - \tilde XQ^\top\|_F` over the ``n`` rows). Methods: Qronos, paper iteration (A4)
and least squares then OPTQ (A4'); OPTQ run on :math:`\tilde X` alone (ignoring the mismatch); GPFQ
(A5); RTN. All round to nearest on :math:`\delta\mathbb Z` with the per-row step of a 4-bit min-max
grid. Top: :math:`\tilde X = X + \epsilon\,\mathrm{std}(X)\,G` with Gaussian :math:`G`. Bottom:
:math:`\tilde X` is :math:`X` after per-tensor activation quantization to :math:`b` bits. Dashed:
B9 for A4 and A4' (:math:`\|r_0\|^2 + \frac{\delta^2}{4}\operatorname{tr}(\tilde D) - \lambda\|w-q\|^2`,
with A4's first-step term), summed over rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import FixedLocator

from .. import algorithms as alg
from ..api import certify
from ..grids import Grid
from ..instances import make_X
from ..random import generator
from . import style
from .common import Check, bound_findings, documented, finish

NAME = "f5_mismatch"
CHECKS = [
    Check("bound_B9_qronos_paper", "empirical_err_qronos_paper", "B9_applies_qronos_paper"),
    Check("bound_B9_qronos_ls", "empirical_err_qronos_ls", "B9_applies_qronos_ls"),
]

SEED = 5
BITS = 4
PERCDAMP = 0.01
METHODS = (
    ("qronos_paper", "Qronos (A4)"),
    ("qronos_ls", "Qronos-LS (A4')"),
    ("optq_xt", r"OPTQ on $\tilde X$"),
    ("gpfq", "GPFQ"),
    ("rtn", "RTN"),
)

QUICK: dict = dict(m=64, N=16, n=4, eps=(0.01, 0.1, 1.0), act_bits=(8, 4, 2))
FULL: dict = dict(m=256, N=64, n=16, eps=tuple(np.logspace(-3, 0, 13)), act_bits=(8, 7, 6, 5, 4, 3, 2))


def _act_quant(X: np.ndarray, bits: int) -> np.ndarray:
    """Per-tensor symmetric activation quantization (absmax scale) with the package's rounding."""
    step = float(np.max(np.abs(X))) / (2 ** (bits - 1) - 1)
    return Grid(step).round(X)[0]


def _point(W, X, Xt, grid, lam, where: str) -> tuple[dict, list[str]]:
    row: dict = {"relative_mismatch": float(np.linalg.norm(Xt - X) / np.linalg.norm(X))}
    findings: list[str] = []
    target = X @ W.T
    for variant in ("paper", "ls"):
        run = alg.qronos(W, X, Xt, lam=lam, grid=grid, variant=variant)
        cert = certify(run, X, Xt, full_pivot_check=False)
        b9 = cert.bound("B9")
        findings += bound_findings(cert.bounds, where, ("B9",))
        key = f"qronos_{variant}"
        row[f"empirical_err_{key}"] = float(np.sqrt(np.sum(b9.empirical)))
        row[f"bound_B9_{key}"] = float(np.sqrt(np.sum(b9.value)))
        row[f"B9_applies_{key}"] = bool(np.all(b9.applies))
    others = {
        "optq_xt": alg.optq(W, Xt, lam=lam, grid=grid),
        "gpfq": alg.gpfq(W, X, Xt, grid=grid, dead_columns="round"),
        "rtn": alg.rtn(W, grid=grid),
    }
    for key, run in others.items():  # ||X W^T - Xt Q^T||_F, what every method is judged by
        row[f"empirical_err_{key}"] = float(np.linalg.norm(target - Xt @ np.asarray(run.Q).T))
    row["gpfq_notes"] = "; ".join(others["gpfq"].notes)
    return row, findings


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    sz = QUICK if quick else FULL
    m, N, n = sz["m"], sz["N"], sz["n"]
    rng = generator(SEED, "data", "F5 layer")
    X = make_X(rng, m, N, cond=1e2)
    W = rng.standard_normal((n, N))
    G = rng.standard_normal((m, N))
    grid = Grid(Grid.minmax(W, bits=BITS).delta)  # 4-bit steps per row, no clipping
    lam = PERCDAMP * float(np.mean(np.sum(X**2, axis=0)))
    cases: list[tuple[str, float | None, int | None, np.ndarray]] = [
        ("noise", float(e), None, X + e * float(np.std(X)) * G) for e in sz["eps"]]
    cases += [("act_quant", None, b, _act_quant(X, b)) for b in sz["act_bits"]]
    rows, findings = [], []
    for kind, eps, bits, Xt in cases:
        where = (f"F5 seed={SEED} m={m} N={N} n={n} lam={lam:.6g} mismatch={kind} "
                 + (f"eps={eps:.6g}" if bits is None else f"act_bits={bits}"))
        row, f = _point(W, X, Xt, grid, lam, where)
        findings += f
        rows.append({"mismatch": kind, "eps": eps, "act_bits": bits, "m": m, "N": N, "n": n,
                     "lam": lam, **row})
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows), CHECKS)


def _plot(rows: list[dict]):
    fig, axes = style.new_figure(nrows=2, height=4.9)
    colors = dict(zip([k for k, _ in METHODS], [style.COLORS[c] for c in (
        "blue", "sky", "vermillion", "green", "purple")], strict=True))
    styles: dict[str, dict[str, Any]] = {
              "qronos_paper": dict(marker="o"), "qronos_ls": dict(marker="^", mfc="white", ls=(0, (1, 1))),
              "optq_xt": dict(marker="s"), "gpfq": dict(marker="D", ms=3), "rtn": dict(marker="v")}
    for ax, kind in zip(axes, ("noise", "act_quant"), strict=True):
        sel = [r for r in rows if r["mismatch"] == kind]
        x = np.array([r["eps"] if kind == "noise" else r["act_bits"] for r in sel], dtype=float)
        for key, label in METHODS:
            ax.plot(x, [r[f"empirical_err_{key}"] for r in sel], color=colors[key], label=label,
                    **{"ls": "-", **styles[key]})
        for key, ls, lab in (("qronos_paper", "--", "B9 for A4"), ("qronos_ls", (0, (5, 1, 1, 1)),
                                                                    "B9 for A4'")):
            ax.plot(x, [r[f"bound_B9_{key}"] for r in sel], color=colors[key], ls=ls, lw=1.0,
                    label=lab)
        ax.set_yscale("log")
        style.plain_log_ticks(ax.yaxis)
        ax.set_ylabel(r"$\|XW^{\top} - \tilde X Q^{\top}\|_F$")
        if kind == "noise":
            ax.set_xscale("log")
            ax.set_xlabel(r"noise level $\epsilon$:  $\tilde X = X + \epsilon\,\mathrm{std}(X)\,G$")
        else:
            ax.set_xlim(x.max() + 0.3, x.min() - 0.3)  # fewer bits (more mismatch) to the right
            ax.xaxis.set_major_locator(FixedLocator(x.tolist()))
            ax.set_xlabel(r"activation bits $b$:  $\tilde X = Q_b(X)$, per tensor")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=3, columnspacing=0.7,
               handlelength=2.0)
    return fig
