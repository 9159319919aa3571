"""The paper figures: one module per figure, one style, and a registry that builds them all.

Each module (``f1_lambda`` .. ``f13_boa``) has its title as its docstring's first line, ``NAME``
(file stem), ``CHECKS`` (the ``bound_*`` >= ``empirical_*`` inequalities its CSV satisfies where the
hypotheses held) and ``build(out_dir, quick) -> dict`` (:data:`.common.BUILD_DOC`). Every random
choice is seeded, so a build is reproducible. A new figure is one more module in :data:`FIGURES`.

F7 (real layers) is drawn from the report of ``ptqtheory validate`` (module attribute
``USES_REPORT``; its ``build`` takes ``report=PATH``); :func:`build_all` says what happens without one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from . import (
    f1_lambda,
    f2_orders,
    f3_stochastic,
    f4_alphabet,
    f5_mismatch,
    f6_incoherence,
    f7_real_layers,
    f8_optimality,
    f9_owq,
    f10_dint,
    f11_w4a8,
    f12_magr,
    f13_boa,
)
from .common import ReportMissing

__all__ = ["FIGURES", "ReportMissing", "build_all", "select"]

FIGURES = {f"F{i}": module for i, module in enumerate((
    f1_lambda, f2_orders, f3_stochastic, f4_alphabet, f5_mismatch, f6_incoherence, f7_real_layers,
    f8_optimality, f9_owq, f10_dint, f11_w4a8, f12_magr, f13_boa), start=1)}
"""Figure label -> module, in paper order (``"F1"`` .. ``"F13"``)."""


def select(only: str | Iterable[str] | None) -> list[str]:
    """The figure labels to build: all of them, or those named (``"F1,F3"`` or a list; any case)."""
    if only is None:
        return list(FIGURES)
    names = only.split(",") if isinstance(only, str) else list(only)
    keys = [n.strip().upper() for n in names if n.strip()]
    unknown = [k for k in keys if k not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; have {list(FIGURES)}")
    return keys


def build_all(out_dir, quick: bool = False, only=None,
              log: Callable[[str, dict, float], None] | None = None, report=None) -> list[Path]:
    """Build the figures into ``out_dir``; return the paths written (PDF, PNG, CSV per figure).

    Parameters
    ----------
    out_dir, quick : path-like, bool
        As in :data:`~ptqtheory.figures.common.BUILD_DOC`; files are written atomically.
    only : str or iterable of str, optional
        Labels to build, e.g. ``"F1,F3"``; default all of :data:`FIGURES`.
    log : callable, optional
        Called as ``log(label, result, seconds)`` after each figure, ``result`` being ``build``'s dict;
        a figure skipped for want of its report gets ``paths == {}`` and a ``"note: skipped: ..."`` finding.
    report : path-like, optional
        F7's ``ptqtheory validate`` report (``report.json`` or its folder), checked before anything
        is built (:class:`ReportMissing` if missing). Without it, F7 runs a small validation first
        with ``quick``; otherwise it reads ``ptqtheory-report/report.json`` if present, or is skipped
        with a note saying how to produce one.
    """
    out = Path(out_dir)
    keys = select(only)
    readers = [k for k in keys if getattr(FIGURES[k], "USES_REPORT", False)]
    if report is not None:
        for key in readers:
            FIGURES[key].report_path(report)  # fail before building the others
    paths: list[Path] = []
    for key in keys:
        t0 = time.perf_counter()
        try:
            result = (FIGURES[key].build(out, quick=quick, report=report) if key in readers
                      else FIGURES[key].build(out, quick=quick))
        except ReportMissing as exc:
            if report is not None:
                raise
            result = {"paths": {}, "rows": [], "findings": [f"note: skipped: {exc}"]}
        if log is not None:
            log(key, result, time.perf_counter() - t0)
        paths.extend(result["paths"][k] for k in ("pdf", "png", "csv") if k in result["paths"])
    return paths
