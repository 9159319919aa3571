"""Reports of certified runs: one typed module for ``validate``, ``quantize``, ``certify`` and F7.

A setting is a dict with ``config``, ``method``, ``bits``, ``group_size``, ``seconds``, ``layers``
(:class:`LayerRecord` dicts) and any setting-level results (e.g. ``perplexity``, ``cosine_mean``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .tolerances import RTOL_IDENTITY

__all__ = [
    "CSV_COLUMNS",
    "LayerRecord",
    "OutputPathError",
    "bound_key",
    "bounds_table",
    "check_out_dir",
    "check_out_file",
    "csv_text",
    "failures",
    "group_rows",
    "groups_table",
    "optimality_ratios",
    "reraise_as",
    "settings_table",
    "summarize",
    "summarize_bound",
    "summarize_certificate",
    "totals_line",
    "write_bytes",
    "write_text",
]


@dataclass
class LayerRecord:
    """One layer under one setting: shape ``(n, N)``, absolute damping, seconds, certificate summary."""

    layer: str
    shape: tuple[int, int]
    config: str
    method: str
    bits: int
    group_size: int | None
    lam: float
    seconds: float
    summary: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def bound_key(label: str) -> tuple:
    """Sort bound labels as the paper numbers them: B1, B1.data, B2, ..., B12, then RTN's."""
    head = label.split(".")[0]
    return (head[0], int(head[1:]) if head[1:].isdigit() else 99, label)


def summarize_certificate(c, rows: slice, rtol: float = RTOL_IDENTITY) -> dict:
    """One layer's share (``rows``) of a possibly stacked certificate: identity and every bound.

    ``identity_max_gap`` is the largest relative gap over the :attr:`~ptqtheory.Certificate.resolved`
    rows (``identity_rows_resolved`` of them; the others are judged by their rounding allowance alone).
    """
    out: dict = {"identity": c.identity, "rows": rows.stop - rows.start}
    if c.identity is not None:
        ok = c.identity_holds(rtol)[rows]
        keep = c.resolved[rows]
        gaps = np.asarray(c.identity_gap, float)[rows]
        out["identity_holds"] = bool(ok.all())
        out["identity_max_gap"] = float(np.max(gaps[keep])) if keep.any() else 0.0
        out["identity_rows_resolved"] = int(np.count_nonzero(keep))
        out["pivots_hold"] = c.pivot_check is None or c.pivot_check.holds(rtol)
    out["clipped_rows"] = int(np.count_nonzero(np.asarray(c.n_clipped)[rows]))
    out["err_l2_mean"] = float(np.mean(c.err_l2[rows]))
    err_inf = np.asarray(c.err_inf, float)[rows]
    out["err_inf_max"] = float(np.max(err_inf)) if np.all(np.isfinite(err_inf)) else None
    out["bounds"] = {b.label: summarize_bound(b, rows) for b in c.bounds}
    out["skipped_bounds"] = list(getattr(c, "skipped_bounds", ()))
    return out


def summarize_bound(b, rows: slice) -> dict:
    """One bound check (a :class:`ptqtheory.bounds.BoundCheck`) over ``rows``: rows where its hypotheses
    held, violations among them, and the largest and median tightness ratio."""
    applies = b.applies[rows]
    holds = b.holds[rows]
    ratio = b.ratio[rows]
    return {
        "kind": b.kind, "rows_applied": int(applies.sum()),
        "violations": int(np.count_nonzero(applies & ~holds)),
        "max_ratio": float(np.max(ratio[applies])) if applies.any() else None,
        "median_ratio": float(np.median(ratio[applies])) if applies.any() else None,
    }


def optimality_ratios(setting: dict) -> tuple[float | None, float | None]:
    """``(median, worst)`` optimality ratio (bound ``L1``, docs/optimality.md) of one setting: the median
    over layers of each layer's median row, and the largest row; ``(None, None)`` without L1 (RTN, GPFQ).
    One step per row gives every row of a layer the same ratio (the step cancels); groups make it vary."""
    meds, worst = [], []
    for lr in setting["layers"]:
        b = lr["summary"]["bounds"].get("L1")
        if b is not None and b["max_ratio"] is not None:
            meds.append(b.get("median_ratio", b["max_ratio"]))
            worst.append(b["max_ratio"])
    if not meds:
        return None, None
    return float(np.median(meds)), float(max(worst))


def _identity_failed(s: dict) -> bool:
    """The layer's exact certificate failed: its identity or pivots, or MagR's duality gap (a computed gap
    below its rounding allowance contradicts weak duality)."""
    magr_failed = s.get("magr", {}).get("rows_uncertified", 0) > 0
    return magr_failed or (s.get("identity") is not None and not (s["identity_holds"] and s["pivots_hold"]))


def summarize(settings: Iterable[dict], p: float) -> dict:
    """Totals over settings: layers, rows, identity failures, and per bound rows/violations/worst ratio."""
    per_bound: dict = {}
    layers = rows = identity_failures = 0
    for c in settings:
        for lr in c["layers"]:
            layers += 1
            s = lr["summary"]
            rows += s["rows"]
            identity_failures += _identity_failed(s)
            for label, b in s["bounds"].items():
                t = per_bound.setdefault(label, {"kind": b["kind"], "rows_applied": 0, "violations": 0,
                                                 "worst_ratio": 0.0, "worst_at": None})
                t["rows_applied"] += b["rows_applied"]
                t["violations"] += b["violations"]
                if b["max_ratio"] is not None and b["max_ratio"] > t["worst_ratio"]:
                    t["worst_ratio"], t["worst_at"] = b["max_ratio"], f"{c['config']} {lr['layer']}"
    violations = sum(t["violations"] for t in per_bound.values()) + identity_failures
    return {"layers_checked": layers, "rows_checked": rows, "identity_failures": identity_failures,
            "violations": violations,
            "bounds": dict(sorted(per_bound.items(), key=lambda kv: bound_key(kv[0]))),
            "p": p}


CSV_COLUMNS = ("config", "method", "bits", "group_size", "layer", "n", "N", "lam", "seconds", "identity",
               "identity_max_gap", "identity_holds", "clipped_rows", "check", "kind", "rows_applied",
               "violations", "max_ratio", "median_ratio")


def csv_text(settings: Iterable[dict]) -> str:
    """One row per (setting, layer, bound), columns :data:`CSV_COLUMNS`."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for c in settings:
        for lr in c["layers"]:
            s = lr["summary"]
            base = [c["config"], c["method"], c["bits"], c["group_size"], lr["layer"], *lr["shape"],
                    lr["lam"], round(lr["seconds"], 4), s.get("identity"), s.get("identity_max_gap"),
                    s.get("identity_holds"), s.get("clipped_rows")]
            for label, b in s["bounds"].items():
                w.writerow([*base, label, b["kind"], b["rows_applied"], b["violations"], b["max_ratio"],
                            b.get("median_ratio")])
    return buf.getvalue()


class OutputPathError(ValueError):
    """An output path that cannot be written (found before any work starts)."""


def _writable_ancestor(path: Path, option: str) -> None:
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{option} {path}: {probe} is a file, so nothing can be created under it; "
                              "pass a path inside a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: {probe} is not writable; pass a folder you can write to")


@contextlib.contextmanager
def reraise_as(error: type[Exception], *kinds: type[Exception]) -> Iterator[None]:
    """Exceptions of ``kinds`` in the block become ``error``, same message (a command's usage error)."""
    try:
        yield
    except kinds as exc:
        raise error(str(exc)) from exc


def check_out_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` as an output folder, after checking that it is (or can be made) a writable folder."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{option} {out} is a file; pass a folder (it is created if missing)")
    _writable_ancestor(out, option)
    return out


def check_out_file(path: str | Path, option: str = "--out") -> Path:
    """``path`` as an output file, after checking that it is not a folder and its folder is writable."""
    out = Path(path)
    if out.is_dir():
        raise OutputPathError(f"{option} {out} is a folder; pass a file name, e.g. {out / 'report.json'}")
    _writable_ancestor(out.parent, option)
    return out


def write_bytes(path: str | Path, write: Callable[[str], object], suffix: str = "") -> None:
    """``write(tmp)`` fills a temporary file next to ``path``, which then replaces ``path`` at once: a
    reader never sees half a file, an interrupted run leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def failures(settings: Iterable[dict]) -> list[str]:
    """One line per layer whose identity failed or whose bound was violated on some row."""
    lines = []
    for c in settings:
        for lr in c["layers"]:
            s = lr["summary"]
            if s.get("magr", {}).get("rows_uncertified", 0) > 0:
                lines.append(f"{c['config']} {lr['layer']}: MagR duality gap below its allowance on "
                             f"{s['magr']['rows_uncertified']} rows")
            if s.get("identity") is not None and not (s["identity_holds"] and s["pivots_hold"]):
                lines.append(f"{c['config']} {lr['layer']}: identity {s['identity']} failed "
                             f"(max gap {s['identity_max_gap']:.2e})")
            for label, b in s["bounds"].items():
                if b["violations"]:
                    lines.append(f"{c['config']} {lr['layer']}: {label} on {b['violations']} rows "
                                 f"(worst ratio {b['max_ratio']:.6g})")
    return lines


def totals_line(summary: dict) -> str:
    return (f"{summary['layers_checked']} layer runs, {summary['rows_checked']} rows certified; "
            f"probabilistic bounds at p = {summary['p']:g}; identity failures: "
            f"{summary['identity_failures']}; violations: {summary['violations']}")


def settings_table(settings: list[dict], columns: dict[str, tuple[str, str]] | None = None) -> str:
    """Per setting: layers, worst identity gap, clipped rows, violations, then ``columns`` (a setting key,
    e.g. ``"perplexity"``, to ``(header, format)``; ``-`` for a setting without the key)."""
    columns = columns or {}
    extra_head = "".join(f"{h:>{max(10, len(h) + 2)}}" for h, _ in columns.values())
    head = (f"{'setting':<24}{'layers':>7}{'max I gap':>11}{'clipped rows':>15}{'violations':>11}"
            f"{extra_head}{'seconds':>9}")
    out = [head, "-" * len(head)]
    for c in settings:
        gaps = [lr["summary"].get("identity_max_gap") or 0.0 for lr in c["layers"]]
        clipped = sum(lr["summary"]["clipped_rows"] for lr in c["layers"])
        rows = sum(lr["summary"]["rows"] for lr in c["layers"])
        viol = sum(b["violations"] for lr in c["layers"] for b in lr["summary"]["bounds"].values()) + \
            sum(_identity_failed(lr["summary"]) for lr in c["layers"])
        cells = "".join(f"{'-' if c.get(key) is None else format(c[key], fmt):>{max(10, len(h) + 2)}}"
                        for key, (h, fmt) in columns.items())
        out.append(f"{c['config']:<24}{len(c['layers']):>7}{max(gaps, default=0.0):>11.2e}"
                   f"{f'{clipped}/{rows}':>15}{viol:>11}{cells}{c['seconds']:>9.1f}")
    return "\n".join(out)


def bounds_table(summary: dict) -> str:
    """Per bound: kind, rows where it applied, violations, worst ratio and where; then the totals."""
    head = f"{'bound':<16}{'kind':<14}{'rows applied':>13}{'violations':>11}{'worst ratio':>13}  worst at"
    out = [head, "-" * len(head)]
    for label, t in summary["bounds"].items():
        out.append(f"{label:<16}{t['kind']:<14}{t['rows_applied']:>13}{t['violations']:>11}"
                   f"{t['worst_ratio']:>13.4f}  {t['worst_at'] or '-'}")
    out.append(totals_line(summary))
    return "\n".join(out)


def _short(name: str, blocks: list[str]) -> tuple[int, str]:
    for i, b in enumerate(blocks):
        if name.startswith(b + "."):
            return i, name[len(b) + 1:]
    return -1, name


def group_rows(layers: list[dict], group_of: dict[str, tuple[str, ...]], blocks: list[str]) -> list[dict]:
    """Per group of layers (one run): rows, identity gap, violations, worst ratio per bound."""
    rows: dict = {}
    for lr in layers:
        key = group_of.get(lr["layer"], (lr["layer"],))
        s = lr["summary"]
        r = rows.setdefault(key, {"layers": [], "n": 0, "N": lr["shape"][1], "gap": 0.0,
                                  "resolved": 0, "violations": 0, "identity_failures": 0, "ratios": {}})
        r["layers"].append(lr["layer"])
        r["n"] += lr["shape"][0]
        r["gap"] = max(r["gap"], s.get("identity_max_gap") or 0.0)
        r["resolved"] += s.get("identity_rows_resolved", s["rows"]) if s.get("identity") else 0
        r["identity_failures"] += _identity_failed(s)
        for label, b in s["bounds"].items():
            r["violations"] += b["violations"]
            if b["max_ratio"] is not None:
                r["ratios"][label] = max(r["ratios"].get(label, 0.0), b["max_ratio"])
    out = []
    for key, r in rows.items():
        idx, _ = _short(key[0], blocks)
        names = "+".join(_short(n, blocks)[1].split(".")[-1] for n in key)
        out.append({**r, "label": f"{idx}:{names}" if idx >= 0 else names})
    return out


def groups_table(groups: list[dict], summary: dict, skipped: list[str]) -> str:
    """The per-group table of ``ptqtheory quantize`` (see :func:`group_rows`)."""
    labels = sorted({lab for g in groups for lab in g["ratios"]}, key=bound_key)
    width = max([len("group")] + [len(g["label"]) for g in groups]) + 2
    head = f"{'group':<{width}}{'shape':>11}{'max I gap':>11}{'viol.':>7}" + \
        "".join(f"{lab:>{max(9, len(lab) + 2)}}" for lab in labels)
    lines = [head, "-" * len(head)]
    for g in groups:
        cells = "".join(
            f"{g['ratios'][lab]:>{max(9, len(lab) + 2)}.4f}" if lab in g["ratios"]
            else f"{'-':>{max(9, len(lab) + 2)}}" for lab in labels)
        viol = g["violations"] + g["identity_failures"]
        shape = f"{g['n']}x{g['N']}"
        gap = f"{g['gap']:.2e}" if g["resolved"] else "-"
        lines.append(f"{g['label']:<{width}}{shape:>11}{gap:>11}{viol:>7}{cells}")
    lines.append("max I gap: largest relative identity gap over rows far above the rounding allowance "
                 "('-': none; such rows are judged by the allowance)")
    lines.append("bound columns: worst empirical/bound ratio over rows where the bound applied "
                 "(<= 1: it held)" + ("; L1: the worst optimality ratio AM(D)/(12 G_N GM(D)), >= 1, the "
                                       "mean error over the best possible (docs/optimality.md)"
                                       if "L1" in labels else ""))
    if skipped:
        lines.append("skipped bounds (need per-sample data; statistics were streamed): "
                     + ", ".join(sorted(skipped, key=bound_key)))
    lines.append(totals_line(summary))
    return "\n".join(lines)
