r"""F10 — INT against dINT at equal bits: OPTQ's error and its bounds on a finite alphabet.

OPTQ (nearest rounding, ``percdamp`` 0.01) on a synthetic layer whose rows mix many small weights
with a few large ones (Student-t weights, 3 degrees of freedom), per output channel onto two
alphabets with the same :math:`2^b - 1` values: the symmetric integer format
:math:`\{0, \pm1, \dots, \pm(2^{b-1}-1)\}` and dINT :math:`\{0, \pm\frac12, \pm1, \dots,
\pm(2^{b-1}-2)\}` (``pt.Alphabet.integer`` / ``pt.Alphabet.dint``, absmax scale per row from
:meth:`ptqtheory.Alphabet.fit`). Plotted against the bits :math:`b`, summed over the rows where no
entry clipped (the bounds' hypothesis): the error :math:`\|X(w-q)\|^2`, B1 with the row's largest
gap :math:`s_iG` (the a-priori form) and ``B1.local`` with the gap of each :math:`x_t` (a-posteriori),
summed over the rows on which neither format clipped (so that both bounds apply and the sums compare;
``rows_compared`` in the CSV; ``err_sq_all_rows`` sums every row).
Both bounds are proved in docs/theory.md section 7; dINT's largest gap (1) is that of INT while its
range is one step shorter, so its scale, and its B1, are larger by :math:`(2^{b-1}-1)/(2^{b-1}-2)`
(squared). INT's gaps are all equal, so its B1.local coincides with its B1 (the lines overlap).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from .. import bounds
from ..alphabets import Alphabet
from ..calibration import Damping
from ..instances import make_X
from ..random import generator
from . import style
from .common import Check, bound_findings, documented, failures, finish

NAME = "f10_dint"
CHECKS = [Check("bound_B1", "empirical_err_sq"), Check("bound_B1_local", "empirical_err_sq")]
FORMATS = ("INT", "dINT")
SEED = 10
PERCDAMP = 0.01


QUICK: dict = dict(bits=(3, 4), N=24, m=48, n=12)
FULL: dict = dict(bits=(3, 4, 5, 6, 8), N=256, m=512, n=128)


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    """Build F10: run OPTQ on INT and dINT alphabets, evaluate B1 and B1.local, plot, save PDF, PNG, CSV.

    One CSV row per format and bit width."""
    sz = QUICK if quick else FULL
    rng = generator(SEED, "data", "F10 layer")
    X = make_X(rng, sz["m"], sz["N"], gaussian=True)
    W = rng.standard_t(3, (sz["n"], sz["N"])) * 0.02
    rows, findings = [], []
    for bits in sz["bits"]:
        got = {}
        for fmt in FORMATS:
            A = (Alphabet.integer(bits) if fmt == "INT" else Alphabet.dint(bits)).fit(W)
            run = alg.optq(W, X, lam=Damping.percdamp(PERCDAMP), grid=A)
            checks = {c.label: c for c in bounds.b1(bounds.context(run, X))}
            findings += bound_findings(list(checks.values()), f"F10 seed={SEED} {fmt}{bits} n={sz['n']} "
                                                              f"N={sz['N']} m={sz['m']}")
            got[fmt] = (A, run, checks)
        # the rows where neither format clipped: both bounds apply there, and the sums compare
        ok = np.logical_and.reduce([got[f][2]["B1"].applies for f in FORMATS])
        for fmt in FORMATS:
            A, run, checks = got[fmt]
            rows.append({
                "format": fmt, "bits": bits, "values": int(A.values.size), "n": sz["n"], "N": sz["N"],
                "m": sz["m"], "lam": float(run.lam), "rows_compared": int(np.sum(ok)),
                "rows_clipped": int(np.sum(~checks["B1"].applies)), "hypotheses_held": bool(np.any(ok)),
                "empirical_err_sq": float(np.sum(checks["B1"].empirical[ok])),
                "bound_B1": float(np.sum(checks["B1"].value[ok])),
                "bound_B1_local": float(np.sum(checks["B1.local"].value[ok])),
                "err_sq_all_rows": float(np.sum(checks["B1"].empirical)),
                "mean_scale": float(np.mean(A.scale)),
            })
    findings += failures(rows, CHECKS)
    return finish(out_dir, NAME, rows, findings, lambda: _plot(rows))


def _plot(rows: list[dict]):
    fig, ax = style.new_figure(nrows=1, height=2.8)
    colors = {"INT": style.COLORS["blue"], "dINT": style.COLORS["vermillion"]}
    for fmt, marker in zip(FORMATS, ("o", "s"), strict=True):
        sel = [r for r in rows if r["format"] == fmt]
        b = [r["bits"] for r in sel]
        c = colors[fmt]
        ax.plot(b, [r["bound_B1"] for r in sel], color=c, ls="--", marker=marker, mfc="white",
                label=f"B1 (largest gap), {fmt}")
        ax.plot(b, [r["bound_B1_local"] for r in sel], color=c, ls=":", marker=marker, mfc="white",
                label=f"B1.local (local gap), {fmt}")
        ax.plot(b, [r["empirical_err_sq"] for r in sel], color=c, ls="-", marker=marker,
                label=rf"$\|X(w-q)\|^2$, {fmt}")
    ax.set_yscale("log")
    ax.set_xlabel(r"bits $b$ ($2^b - 1$ values each; rows where neither clipped)")
    ax.set_ylabel(r"$\sum_i \|X(w_i - q_i)\|^2$")
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=2, columnspacing=0.6)
    return fig
