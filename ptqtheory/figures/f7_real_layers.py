r"""F7 — real layers: every bound on every linear layer of all-MiniLM-L6-v2, as empirical / bound.

Read from a ``ptqtheory validate`` report (:mod:`ptqtheory.models.validate`), which quantizes all 36
linear layers of the embedded model block by block with each setting (method and bit width) and
certifies every row. Top: for each bound label in the report (B1, B2, B7, B9, ..., with forms such as
``B1.data``) and each (setting, layer) where the bound's hypotheses held on some row, the largest
ratio :math:`\text{empirical}/\text{bound}` over the layer's rows (log scale; 1 = bound attained,
beyond 1 = violated), coloured by method. Bottom: per setting, the cosine similarity of the quantized
to the float model's sentence embeddings on held-out text (mean and minimum).

The CSV has one row per (setting, layer, bound) in ratio form: ``bound_ratio`` is 1 and
``empirical_max_ratio`` the layer's largest ratio, so the usual ``bound >= empirical`` check reads
``ratio <= 1``. It applies where ``hypotheses_held`` (some row of the layer met the hypotheses):
deterministic and per-run bounds on every such row (``checked_deterministic``), probability bounds
(which hold w.p. :math:`\ge 1-p` per row of :math:`W`) with a failure allowance
(``checked_probability``): a layer's maximum fails with probability at most ``rows_applied * p``,
at most :data:`P_LAYER` for the report's ``p`` (1e-6 by default) and MiniLM's at most 1536 rows.
Bounds of kind ``"mean"`` (B12, a statement about an expectation) are plotted but not checked.
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from ..report import bound_key
from . import style
from .common import Check, ReportMissing, failures, finish

NAME = "f7_real_layers"
USES_REPORT = True

DEFAULT_REPORT = Path("ptqtheory-report") / "report.json"
VALIDATE_MINUTES = 5  # measured: `time ptqtheory validate`, 4 min 25 s on 2 cores
HOW_TO_PRODUCE = (f"run `ptqtheory validate --out {DEFAULT_REPORT.parent}` first (about "
                  f"{VALIDATE_MINUTES} minutes on 2 cores)")

P_LAYER = 0.01

CHECKS = [
    Check("bound_ratio", "empirical_max_ratio", "checked_deterministic"),
    Check("bound_ratio", "empirical_max_ratio", "checked_probability", p=P_LAYER),
]

QUICK_TOKENS = 128  # fewer than one batch: validate takes one whole calibration batch (~450 tokens)
QUICK_HELDOUT = 8

XMIN = 1e-3
"""Ratios below this (including 0: the error is within float64 rounding) are drawn at the edge."""

METHODS = {  # method -> (legend label, THEORY.md algorithm, colour)
    "optq": ("OPTQ (A2')", "A2'", "blue"),
    "optq-stochastic": ("stochastic OPTQ (A2s)", "A2s", "orange"),
    "qronos": ("Qronos (A4)", "A4", "vermillion"),
    "qronos-ls": ("Qronos, least squares (A4')", "A4'", "purple"),
    "ldlq-incoherence": ("LDLQ + incoherence (A3i)", "A3i", "green"),
    "rtn": ("RTN (A1)", "A1", "sky"),
    "gpfq": ("GPFQ (A5)", "A5", "black"),
}


def report_path(report=None) -> Path:
    """The report file ``report`` names (a ``report.json`` or the folder holding one; default
    :data:`DEFAULT_REPORT`). Raises :class:`ReportMissing` (with how to produce it) if absent."""
    path = Path(DEFAULT_REPORT if report is None else report)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        where, tail = (f"{path} (the default)", ", or pass --report PATH") if report is None else (path, "")
        raise ReportMissing(f"no `ptqtheory validate` report at {where}: {HOW_TO_PRODUCE}{tail}")
    return path


def load_report(report=None) -> dict:
    """Read and sanity-check a ``ptqtheory validate`` report (see :func:`report_path`)."""
    path = report_path(report)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        configs = data["configs"]
        for c in configs:
            missing = {"config", "method", "bits", "cosine_mean", "cosine_min", "layers"} - set(c)
            missing |= {"layer" for lr in c["layers"] if "layer" not in lr}
            missing |= {"summary.bounds" for lr in c["layers"] if "bounds" not in lr["summary"]}
            if missing:
                raise KeyError(", ".join(sorted(missing)))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a `ptqtheory validate` report ({type(exc).__name__}: {exc}); "
                         f"{HOW_TO_PRODUCE}") from None
    if not configs or not any(c["layers"] for c in configs):
        raise ValueError(f"{path} holds no layers; {HOW_TO_PRODUCE}")
    return data


def quick_report(out_dir) -> Path:
    """Run a small ``ptqtheory validate`` into ``out_dir`` (tables to stderr); return its ``report.json``."""
    from ..models.pipeline import Config
    from ..models.validate import run_validate

    with contextlib.redirect_stdout(sys.stderr):
        run_validate(out_dir=out_dir, configs=(Config("optq", 4), Config("optq-stochastic", 4)),
                     tokens=QUICK_TOKENS, heldout=QUICK_HELDOUT, workers=1)
    return Path(out_dir) / "report.json"


def rows_from_report(data: dict) -> list[dict]:
    """The CSV rows: one per (setting, layer, bound) of the report, in report order."""
    p = float(data.get("p", float("nan")))
    rows = []
    for c in data["configs"]:
        for lr in c["layers"]:
            s = lr["summary"]
            n, N = lr.get("shape") or (None, None)
            for label, b in sorted(s["bounds"].items(), key=lambda kv: bound_key(kv[0])):
                held = int(b["rows_applied"]) > 0 and b.get("max_ratio") is not None
                rows.append({
                    "config": c["config"], "method": c["method"], "bits": c["bits"],
                    "group_size": c.get("group_size"), "layer": lr["layer"], "n": n, "N": N,
                    "lam": lr.get("lam"), "bound": label, "kind": b["kind"],
                    "p": p if b["kind"] == "probability" else None,
                    "rows": s.get("rows"), "rows_applied": int(b["rows_applied"]),
                    "violations": int(b["violations"]),
                    "empirical_max_ratio": float(b["max_ratio"]) if held else None,
                    "bound_ratio": 1.0,
                    "hypotheses_held": held,
                    "checked_deterministic": held and b["kind"] in ("deterministic", "per-run"),
                    "checked_probability": held and b["kind"] == "probability",
                    "identity": s.get("identity"), "identity_max_gap": s.get("identity_max_gap"),
                    "identity_holds": s.get("identity_holds"), "pivots_hold": s.get("pivots_hold"),
                    "clipped_rows": s.get("clipped_rows"),
                    "cosine_mean": float(c["cosine_mean"]), "cosine_min": float(c["cosine_min"]),
                })
    return rows


def report_findings(data: dict, rows: list[dict]) -> list[str]:
    """Identities that failed, bounds that failed where they applied (a note for probability
    bounds), the CSV checks, and a note if the report's ``p`` is too large for :data:`P_LAYER`."""
    out = []
    for c in data["configs"]:
        for lr in c["layers"]:
            s = lr["summary"]
            if s.get("identity") is not None and not (s.get("identity_holds") and s.get("pivots_hold")):
                out.append(f"identity {s['identity']} FAILED at F7 {c['config']} {lr['layer']} "
                           f"(largest gap {s.get('identity_max_gap')})")
    for r in rows:
        if not (r["hypotheses_held"] and r["violations"]):
            continue
        what = (f"note: {r['bound']} is a probability bound (p = {r['p']:g}) and failed"
                if r["kind"] == "probability" else
                f"{r['bound']}: VIOLATION of a {r['kind']} bound")
        if r["kind"] == "mean":
            what = f"note: {r['bound']} bounds a mean; the realized value exceeded it"
        out.append(f"{what} at F7 {r['config']} {r['layer']} on {r['violations']} of "
                   f"{r['rows_applied']} rows (largest ratio {r['empirical_max_ratio']:.6g})")
    worst = max((r["rows_applied"] * r["p"] for r in rows if r["checked_probability"]), default=0.0)
    if worst > P_LAYER:
        out.append(f"note: the report's p gives a per-layer failure probability up to {worst:.3g}, "
                   f"more than the {P_LAYER:g} the F7 check allows for")
    return out + failures(rows, CHECKS)


def build(out_dir: Path, quick: bool = False, report=None) -> dict:
    """Build F7 from a ``ptqtheory validate`` report: plot, and save PDF, PNG and CSV.

    Parameters
    ----------
    out_dir : Path
        As in :data:`~ptqtheory.figures.common.BUILD_DOC`.
    quick : bool
        With no ``report``: build from :func:`quick_report` (about a minute on 2 cores), as the tests do.
    report : path-like, optional
        As in :func:`report_path` (its default relative to the working directory) unless ``quick``.

    Returns
    -------
    dict
        As in :data:`~ptqtheory.figures.common.BUILD_DOC`, and ``report`` (the report's path, or
        ``None`` for the temporary quick report).

    Raises
    ------
    ReportMissing
        No report at ``report`` (or the default); the message says how to produce one.
    ValueError
        The file is not a ``ptqtheory validate`` report.
    """
    if report is None and quick:
        with tempfile.TemporaryDirectory(prefix="ptqtheory-f7-") as tmp:
            data = load_report(quick_report(tmp))
        source = None
    else:
        source = report_path(report)
        data = load_report(source)
    rows = rows_from_report(data)
    findings = report_findings(data, rows)
    return {**finish(out_dir, NAME, rows, findings, lambda: _plot(rows, data)), "report": source}


def _precision(r: dict) -> str:
    return f"{r['bits']} bit" + (f", groups of {r['group_size']}" if r["group_size"] else "")


def _plot(rows: list[dict], data: dict):
    settings = list({r["config"]: r for r in rows}.values())  # a row per setting, in report order
    methods = sorted({r["method"] for r in settings},
                     key=lambda m: (list(METHODS).index(m) if m in METHODS else len(METHODS), m))
    color = {m: style.COLORS[METHODS[m][2]] if m in METHODS else "0.5" for m in methods}
    precisions = sorted({_precision(r) for r in settings},
                        key=lambda pr: min((-r["bits"], r["group_size"] or 0) for r in settings
                                           if _precision(r) == pr))
    marker = dict(zip(precisions, ("o", "s", "^", "D", "v", "P"), strict=False))
    # L1 is a lower bound on a mean (its "ratio" is the optimality ratio, >= 1): F8 draws it, not F7.
    shown = [r for r in rows if r["hypotheses_held"] and r["kind"] != "mean-lower"]
    labels = sorted({r["bound"] for r in shown}, key=bound_key)
    kinds = {r["bound"]: r["kind"] for r in shown}

    n_lab = len(labels)
    # Heights in inches: a row per bound label and per method, plus legend, ticks and labels.
    top_h = 0.16 * max(n_lab, 4)
    bot_h = 0.17 * max(len(methods), 2) + 0.1
    legend_h = 0.15 * (max(len(methods), len(precisions) + 2) + 1) + 0.1
    fig, (ax, ax_c) = style.new_figure(nrows=2, height=legend_h + top_h + bot_h + 1.05,
                                       gridspec_kw={"height_ratios": (top_h, bot_h)})

    # Top: per bound label, one lane per method, one point per (setting, layer).
    rng = np.random.default_rng(7)  # jitter only
    hi = max([1.0] + [r["empirical_max_ratio"] for r in shown])
    xmax = 1.6 if hi <= 1.3 else hi * 1.25
    below = 0
    for y, label in enumerate(labels):
        here = [m for m in methods if any(r["bound"] == label and r["method"] == m for r in shown)]
        lane = 0.84 / max(len(here), 1)
        for k, m in enumerate(here):
            sel = [r for r in shown if r["bound"] == label and r["method"] == m]
            raw = np.array([r["empirical_max_ratio"] for r in sel], dtype=float)
            below += int(np.count_nonzero(raw < XMIN))
            x = np.clip(raw, XMIN, None)
            y0 = y + (k - (len(here) - 1) / 2) * lane
            yy = y0 + rng.uniform(-0.36, 0.36, len(x)) * lane
            for prec in precisions:
                idx = [i for i, r in enumerate(sel) if _precision(r) == prec]
                if idx:
                    ax.scatter(x[idx], yy[idx], s=4, marker=marker[prec], color=color[m],
                               alpha=0.6, linewidths=0, zorder=3)
            med = float(np.median(raw))
            if med >= XMIN:
                ax.plot([med, med], [y0 - 0.5 * lane, y0 + 0.5 * lane], color="black", lw=0.9,
                        zorder=4, solid_capstyle="butt")
    ax.axvline(1.0, color="black", ls="--", lw=0.8, zorder=2)
    if hi > 1:
        ax.axvspan(1.0, xmax, color=style.COLORS["vermillion"], alpha=0.1, lw=0, zorder=1)
    ax.set_xscale("log")
    ax.set_xlim(XMIN / 1.3, xmax)
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=12))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(np.arange(2, 10) * 1.0).tolist(), numticks=12))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(n_lab - 0.5, -0.5)
    ax.set_yticks(range(n_lab))
    ax.set_yticklabels([lab + (r"$^\dagger$" if kinds[lab] == "probability" else "")
                        for lab in labels])
    ax.tick_params(axis="y", length=0)
    ax.grid(axis="y", visible=False)
    for y in range(n_lab - 1):
        ax.axhline(y + 0.5, color="0.88", lw=0.4, zorder=0)
    edge = (f"\n({below} {'ratio' if below == 1 else 'ratios'} below {XMIN:g} drawn at {XMIN:g})"
            if below else "")
    ax.set_xlabel(r"empirical / bound, largest over the rows $w$ of a layer" + edge)

    for y, m in enumerate(methods):
        mine = [r for r in settings if r["method"] == m]
        precs = [pr for pr in precisions if any(_precision(r) == pr for r in mine)]
        for r in mine:
            k = precs.index(_precision(r))
            yk = y + (k - (len(precs) - 1) / 2) * 0.28
            c = color[m]
            ax_c.plot([r["cosine_min"], r["cosine_mean"]], [yk, yk], color=c, lw=0.9)
            ax_c.plot(r["cosine_mean"], yk, marker=marker[_precision(r)], color=c, ms=3.5, ls="none")
            ax_c.plot(r["cosine_min"], yk, marker="|", color=c, ms=4, mew=0.9, ls="none")
    ax_c.set_ylim(len(methods) - 0.5, -0.5)
    ax_c.set_yticks(range(len(methods)))
    ax_c.set_yticklabels([METHODS[m][1] if m in METHODS else m for m in methods])
    ax_c.tick_params(axis="y", length=0)
    ax_c.grid(axis="y", visible=False)
    lo = min(r["cosine_min"] for r in settings)
    ax_c.set_xlim(max(0.0, np.floor(lo * 10 - 0.2) / 10), 1.0)
    ax_c.set_xlabel("cosine similarity to the float model's embedding\n"
                    "(held-out sentences; marker: mean, bar: minimum)")

    left = [Line2D([], [], color=color[m], marker="o", ls="none", ms=3.5,
                   label=METHODS[m][0] if m in METHODS else m) for m in methods]
    right = [Line2D([], [], color="0.3", marker=marker[pr], ls="none", ms=3.5, label=pr)
             for pr in precisions]
    right += [Line2D([], [], color="black", lw=0.9, marker="|", ms=5, mew=0.9, ls="none",
                     label="median per method"),
              Line2D([], [], color="black", lw=0.8, ls="--", label="ratio 1: bound attained")]
    blank = Line2D([], [], ls="none", label=" ")
    rows_leg = max(len(left), len(right))
    handles = left + [blank] * (rows_leg - len(left)) + right + [blank] * (rows_leg - len(right))
    n_layers = len({r["layer"] for r in rows})
    p = data.get("p")
    prob = rf";  $^\dagger$w.p. $\geq 1-p$, $p = {_latex_num(p)}$" if p is not None else ""
    fig.legend(handles=handles, loc="outside upper center", ncols=2, columnspacing=0.8,
               handletextpad=0.3, handlelength=1.4,
               title=rf"{n_layers} layers $\times$ {len(settings)} settings{prob}")
    fig.get_layout_engine().set(h_pad=0.04)  # a gap between the legend and the top panel
    return fig


def _latex_num(v: float) -> str:
    m, e = f"{float(v):.0e}".split("e")
    return rf"10^{{{int(e)}}}" if m == "1" else rf"{m}\times 10^{{{int(e)}}}"
