"""What the figure modules (contract: :mod:`ptqtheory.figures`) share: atomic saving, checks, script entry."""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..instances import make_X
from ..random import generator
from ..report import write_bytes
from . import style

__all__ = [
    "BUILD_DOC",
    "Check",
    "ReportMissing",
    "atomic_write",
    "bound_findings",
    "documented",
    "failures",
    "heterogeneous_layer",
    "save",
    "script_main",
    "write_csv",
]

RTOL = 1e-9
"""Relative slack of a CSV check, for float64 rounding (as in :mod:`ptqtheory.bounds`)."""

# No dates or tool versions in the files: the same seed gives the same bytes.
_METADATA = {
    "pdf": {"CreationDate": None, "ModDate": None, "Producer": None, "Creator": None},
    "png": {"Software": None},
}


BUILD_DOC = """

    Parameters
    ----------
    out_dir : Path
        Output folder (created if missing); files are ``{NAME}.pdf``, ``.png`` and ``.csv``.
    quick : bool
        Small sizes (seconds), as the tests use.

    Returns
    -------
    dict
        ``paths`` (``{"pdf", "png", "csv"}`` to :class:`~pathlib.Path`), ``rows`` (the CSV rows:
        every plotted number) and ``findings`` (bounds that failed where they applied).
    """
"""The Parameters and Returns sections of every figure's ``build(out_dir, quick)`` (F7's differ)."""

_Build = TypeVar("_Build", bound=Callable[..., dict])


def documented(build: _Build) -> _Build:
    """Decorator: append :data:`BUILD_DOC` to ``build``'s docstring (F1-F6's default summary if none)."""
    label = build.__module__.rsplit(".", 1)[-1].split("_")[0].upper()
    build.__doc__ = (build.__doc__ or f"Build {label}: run the algorithms, certify them, plot, and save PDF, "
                     "PNG and CSV.") + BUILD_DOC
    return build


class ReportMissing(FileNotFoundError):
    """A figure built from a report (F7: ``ptqtheory validate``) found none; the message says how to make it."""


@dataclass(frozen=True)
class Check:
    """One inequality a figure's CSV must satisfy where ``row[applies]`` is true: ``row[bound] >=
    row[empirical]``, both in the same units (a norm against a norm, a square against a square).

    Attributes
    ----------
    bound, empirical : str
        CSV column names (``bound_*`` and ``empirical_*``).
    applies : str
        Boolean column: the bound's hypotheses held on that row.
    p : float or None
        ``None`` for a deterministic bound (no failure allowed); for a bound that holds w.p. at least
        ``1 - p`` per row, failures at a rate consistent with ``p`` are allowed (:func:`failures`).
    """

    bound: str
    empirical: str
    applies: str = "hypotheses_held"
    p: float | None = None


def _truthy(v) -> bool:
    return v if isinstance(v, bool) else str(v).strip().lower() in ("true", "1")


def failures(rows: Sequence[dict], checks: Iterable[Check]) -> list[str]:
    """Descriptions of the checks that fail on ``rows`` (dicts as written to, or read from, the CSV).

    A deterministic check fails on any row where it applies and ``empirical > bound (1 + RTOL)``; a
    probabilistic one when such rows, ``k`` of the ``n`` where it applies, exceed
    ``n p + 3 sqrt(n p (1 - p)) + 1`` (a generous binomial allowance for a failure probability ``p`` per row).
    """
    out = []
    for chk in checks:
        applies = [row for row in rows if _truthy(row[chk.applies])]
        bad = [row for row in applies if not float(row[chk.empirical]) <= float(row[chk.bound]) * (1 + RTOL)]
        n, k = len(applies), len(bad)
        if chk.p is None and k:
            out.append(f"{chk.bound} < {chk.empirical} on {k} of {n} rows where it applies; "
                       f"first: {dict(bad[0])}")
        elif chk.p is not None and k > n * chk.p + 3 * math.sqrt(n * chk.p * (1 - chk.p)) + 1:
            out.append(f"{chk.bound} (probability bound, p = {chk.p:g}) < {chk.empirical} on {k} "
                       f"of {n} rows, more than p allows; first: {dict(bad[0])}")
    return out


def atomic_write(path: Path, write: Callable[[str], object]) -> Path:
    """:func:`ptqtheory.report.write_bytes` (temporary name ``.*.tmp``), the file given the usual mode."""
    def write_with_mode(tmp):
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600

    write_bytes(path, write_with_mode, suffix=".tmp")
    return Path(path)


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def write_csv(path: Path, rows: Sequence[dict]) -> Path:
    """Write ``rows`` (dicts; columns in first-seen order) as CSV, atomically, floats in full
    precision (``repr``)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    for c in columns:
        if not c.isascii() or "," in c:
            raise ValueError(f"CSV column names must be plain ASCII without commas; got {c!r}")

    def write(tmp):
        with open(tmp, "w", newline="", encoding="ascii") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(columns)
            for row in rows:
                w.writerow([_cell(row.get(c)) for c in columns])

    return atomic_write(path, write)


def save(fig, out_dir: Path, stem: str, rows: Sequence[dict]) -> dict[str, Path]:
    """Save ``fig`` as ``stem.pdf`` (vector) and ``stem.png`` (300 dpi) and ``rows`` as
    ``stem.csv`` in ``out_dir``, each atomically. Call inside :func:`style.context`."""
    out_dir = Path(out_dir)
    paths = {ext: atomic_write(out_dir / f"{stem}.{ext}", partial(fig.savefig, format=ext, metadata=meta))
             for ext, meta in _METADATA.items()}
    paths["csv"] = write_csv(out_dir / f"{stem}.csv", rows)
    return paths


def finish(out_dir: Path, stem: str, rows: Sequence[dict], findings: list[str],
           draw: Callable[[], object], checks: Iterable[Check] = ()) -> dict:
    """The end of every figure's ``build``: ``draw()`` in the house style, :func:`save` with ``rows`` as CSV;
    ``{"paths", "rows", "findings"}``, the :func:`failures` of ``checks`` appended to ``findings``."""
    with style.context():
        paths = save(draw(), out_dir, stem, rows)
    return {"paths": paths, "rows": rows, "findings": findings + failures(rows, checks)}


def script_main(module, argv: Sequence[str] | None = None) -> int:
    """Entry point of a thin script in the repository's ``figures/`` folder."""
    doc = (module.__doc__ or "").strip().splitlines()
    parser = argparse.ArgumentParser(description=doc[0] if doc else None)
    parser.add_argument("--out", default="out", help="output folder (created if missing)")
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds; for tests)")
    uses_report = getattr(module, "USES_REPORT", False)
    if uses_report:
        parser.add_argument("--report", default=None, help=(
            f"report.json of `ptqtheory validate`, or its folder (default: {module.DEFAULT_REPORT}; "
            "with --quick and no --report, a small validation is run first)"))
    args = parser.parse_args(argv)
    kwargs = {"report": args.report} if uses_report else {}
    try:
        result = module.build(Path(args.out), quick=args.quick, **kwargs)
    except (ReportMissing, ValueError) as exc:
        if not uses_report:
            raise
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    for p in result["paths"].values():
        print(p)
    for f in result["findings"]:
        print(f"FINDING: {f}")
    return 0


def bound_findings(checks, where: str, labels: Iterable[str] | None = None) -> list[str]:
    """Bound checks (:class:`~ptqtheory.bounds.BoundCheck`, e.g. a :class:`~ptqtheory.Certificate`'s
    ``bounds``) that failed on a row where they applied, each a message naming ``where`` (the parameters).

    For a deterministic bound that is a counterexample. A probability bound (B4-B6, B8 with B6, B10)
    may fail w.p. at most ``p`` per row: its message starts with ``"note:"`` and the figure's CSV
    check judges whether the failure *rate* is consistent with ``p``.
    """
    keep = None if labels is None else set(labels)
    out = []
    for b in checks:
        if (keep is not None and b.label not in keep) or not b.violations:
            continue
        rows = np.flatnonzero(b.applies & ~b.holds)
        what = (f"note: {b.label} is a probability bound (p = {b.p:g}) and failed"
                if b.kind == "probability" else f"{b.label}: VIOLATION of a deterministic bound")
        out.append(f"{what} at {where}, rows {rows.tolist()}: empirical "
                   f"{np.asarray(b.empirical)[rows].tolist()} vs bound {np.asarray(b.value)[rows].tolist()}")
    return out


def heterogeneous_layer(seed: int, m: int, N: int, n: int, cond: float = 1e6, spread: float = 1.0):
    r"""A seeded synthetic layer ``(W, X)`` whose input columns have heterogeneous norms.

    ``X`` is :func:`ptqtheory.instances.make_X` with :math:`\kappa(X^TX) \approx` ``cond``
    (correlated columns), then column ``j`` is scaled by :math:`10^{s_j}` with the :math:`s_j`
    evenly spaced in ``[-spread/2, spread/2]`` and randomly permuted (so the natural order is not
    sorted by norm). ``W`` has i.i.d. standard normal entries.
    """
    rng = generator(seed, "data", "a synthetic figure layer")
    X = make_X(rng, m, N, cond=cond)
    X = X * 10.0 ** (spread * np.linspace(-0.5, 0.5, N))[rng.permutation(N)]
    W = rng.standard_normal((n, N))
    return W, X
