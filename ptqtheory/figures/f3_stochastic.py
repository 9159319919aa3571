r"""F3 — stochastic OPTQ: :math:`\|X(w-q)\|_\infty` over seeds as :math:`m` grows; tests B5.

For each number of samples :math:`m` (correlated inputs, :math:`N` fixed), one weight row is
quantized by OPTQ with unbiased stochastic rounding on :math:`\delta\mathbb Z` (A2s) and, for
comparison, by RTN with stochastic rounding, once per seed. Plotted: the median and the 5-95%
range over seeds of :math:`\|X(w-q)\|_\infty`, against B5 at :math:`p = 0.1` and :math:`0.01`
(:math:`\max_i \delta\sqrt{S_i\log(2m/p)/2}`, :math:`S_i = (XLL^\top X^\top)_{ii}`) and B5's uniform
form with :math:`S_i \le \max_t D_t` at :math:`p = 0.01`. The bounds depend on :math:`X`,
:math:`\lambda` and the order only, so they are one value per :math:`m`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from .. import bounds
from ..api import certify
from ..calibration import Damping
from ..grids import Grid
from ..instances import make_X
from ..random import generator
from . import style
from .common import Check, bound_findings, documented, finish

NAME = "f3_stochastic"
PS = (0.1, 0.01)
CHECKS = [
    Check("bound_B5_p1e-1", "empirical_err_inf_optq", "B5_applies", p=0.1),
    Check("bound_B5_p1e-2", "empirical_err_inf_optq", "B5_applies", p=0.01),
    Check("bound_B5_uniform_p1e-2", "empirical_err_inf_optq", "B5_applies", p=0.01),
]

SEED = 3
PERCDAMP = 0.01
COND = 1e4
DELTA = 0.25

QUICK: dict = dict(N=16, ms=(8, 32, 128), seeds=8)
FULL: dict = dict(N=64, ms=(16, 32, 64, 128, 256, 512, 1024, 2048), seeds=100)


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    sz = QUICK if quick else FULL
    N = sz["N"]
    W = generator(SEED, "data", "F3 weights").standard_normal((1, N))
    grid = Grid(DELTA)
    rows, findings = [], []
    for m in sz["ms"]:
        X = make_X(generator(SEED + m, "data", "F3 inputs"), m, N, cond=COND)
        for seed in range(sz["seeds"]):
            run = alg.optq(W, X, lam=Damping.percdamp(PERCDAMP), grid=grid, rounding="stochastic",
                           seed=seed)
            ctx = bounds.context(run, X)
            b5 = {p: bounds.b5(ctx, p) for p in PS}
            where = f"F3 m={m} N={N} seed={seed} lam={run.lam:.6g} delta={DELTA}"
            for p in PS:
                findings += bound_findings(b5[p], where + f" p={p}")
            rtn = alg.rtn(W, grid=grid, rounding="stochastic", seed=seed)
            rtn_inf = float(certify(rtn, X, bounds=False).err_inf[0])
            sample, uniform = b5[0.01]
            rows.append({
                "m": m, "N": N, "seed": seed, "lam": float(run.lam), "delta": DELTA,
                "empirical_err_inf_optq": float(sample.empirical[0]),
                "bound_B5_p1e-1": float(b5[0.1][0].value[0]),
                "bound_B5_p1e-2": float(sample.value[0]),
                "bound_B5_uniform_p1e-2": float(uniform.value[0]),
                "B5_p1e-1_holds_per_sample": bool(b5[0.1][0].holds[0]),
                "B5_p1e-2_holds_per_sample": bool(sample.holds[0]),
                "B5_applies": bool(sample.applies[0]),
                "empirical_err_inf_rtn": rtn_inf,
            })
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows, sz["ms"]), CHECKS)


def _band(ax, ms, rows, key, color, label, marker):
    vals = [np.array([r[key] for r in rows if r["m"] == m]) for m in ms]
    lo, med, hi = (np.array([np.quantile(v, q) for v in vals]) for q in (0.05, 0.5, 0.95))
    ax.fill_between(ms, lo, hi, color=color, alpha=0.22, lw=0)
    ax.plot(ms, med, color=color, marker=marker, label=label)


def _plot(rows: list[dict], ms):
    fig, ax = style.new_figure(height=2.9)
    ms = np.asarray(ms)
    first = [next(r for r in rows if r["m"] == m) for m in ms]
    for key, label, kw in (("uniform_p1e-2", r"B5 uniform, $p = 0.01$", dict(color="0.45", ls=":", lw=1.3)),
                           ("p1e-2", r"B5, $p = 0.01$", dict(color="black", ls="--")),
                           ("p1e-1", r"B5, $p = 0.1$", dict(color="black", ls="-", lw=0.9))):
        ax.plot(ms, [r[f"bound_B5_{key}"] for r in first], label=label, **kw)
    _band(ax, ms, rows, "empirical_err_inf_rtn", style.COLORS["vermillion"], "RTN, stochastic", "s")
    _band(ax, ms, rows, "empirical_err_inf_optq", style.COLORS["blue"], "OPTQ, stochastic (A2s)", "o")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(r"samples $m$")
    ax.set_ylabel(r"$\|X(w-q)\|_\infty$")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[:2:-1], labels[:2:-1], loc="lower right",
              title=f"median, 5–95% over {len(rows) // len(ms)} seeds")
    fig.legend(handles[2::-1], labels[2::-1], loc="outside upper center", ncols=3,
               handlelength=1.5, columnspacing=0.7)
    return fig
