r"""F2 — the column order: :math:`\operatorname{tr}(D)` and the OPTQ error for five orders; tests B2 and B1.

On a layer whose input columns have norms spread over two decades (and correlated columns),
OPTQ with nearest rounding on :math:`\delta\mathbb Z` is run in the natural, decreasing-norm
(act-order), min-pivot, random and increasing-norm orders, for :math:`N < m` (top) and
:math:`N > m` (bottom, where :math:`\lambda > 0` is needed). Plotted, as fractions of
:math:`\operatorname{tr}(H) = \|X\|_F^2 + N\lambda`: :math:`\operatorname{tr}(D)`, B2's bound on it for
that order, and the scaled error :math:`\frac{4}{n\delta^2}\|X(W-Q)^\top\|_F^2`, which B1 bounds by
:math:`\operatorname{tr}(D)` (B1's error bound is :math:`\frac{\delta^2}{4}\operatorname{tr}(D)` per row).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from ..api import certify
from ..grids import Grid
from . import style
from .common import Check, bound_findings, documented, finish, heterogeneous_layer

NAME = "f2_orders"
CHECKS = [
    Check("bound_B2_trD", "empirical_trD"),
    Check("bound_B1_sharp_scaled", "empirical_err_scaled"),
]

SEED = 2
PERCDAMP = 0.01
ORDERS = (("natural", "natural"), ("decreasing_norm", "decr. norm"), ("min_pivot", "min-pivot"),
          ("random", "random"), ("increasing_norm", "incr. norm"))

QUICK = (("N < m", 96, 16), ("N > m", 12, 32)), 4  # the cases (name, m, N) and n
FULL = (("N < m", 512, 64), ("N > m", 64, 256)), 16


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    cases, n = QUICK if quick else FULL
    rows, findings = [], []
    for case, m, N in cases:
        W, X = heterogeneous_layer(SEED, m, N, n, cond=1e2, spread=2.0)
        lam = PERCDAMP * float(np.mean(np.sum(X**2, axis=0)))
        delta = float(np.std(W)) / 2
        trH = float(np.sum(X**2)) + N * lam
        for order, _ in ORDERS:
            run = alg.optq(W, X, lam=lam, grid=Grid(delta), order=order, seed=SEED)
            cert = certify(run, X, full_pivot_check=False)
            b1, b2 = cert.bound("B1"), cert.bound("B2")
            where = f"F2 seed={SEED} m={m} N={N} n={n} order={order} lam={lam:.6g} delta={delta:.6g}"
            findings += bound_findings(cert.bounds, where, ("B1", "B2"))
            scale = 4.0 / (n * delta**2)
            assert cert.pivot_check is not None  # OPTQ and LDLQ certificates always carry the pivot check
            rows.append({
                "case": case, "m": m, "N": N, "n": n, "order": order, "lam": lam, "delta": delta,
                "trH": trH,
                "empirical_trD": float(np.sum(cert.pivot_check.D)),
                "bound_B2_trD": float(b2.value[0]),
                "B2_k": b2.hypotheses[0].name,
                "empirical_err_scaled": scale * float(np.sum(b1.empirical)),
                "bound_B1_sharp_scaled": scale * float(np.sum(b1.value)),
                "empirical_err_fro": float(np.sqrt(np.sum(b1.empirical))),
                "hypotheses_held": bool(np.all(b1.applies) and np.all(b2.applies)),
            })
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows, [c[0] for c in cases]), CHECKS)


def _plot(rows: list[dict], cases: list[str]):
    fig, axes = style.new_figure(nrows=2, height=4.3, sharex=True, sharey=True)
    x = np.arange(len(ORDERS))
    c_tr, c_b2, c_err = style.COLORS["blue"], style.COLORS["black"], style.COLORS["vermillion"]
    for ax, case in zip(axes, cases, strict=True):
        sel = [r for r in rows if r["case"] == case]
        by = {r["order"]: r for r in sel}
        trH = sel[0]["trH"]
        tr, b2, err = (np.array([by[o][key] for o, _ in ORDERS]) / trH
                       for key in ("empirical_trD", "bound_B2_trD", "empirical_err_scaled"))
        ax.vlines(x, err, tr, color="0.75", lw=0.8, zorder=1)
        ax.plot(x, b2, ls="none", marker="_", ms=12, mew=1.4, color=c_b2,
                label=r"B2 bound on $\mathrm{tr}(D)$")
        ax.plot(x, tr, ls="none", marker="o", ms=5, color=c_tr, label=r"$\mathrm{tr}(D)$ (B1 bound)")
        ax.plot(x, err, ls="none", marker="s", ms=4.5, mfc="white", mew=1.1, color=c_err,
                label=r"error $\frac{4}{n\delta^2}\|X(W-Q)^{\!\top}\|_F^2$")
        ax.set_yscale("log")
        ax.set_ylabel(r"fraction of $\mathrm{tr}(H)$")
        m, N = sel[0]["m"], sel[0]["N"]
        ax.set_title(rf"${case}$: $m = {m}$, $N = {N}$", loc="left", fontsize=8)
        ax.grid(True, which="minor", axis="y", alpha=0.15)
        ax.set_xlim(-0.5, len(ORDERS) - 0.5)
    axes[-1].set_xticks(x, [label for _, label in ORDERS])
    axes[0].legend(loc="lower left", ncols=1)
    return fig
