r"""F4 — alphabet size: the largest pre-rounding weight and B8's :math:`K`; tests B8 (with B7, B6).

OPTQ on :math:`\delta\mathbb Z` with nearest and unbiased stochastic rounding, on i.i.d. Gaussian inputs
with :math:`m = N` and weights uniform on :math:`[-\delta, \delta]`. Plotted, as multiples of
:math:`\delta` and maximized over the ``n`` rows: the largest value rounded, :math:`\max_t |x_t|/\delta`,
and B8's :math:`K` (the smallest with :math:`K\delta \ge \|w\|_\infty + B + \delta`: :math:`B` from B7 for
nearest rounding, surely; from B6 for stochastic rounding, with probability :math:`1 - p`), against
:math:`N` at fixed relative damping (top) and against :math:`\lambda` at fixed :math:`N` (bottom). The
right axis reads :math:`K` in bits, :math:`\log_2(2K+1)`. B7 sums :math:`|L_{ts}|` and grows like
:math:`\sqrt N`; B6 sums :math:`L_{ts}^2` under a :math:`\sqrt{\log(2N/p)}` factor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter, NullLocator

from .. import algorithms as alg
from .. import bounds
from ..calibration import Damping
from ..engine import Rounding
from ..grids import Grid
from ..instances import make_X
from ..random import generator
from . import style
from .common import Check, bound_findings, documented, finish

NAME = "f4_alphabet"
P = 0.01
ROUNDINGS: tuple[Rounding, ...] = ("nearest", "stochastic")
CHECKS = [
    Check("bound_B8_K_nearest", "empirical_max_q_over_delta_nearest", "B8_applies_nearest"),
    Check("bound_B8_K_nearest", "empirical_max_x_over_delta_nearest", "B8_applies_nearest"),
    Check("bound_B8_K_stochastic", "empirical_max_q_over_delta_stochastic", "B8_applies_stochastic",
          p=P),
    Check("bound_B8_K_stochastic", "empirical_max_x_over_delta_stochastic", "B8_applies_stochastic",
          p=P),
]

SEED = 4
DELTA = 1.0
PERCDAMP = 0.01

QUICK: dict = dict(Ns=(8, 16, 32), N_lam=32, lam_rel=np.logspace(-4, 1, 4), n=4)
FULL: dict = dict(Ns=(16, 32, 64, 128, 256, 512, 1024), N_lam=256, lam_rel=np.logspace(-5, 1, 13), n=8)


def _point(panel: str, N: int, lam_rel: float, n: int) -> tuple[dict, list[str]]:
    rng = generator(SEED + N, "data", "F4 layer")
    X = make_X(rng, N, N, gaussian=True)
    W = rng.uniform(-DELTA, DELTA, (n, N))
    row = {"panel": panel, "N": N, "m": N, "n": n, "lam_over_mean_diag": float(lam_rel),
           "delta": DELTA, "p": P}
    findings = []
    for rounding in ROUNDINGS:
        run = alg.optq(W, X, lam=Damping.percdamp(lam_rel), grid=Grid(DELTA), rounding=rounding,
                       seed=SEED)
        ctx = bounds.context(run, X)
        checks = bounds.b8(ctx, p=P)
        checks += bounds.b7(ctx) if rounding == "nearest" else bounds.b6(ctx, P)
        findings += bound_findings(checks, f"F4 {panel}-sweep seed={SEED} N=m={N} n={n} "
                                            f"lam={run.lam:.6g} delta={DELTA} rounding={rounding}")
        b8 = checks[0]
        row["lam"] = float(run.lam)
        row[f"bound_B8_K_{rounding}"] = float(np.max(b8.value))
        row[f"bits_B8_{rounding}"] = float(np.max(b8.extra["bits"]))
        row[f"empirical_max_x_over_delta_{rounding}"] = float(np.max(b8.extra["max|x_t|"])) / DELTA
        row[f"empirical_max_q_over_delta_{rounding}"] = float(np.max(b8.empirical))
        row[f"B8_applies_{rounding}"] = bool(np.all(b8.applies))
    return row, findings


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    sz = QUICK if quick else FULL
    rows, findings = [], []
    points = [("N", N, PERCDAMP) for N in sz["Ns"]]
    points += [("lam", sz["N_lam"], float(r)) for r in sz["lam_rel"]]
    for panel, N, rel in points:
        row, f = _point(panel, N, rel, sz["n"])
        rows.append(row)
        findings += f
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows, sz), CHECKS)


def _plot(rows: list[dict], sz: dict):
    fig, axes = style.new_figure(nrows=2, height=4.9)
    colors = {"nearest": style.COLORS["blue"], "stochastic": style.COLORS["vermillion"]}
    for ax, panel in zip(axes, ("N", "lam"), strict=True):
        sel = [r for r in rows if r["panel"] == panel]
        x = np.array([r["N"] if panel == "N" else r["lam"] for r in sel])
        for rounding, marker in zip(ROUNDINGS, ("o", "s"), strict=True):
            c = colors[rounding]
            src = "B7" if rounding == "nearest" else f"B6, $p={P:g}$"
            ax.plot(x, [r[f"bound_B8_K_{rounding}"] for r in sel], color=c, ls="--", marker=marker,
                    mfc="white", label=rf"$K$ of B8, {rounding} ({src})")
            ax.plot(x, [r[f"empirical_max_x_over_delta_{rounding}"] for r in sel], color=c, ls="-",
                    marker=marker, label=rf"$\mathrm{{max}}_t |x_t|/\delta$, {rounding}")
        ax.set_xscale("log", base=2 if panel == "N" else 10)
        ax.set_yscale("log", base=2)
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        top = max(max(r["bound_B8_K_nearest"], r["bound_B8_K_stochastic"]) for r in rows)
        ax.set_ylim(0.8, 2 ** np.ceil(np.log2(top) + 0.3))
        bits = ax.secondary_yaxis("right", functions=(lambda k: np.log2(2 * np.maximum(k, 1e-9) + 1),
                                                      lambda b: (2.0**b - 1) / 2))
        bits.set_ylabel(r"bits $\log_2(2K+1)$")
        bits.yaxis.set_major_locator(FixedLocator([2, 3, 4, 5, 6, 7]))
        bits.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        bits.yaxis.set_minor_locator(NullLocator())
        if panel == "N":
            ax.set_xlabel(rf"inputs $N$ ($m = N$, $\lambda = {PERCDAMP:g}\,$mean diag$(X^{{\top}}X)$)")
        else:
            ax.set_xlabel(rf"damping $\lambda$ ($N = m = {sz['N_lam']}$)")
        ax.set_ylabel(r"multiples of $\delta$")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=2, columnspacing=0.6)
    return fig
