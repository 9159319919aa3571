r"""F6 — incoherence processing for LDLQ with outlier features; tests B11 (both forms).

I.i.d. Gaussian inputs with a few feature columns multiplied by an outlier scale :math:`s`; LDLQ (A3) with
nearest rounding on :math:`\delta\mathbb Z`, without incoherence processing and with the random orthogonal
transforms of A3i (Kronecker products of Haar factors, randomized Hadamard). Top: the incoherence
:math:`\mu(H)` of the Hessian the algorithm factors (:math:`H` or :math:`VHV^\top`). Bottom, as fractions
of :math:`\operatorname{tr}(H)` (which the rotation leaves unchanged): the scaled proxy loss
:math:`\frac{4}{n\delta^2}\operatorname{tr}((\hat W - W)H(\hat W - W)^\top)`, which B11's worst case
bounds by :math:`\operatorname{tr}(D)`, then :math:`\operatorname{tr}(D)`, which B11's incoherence form
bounds by :math:`\frac{\mu^2}{N}(\operatorname{tr}H^{1/2})^2`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from .. import algorithms as alg
from ..algorithms.incoherence import incoherence
from ..api import certify
from ..calibration import hessian
from ..engine import Incoherence
from ..grids import Grid
from ..instances import make_X
from ..random import generator
from . import style
from .common import Check, bound_findings, documented, finish

NAME = "f6_incoherence"
CHECKS = [
    Check("bound_B11_proxy", "empirical_proxy_loss", "B11_applies"),
    Check("bound_B11_incoherence_trD", "empirical_trD", "B11_incoherence_applies"),
]

SEED = 6
PERCDAMP = 0.01
DELTA = 0.25
METHODS: tuple[tuple[Incoherence | None, str], ...] = (
    (None, "none"), ("kron", "Kronecker (Haar)"), ("hadamard", "randomized Hadamard"))

QUICK: dict = dict(m=64, N=16, n=4, outliers=2, scales=(1.0, 10.0, 100.0))
FULL: dict = dict(m=256, N=64, n=16, outliers=4, scales=tuple(np.logspace(0, 2.5, 11)))


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    sz = QUICK if quick else FULL
    m, N, n = sz["m"], sz["N"], sz["n"]
    rows, findings = [], []
    for s in sz["scales"]:
        # The same seed for every scale: the same X, only the outlier columns are rescaled.
        rng = generator(SEED, "data", "F6 layer")
        X = make_X(rng, m, N, gaussian=True, outliers=sz["outliers"], outlier_scale=float(s))
        W = rng.standard_normal((n, N))
        lam = PERCDAMP * float(np.mean(np.sum(X**2, axis=0)))
        trH = float(np.sum(X**2)) + N * lam
        for kind, _ in METHODS:
            run = alg.ldlq(W, X, lam=lam, grid=Grid(DELTA), incoherence=kind, seed=SEED)
            cert = certify(run, X, full_pivot_check=False)
            b11, inc = cert.bound("B11"), cert.bound("B11.incoherence")
            where = (f"F6 seed={SEED} m={m} N={N} n={n} outliers={sz['outliers']} scale={s:.6g} "
                     f"lam={lam:.6g} delta={DELTA} incoherence={kind}")
            findings += bound_findings(cert.bounds, where, ("B11", "B11.incoherence"))
            Xv = X if run.transform is None else X @ run.transform.V.T
            assert cert.pivot_check is not None  # OPTQ and LDLQ certificates always carry the pivot check
            rows.append({
                "outlier_scale": float(s), "incoherence": kind or "none", "m": m, "N": N, "n": n,
                "lam": lam, "delta": DELTA, "trH": trH,
                "empirical_mu_H": incoherence(hessian(Xv, lam)),
                "empirical_proxy_loss": float(np.sum(b11.empirical)),
                "bound_B11_proxy": float(np.sum(b11.value)),
                "empirical_trD": float(np.sum(cert.pivot_check.D)),
                "bound_B11_incoherence_trD": float(inc.value[0]),
                "B11_applies": bool(np.all(b11.applies)),
                "B11_incoherence_applies": bool(np.all(inc.applies)),
            })
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows), CHECKS)


def _plot(rows: list[dict]):
    fig, (ax_mu, ax) = style.new_figure(nrows=2, height=4.9, sharex=True,
                                        gridspec_kw={"height_ratios": (1, 1.6)})
    colors = [style.COLORS[c] for c in ("vermillion", "blue", "green")]
    N, n = rows[0]["N"], rows[0]["n"]
    for (kind, label), color, marker in zip(METHODS, colors, style.MARKERS[:3], strict=True):
        sel = [r for r in rows if r["incoherence"] == (kind or "none")]
        s = np.array([r["outlier_scale"] for r in sel])
        trH = np.array([r["trH"] for r in sel])
        ax_mu.plot(s, [r["empirical_mu_H"] for r in sel], color=color, marker=marker, label=label)
        ax.plot(s, np.array([r["bound_B11_incoherence_trD"] for r in sel]) / trH, color=color,
                ls="--", lw=1.0)
        ax.plot(s, np.array([r["empirical_trD"] for r in sel]) / trH, color=color, ls="-",
                marker=marker)
        scaled = 4.0 * np.array([r["empirical_proxy_loss"] for r in sel]) / (n * sel[0]["delta"] ** 2)
        ax.plot(s, scaled / trH, color=color, ls=":", marker=marker, mfc="white", lw=1.0)
    ax_mu.axhline(np.sqrt(N), color="0.4", lw=0.8, ls="-.")
    ax_mu.text(1.0, np.sqrt(N), rf"  maximum $\sqrt{{N}} = {np.sqrt(N):g}$", va="bottom", ha="left",
               fontsize=7, color="0.3")
    ax_mu.set_ylim(0, np.sqrt(N) * 1.25)
    ax_mu.set_ylabel(r"incoherence $\mu(H)$")
    ax_mu.legend(loc="lower right", title="incoherence processing", ncols=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"scale $s$ of the outlier features")
    ax.set_ylabel(r"fraction of $\mathrm{tr}(H)$")
    kinds = [
        (Line2D([], [], color="0.3", ls="--", lw=1.0),
         r"B11: $\frac{\mu^2}{N}(\mathrm{tr}\,H^{1/2})^2$"),
        (Line2D([], [], color="0.3", ls="-", marker="o"), r"$\mathrm{tr}(D)$ (B11 worst case)"),
        (Line2D([], [], color="0.3", ls=":", marker="o", mfc="white", lw=1.0),
         r"proxy $\frac{4}{n\delta^2}\mathrm{tr}((\hat W-W)H(\hat W-W)^{\top})$"),
    ]
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 8)  # headroom above the data for the legend
    ax.legend(*zip(*kinds, strict=True), loc="upper right", fontsize=7)
    return fig
