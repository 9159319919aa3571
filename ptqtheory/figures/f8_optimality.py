r"""F8 — how far from optimal: OPTQ's optimality-ratio bound per real layer and order, and the exact ratio.

On the real linear layers of the embedded all-MiniLM-L6-v2 (inputs captured with forward pre-hooks on
the float model, real tokens only, float64), with :math:`\hat X = [X; \sqrt\lambda I]`,
:math:`H = \hat X^\top\hat X` and the pivots :math:`D_t` of :math:`H` in processing order:

**Top: the ratio bound per layer and order.** For one row on a grid with steps :math:`\delta_t`,

.. math:: \rho = \frac{\operatorname{AM}_t(\delta_t^2D_t)}{12\,G_N\,\operatorname{GM}_t(\delta_t^2D_t)},
   \qquad G_N = \frac{\Gamma(N/2+1)^{2/N}}{(N+2)\pi},

is OPTQ's mean error :math:`\sum_t\delta_t^2D_t/12` divided by L1, the lower bound
:math:`N G_N \operatorname{GM}_t(\delta_t^2D_t)` on the mean error of *every* quantizer onto the grid,
both for :math:`w` uniform modulo the grid (:mod:`ptqtheory.lower_bounds`). So
:math:`E[\text{OPTQ}] / E[\text{optimum}] \le \rho` in that model. The order of the columns changes
only the arithmetic mean of the pivots: their product is :math:`\det H` for every order (I1). Plotted
for the natural, decreasing-norm (act-order) and min-pivot orders on all 36 encoder linears, with a
4-bit per-channel min-max grid and percdamp 0.01 (:math:`\lambda = 0.01\operatorname{mean}
\operatorname{diag}(X^\top X)`): the median over the rows (markers) and the worst row (thin line).
With one step per row, :math:`\delta` cancels from :math:`\rho`, so every row of a layer has the same
:math:`\rho` and median and worst coincide; both are kept, as the CSV's columns, so that a grid with
steps per entry would show the spread. The dashed line is :math:`1/(12G_N)`, the cube's loss against
the ball: the least :math:`\rho` can be (all :math:`\delta_t^2D_t` equal, AM = GM).

**Bottom: the exact ratio on small sub-problems.** The first :math:`N_{sub}` input columns of a layer
and of some of its rows, a fixed 3-bit per-row min-max grid fitted to those rows, percdamp 0.01 of
the sub-problem: OPTQ's cost over the exact optimum's, per row, from :func:`ptqtheory.optimal`
(Schnorr-Euchner enumeration from OPTQ's solution; median marker, a line up to the largest, a cross
for the ratio of the sums over the rows; the rows whose optimality was proven within the node budget
are counted in the CSV), and the ratio bound :math:`\rho` of the same sub-problem (open marker).
The bound is about the *mean* over :math:`w` uniform modulo the grid, with no clipping; the exact
ratio is per *actual* row of the model (not drawn uniform modulo the grid, on a finite grid where
OPTQ may clip), so the two are compared, not checked as an inequality. The ratio of the sums is the
empirical counterpart of what the bound is about (a ratio of means).

The only inequality checked (``CHECKS``) holds for every row: the search starts from OPTQ's point and
keeps the best point found, so the optimum's cost (``empirical_optimal_cost``) is at most OPTQ's
(``bound_optq_cost``); the exact ratio is therefore at least 1.

References
----------
Conway & Sloane, "Sphere Packings, Lattices and Groups" (1999), ch. 2 and 21 (normalized second
moment; the ball's is the least); Schnorr & Euchner, Math. Programming 66 (1994); Chen et al., "The
Geometry of LLM Quantization: GPTQ as Babai's Nearest Plane Algorithm", arXiv 2507.18553.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import algorithms as alg
from ..calibration import Damping
from ..grids import Grid
from ..lower_bounds import ball_second_moment, optimality_ratio, ratio_floor
from ..optimal import optimal
from . import style
from .common import Check, documented, failures, finish

NAME = "f8_optimality"
CHECKS = [Check("bound_optq_cost", "empirical_optimal_cost")]

PERCDAMP = 0.01
BITS = 4
SUB_BITS = 3
PIVOT_ROWS = 4  # rows of the OPTQ run that gives the pivots (D and lam do not depend on W)
ORDERS = (("natural", "natural"), ("decreasing_norm", "decr. norm (act-order)"), ("min_pivot", "min-pivot"))
KINDS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
         "intermediate.dense", "output.dense")
SHORT = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
         "attention.output.dense": "o", "intermediate.dense": "fc1", "output.dense": "fc2"}
# Sub-problems: one layer per kind of input (attention input, attention output, MLP input, MLP hidden),
# from blocks across the depth.
SUB_LAYERS = ("encoder.layer.0.attention.self.query", "encoder.layer.2.attention.output.dense",
              "encoder.layer.3.intermediate.dense", "encoder.layer.5.output.dense")


QUICK: dict = dict(texts=16, layers=[f"encoder.layer.0.{k}" for k in KINDS[::3] + KINDS[4:5]],
                   sub_layers=(SUB_LAYERS[0], "encoder.layer.0.attention.output.dense"),
                   sub_N=(8, 12), sub_rows=6)
FULL: dict = dict(texts=64, layers=[f"encoder.layer.{b}.{k}" for b in range(6) for k in KINDS],
                  sub_layers=SUB_LAYERS, sub_N=(8, 12, 16, 20, 24), sub_rows=16)


def capture(names: list[str], texts: int) -> tuple[dict, dict]:
    """``(weights, inputs)`` of the named encoder linears of the float MiniLM, float64.

    Inputs: the first ``texts`` calibration paragraphs of :func:`ptqtheory.models.text.split`, at most
    128 tokens each, padding dropped (:func:`ptqtheory.models.capture.capture_inputs`); the forward
    pass stops after the last layer named.
    """
    import torch

    from ..models import minilm, text
    from ..models.capture import capture_inputs

    model, tok = minilm.load()
    mods = dict(model.named_modules())
    layers = {n: mods[n] for n in names}
    cal, _ = text.split()
    batches = minilm.batches(tok, cal[:texts], max_length=128, batch_size=16)
    order = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n in layers]
    X = capture_inputs(model, layers, batches, minilm.forward, stop_after=order[-1])
    W = {n: layers[n].weight.detach().to(torch.float64).numpy().copy() for n in names}
    return W, X


def _layer_rows(names, W, X) -> list[dict]:
    rows = []
    for index, name in enumerate(names):
        Wl, Xl = W[name], X[name]
        n, N = Wl.shape
        grid = Grid.minmax(Wl, bits=BITS)
        # One step per row: broadcast to (n, N); the processing order does not matter then.
        steps = np.broadcast_to(np.asarray(grid.delta, dtype=float).reshape(n, 1), (n, N))
        g = ball_second_moment(N)
        for order, _ in ORDERS:
            # D and lam depend on X and the order only (min-pivot chooses from H); a few rows suffice.
            run = alg.optq(Wl[:PIVOT_ROWS], Xl, lam=Damping.percdamp(PERCDAMP),
                           grid=Grid.minmax(Wl[:PIVOT_ROWS], bits=BITS), order=order)
            rho = optimality_ratio(run.pivots.D, steps)
            rows.append({
                "panel": "layers", "layer": name, "layer_index": index, "block": int(name.split(".")[2]),
                "kind": SHORT[name.split(".", 3)[3]], "n": n, "N": N, "m": Xl.shape[0], "bits": BITS,
                "percdamp": PERCDAMP, "lam": float(run.lam), "order": order, "G_N": g,
                "ratio_floor": ratio_floor(N),
                "ratio_bound_median": float(np.median(rho)), "ratio_bound_worst": float(np.max(rho)),
                "ratio_bound_best": float(np.min(rho)),
            })
    return rows


def _sub_rows(sz, W, X) -> tuple[list[dict], list[dict]]:
    per_row, summary = [], []
    for name in sz["sub_layers"]:
        Wl, Xl = W[name], X[name]
        # Evenly spaced rows: no random choice.
        pick = np.unique(np.linspace(0, Wl.shape[0] - 1, sz["sub_rows"]).round().astype(int))
        for N in sz["sub_N"]:
            Ws, Xs = Wl[pick, :N], Xl[:, :N]
            grid = Grid.minmax(Ws, bits=SUB_BITS)  # no groups: a fixed grid, as pt.optimal requires
            run = alg.optq(Ws, Xs, lam=Damping.percdamp(PERCDAMP), grid=grid)
            opt = optimal(Ws, Xs, lam=float(run.lam), grid=grid)
            steps = np.broadcast_to(np.asarray(grid.delta, dtype=float).reshape(-1, 1), Ws.shape)
            rho = optimality_ratio(run.pivots.D, steps)
            ratio = opt.ratio
            base = {"layer": name, "N": N, "m": Xs.shape[0], "bits": SUB_BITS, "percdamp": PERCDAMP,
                    "lam": float(opt.lam), "order": "natural", "G_N": ball_second_moment(N),
                    "ratio_floor": ratio_floor(N)}
            for j, i in enumerate(pick):
                per_row.append({
                    "panel": "subproblem_rows", **base, "row": int(i), "delta": float(steps[j, 0]),
                    "ratio_bound": float(rho[j]), "exact_ratio": float(ratio[j]),
                    "bound_optq_cost": float(opt.start_cost[j]), "empirical_optimal_cost": float(opt.cost[j]),
                    "hypotheses_held": True, "proven": bool(opt.proven[j]), "nodes": int(opt.nodes[j]),
                })
            summary.append({
                "panel": "subproblems", **base, "rows": len(pick), "proven_rows": int(np.sum(opt.proven)),
                "ratio_bound_median": float(np.median(rho)), "ratio_bound_worst": float(np.max(rho)),
                "exact_ratio_median": float(np.median(ratio)), "exact_ratio_max": float(np.max(ratio)),
                "exact_ratio_min": float(np.min(ratio)),
                "ratio_of_means": float(np.sum(opt.start_cost) / np.sum(opt.cost)),
                "nodes_median": float(np.median(opt.nodes)), "nodes_max": int(np.max(opt.nodes)),
            })
    return per_row, summary


@documented
def build(out_dir: Path, quick: bool = False) -> dict:
    """Build F8: capture real layers, compute the ratio bounds and exact optima, plot, save PDF, PNG, CSV.

    ``quick``: three layers of the first block, 16 calibration paragraphs and two small sub-problem
    sizes (under 10 s on one core, model loading included); the full build covers all 36 layers with
    64 paragraphs (about 30 s). A row's ``panel`` says which: ``layers`` top, ``subproblems`` bottom,
    ``subproblem_rows`` the rows behind the bottom panel. ``findings``: a row whose optimum came out
    above OPTQ's cost."""
    sz = QUICK if quick else FULL
    names = list(dict.fromkeys(sz["layers"] + list(sz["sub_layers"])))
    W, X = capture(names, sz["texts"])
    layer_rows = _layer_rows(sz["layers"], W, X)
    per_row, summary = _sub_rows(sz, W, X)
    rows = layer_rows + summary + per_row
    findings = failures(per_row, CHECKS)
    return finish(out_dir, NAME, rows, findings, lambda: _plot(layer_rows, summary))


def _plot(layer_rows: list[dict], summary: list[dict]):
    from matplotlib.lines import Line2D

    fig, (ax, ax_s) = style.new_figure(nrows=2, width=2 * style.PANEL[0], height=5.2,
                                       gridspec_kw={"height_ratios": (1.25, 1)})
    colors = [style.COLORS[c] for c in ("vermillion", "blue", "green")]
    for (order, label), color, marker in zip(ORDERS, colors, style.MARKERS[:3], strict=True):
        sel = [r for r in layer_rows if r["order"] == order]
        x = np.array([r["layer_index"] for r in sel])
        ax.plot(x, [r["ratio_bound_worst"] for r in sel], color=color, lw=0.6)
        ax.plot(x, [r["ratio_bound_median"] for r in sel], color=color, marker=marker, ls="none",
                label=label)
    nat = [r for r in layer_rows if r["order"] == ORDERS[0][0]]
    ax.step([r["layer_index"] for r in nat], [r["ratio_floor"] for r in nat], where="mid", color="0.35",
            ls="--", lw=0.8)
    ax.set_yscale("log")
    style.plain_log_ticks(ax.yaxis, subs=(1.0, 1.5, 2.0, 3.0, 5.0))
    ax.set_ylabel(r"ratio bound $\rho = \frac{\mathrm{AM}(\delta^2D)}{12\,G_N\,\mathrm{GM}(\delta^2D)}$")
    ax.set_xticks([r["layer_index"] for r in nat])
    ax.set_xticklabels([r["kind"] if r["kind"] != "q" else f"{r['block']}:q" for r in nat], rotation=90,
                       fontsize=6)
    ax.set_xlabel(f"MiniLM layer (block:kind), {BITS}-bit per-channel min-max grid, percdamp {PERCDAMP:g}")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], color="0.3", lw=0.6), Line2D([], [], color="0.35", ls="--", lw=0.8)]
    labels += ["worst row (line)", r"$1/(12G_N)$: all $\delta_t^2D_t$ equal"]
    ax.legend(handles, labels, loc="upper left", ncols=3, fontsize=6.5)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 1.3)  # headroom for the legend

    layers = list(dict.fromkeys(r["layer"] for r in summary))
    lcolors = [style.COLORS[c] for c in ("blue", "vermillion", "green", "purple", "orange", "sky")]
    sizes = sorted({r["N"] for r in summary})
    for k, (name, color, marker) in enumerate(zip(layers, lcolors, style.MARKERS, strict=False)):
        sel = [r for r in summary if r["layer"] == name]
        x = np.array([sizes.index(r["N"]) for r in sel]) + (k - (len(layers) - 1) / 2) * 0.13
        med = np.array([r["exact_ratio_median"] for r in sel])
        top = np.array([r["exact_ratio_max"] for r in sel])
        ax_s.vlines(x, med, top, color=color, lw=0.8)
        short = f"{name.split('.')[2]}.{SHORT[name.split('.', 3)[3]]}"
        ax_s.plot(x, med, color=color, marker=marker, ls="none", label=short)
        ax_s.plot(x, [r["ratio_of_means"] for r in sel], color=color, marker="x", ls="none", ms=3.5)
        ax_s.plot(x, [r["ratio_bound_median"] for r in sel], color=color, marker=marker, mfc="white",
                  ls="none", ms=4)
    ax_s.axhline(1.0, color="0.35", lw=0.6)
    ax_s.set_xticks(range(len(sizes)))
    ax_s.set_xticklabels([str(s) for s in sizes])
    ax_s.set_xlabel(r"sub-problem: first $N_{sub}$ columns, " f"{SUB_BITS}-bit per-row grid, percdamp "
                    f"{PERCDAMP:g}")
    ax_s.set_ylabel("OPTQ cost / optimum")
    kinds = [(Line2D([], [], color="0.3", marker="o", ls="-", lw=0.8),
              "exact, per row: median (marker) to max"),
             (Line2D([], [], color="0.3", marker="x", ls="none", ms=3.5),
              "exact: sum of OPTQ's costs / sum of the optima"),
             (Line2D([], [], color="0.3", marker="o", mfc="white", ls="none"),
              r"bound $\rho$ (mean over $w$ uniform mod grid)")]
    first = ax_s.legend(*zip(*kinds, strict=True), loc="upper left", fontsize=6.5)
    ax_s.add_artist(first)
    ax_s.legend(loc="upper right", fontsize=6.5, ncols=2, title="layer (block.kind)")
    lo, hi = ax_s.get_ylim()
    ax_s.set_ylim(0.95, hi + 0.45 * (hi - 0.95))
    ax_s.set_title(r"bound: mean over $w$ uniform modulo the grid; exact: the model's rows "
                   "(compared, not an inequality)", fontsize=7, color="0.3")
    return fig
