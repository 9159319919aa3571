r"""F1 — deterministic OPTQ error against the damping :math:`\lambda`; tests B1 (and marks B8).

For several column orders, OPTQ with nearest rounding on the infinite grid :math:`\delta\mathbb Z`
is run over a log-spaced sweep of :math:`\lambda`. Plotted (summed over the ``n`` rows of ``W``):
the error :math:`\|X(W-Q)^\top\|_F`, B1's sharp form
:math:`(\frac{\delta^2}{4}\operatorname{tr}(D) - \lambda\|w-q\|^2)^{1/2}` and its data-only form
:math:`(\frac{\delta^2}{4}(\|X\|_F^2 + N\lambda))^{1/2}`. A vertical line per order marks the
smallest :math:`\lambda` of the sweep from which B8's sufficient condition
:math:`K\delta \ge \|w\|_\infty + B + \delta` holds for the 4-bit alphabet
:math:`\mathcal A_7 = \delta\{-7..7\}` on every row; from there on a run on :math:`\mathcal A_7`
cannot clip and equals the plotted infinite-grid run, so B1 applies to it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from .. import algorithms as alg
from ..api import certify
from ..grids import Grid
from ..tightness import midpoint_weights
from . import style
from .common import Check, bound_findings, documented, finish, heterogeneous_layer

NAME = "f1_lambda"
CHECKS = [
    Check("bound_B1_sharp", "empirical_err_fro"),
    Check("bound_B1_data", "empirical_err_fro"),
    Check("bound_B1_sharp_sq", "empirical_err_fro_sq"),
    Check("bound_B8_K", "empirical_max_x_over_delta"),
    Check("bound_B1_sharp_midpoint", "empirical_err_fro_midpoint", "hypotheses_held_midpoint"),
]

SEED = 1
BITS = 4
ORDERS = (("natural", "natural"), ("decreasing_norm", "decreasing norm (act-order)"),
          ("min_pivot", "min-pivot"))

QUICK: dict = dict(m=64, N=16, n=4, lam_rel=np.logspace(-5, 2, 5))
FULL: dict = dict(m=256, N=64, n=16, lam_rel=np.logspace(-6, 2, 25))


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    sz = QUICK if quick else FULL
    W, X = heterogeneous_layer(SEED, sz["m"], sz["N"], sz["n"])
    K_alphabet = 2 ** (BITS - 1) - 1
    # Step chosen so that A_K spans (7/4) max|W|: room for the weights to grow (B8).
    delta = float(np.max(np.abs(W))) / 2 ** (BITS - 2)
    grid = Grid(delta)
    mean_diag = float(np.mean(np.sum(X**2, axis=0)))
    rows, findings = [], []
    for order, _ in ORDERS:
        for rel in sz["lam_rel"]:
            lam = float(rel * mean_diag)
            run = alg.optq(W, X, lam=lam, grid=grid, order=order)
            cert = certify(run, X, full_pivot_check=False)
            b1, b1d, b8 = cert.bound("B1"), cert.bound("B1.data"), cert.bound("B8")
            where = f"F1 seed={SEED} m={sz['m']} N={sz['N']} n={sz['n']} order={order} lam={lam:.6g}"
            findings += bound_findings(cert.bounds, where, ("B1", "B1.data", "B7", "B8"))
            K = float(np.max(b8.extra["K"]))
            # Tightness: weights whose every x_t is a grid midpoint attain B1's sharp form.
            Wm = midpoint_weights(X, lam, delta, n=sz["n"], order=order, seed=SEED)
            cert_m = certify(alg.optq(Wm, X, lam=lam, grid=grid, order=order), X,
                             full_pivot_check=False)
            b1m = cert_m.bound("B1")
            findings += bound_findings(cert_m.bounds, where + " (midpoint weights)", ("B1",))
            assert cert.pivot_check is not None  # OPTQ and LDLQ certificates always carry the pivot check
            rows.append({
                "order": order, "lam": lam, "lam_over_mean_diag": float(rel), "delta": delta,
                "m": sz["m"], "N": sz["N"], "n": sz["n"],
                "empirical_err_fro": float(np.sqrt(np.sum(b1.empirical))),
                "empirical_err_fro_sq": float(np.sum(b1.empirical)),
                "bound_B1_sharp": float(np.sqrt(np.sum(b1.value))),
                "bound_B1_sharp_sq": float(np.sum(b1.value)),
                "bound_B1_data": float(np.sqrt(np.sum(b1d.value))),
                "empirical_trD": float(np.sum(cert.pivot_check.D)),
                "bound_B8_K": K,
                "alphabet_K": K_alphabet,
                "B8_alphabet_suffices": bool(K <= K_alphabet),
                "empirical_max_x_over_delta": float(np.max(b8.extra["max|x_t|"])) / delta,
                "hypotheses_held": bool(np.all(b1.applies)),
                "empirical_err_fro_midpoint": float(np.sqrt(np.sum(b1m.empirical))),
                "bound_B1_sharp_midpoint": float(np.sqrt(np.sum(b1m.value))),
                "hypotheses_held_midpoint": bool(np.all(b1m.applies)),
            })
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows, K_alphabet), CHECKS)


def _plot(rows: list[dict], K_alphabet: int):
    fig, (ax, ax_r) = style.new_figure(nrows=2, height=3.9, sharex=True,
                                       gridspec_kw={"height_ratios": (2.6, 1)})
    colors = [style.COLORS[c] for c in ("blue", "vermillion", "green")]
    data = [r for r in rows if r["order"] == ORDERS[0][0]]
    ax.plot([r["lam"] for r in data], [r["bound_B1_data"] for r in data], color="0.25", ls=":",
            lw=1.2)
    for k, ((order, label), color, marker) in enumerate(zip(ORDERS, colors, style.MARKERS,
                                                             strict=False)):
        sel = [r for r in rows if r["order"] == order]
        lam = np.array([r["lam"] for r in sel])
        ax.plot(lam, [r["bound_B1_sharp"] for r in sel], color=color, ls="--")
        ax.plot(lam, [r["empirical_err_fro"] for r in sel], color=color, marker=marker, ms=3,
                ls="-", label=label)
        ax_r.plot(lam, [r["empirical_err_fro"] / r["bound_B1_sharp"] for r in sel], color=color,
                  marker=marker, ms=3)
        ax_r.plot(lam, [r["empirical_err_fro_midpoint"] / r["bound_B1_sharp_midpoint"] for r in sel],
                  color="black", marker="x", ms=3.5, lw=0.8, ls="none" if k else "-",
                  label=r"midpoint weights: B1 attained" if k == 0 else None)
        ok = [r["lam"] for r in sel if r["B8_alphabet_suffices"]]
        if ok:  # interleaved dashes: coinciding markers of several orders stay visible
            for a in (ax, ax_r):
                a.axvline(min(ok), color=color, lw=0.9, ls=(2 * k, (2, 2 * len(ORDERS) - 2)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(r"$\|X(W-Q)^{\!\top}\|_F$")
    ax.legend(loc="upper left", title="order (solid: error)")
    ax_r.set_ylim(0, 1.12)
    ax_r.set_yticks([0, 0.5, 1])
    ax_r.set_ylabel("error / B1 sharp")
    ax_r.set_xlabel(r"damping $\lambda$")
    ax_r.legend(loc="lower left", fontsize=7, handlelength=1.2)
    styles = [
        (Line2D([], [], color="0.25", ls=":", lw=1.2),
         r"B1 data-only: $\frac{\delta}{2}\,(n\|X\|_F^2+nN\lambda)^{1/2}$"),
        (Line2D([], [], color="0.3", ls="--"),
         r"B1 sharp: $(\Sigma_i\,[\frac{\delta^2}{4}\mathrm{tr}(D)-\lambda\|w_i-q_i\|^2])^{1/2}$"),
        (Line2D([], [], color="0.3", ls=(0, (2, 2)), lw=0.9),
         rf"B8: $K \leq {K_alphabet}$, so $\mathcal{{A}}_{{{K_alphabet}}}$ ({BITS} bits) cannot clip"),
    ]
    fig.legend(*zip(*styles, strict=True), loc="outside upper center", ncols=1)
    return fig
