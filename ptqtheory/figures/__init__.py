"""The paper figures: one module per figure, one style, and a registry that builds them all.

Each module (``f1_lambda`` .. ``f6_incoherence``) has ``NAME`` (file stem), ``TITLE``, ``CHECKS``
(the ``bound_*`` >= ``empirical_*`` inequalities its CSV satisfies where the hypotheses held) and
``build(out_dir, quick) -> dict`` with ``paths`` (PDF, PNG, CSV), ``rows`` (every plotted number)
and ``findings`` (bounds seen failing where they applied; empty when all is well). Every random
choice is seeded, so a build is reproducible. Adding a figure (e.g. F7 from a ``ptqtheory validate``
report) means writing one more module and adding it to :data:`FIGURES`.

Command line: ``ptqtheory figures --out DIR [--quick] [--only F1,F3]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from . import f1_lambda, f2_orders, f3_stochastic, f4_alphabet, f5_mismatch, f6_incoherence

__all__ = ["FIGURES", "build_all", "select"]

FIGURES = {
    "F1": f1_lambda,
    "F2": f2_orders,
    "F3": f3_stochastic,
    "F4": f4_alphabet,
    "F5": f5_mismatch,
    "F6": f6_incoherence,
}
"""Figure label -> module, in paper order."""


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
              log: Callable[[str, dict, float], None] | None = None) -> list[Path]:
    """Build the figures into ``out_dir``; return the paths written (PDF, PNG, CSV per figure).

    Parameters
    ----------
    out_dir : path-like
        Created if missing. Files are written atomically (temporary name, then ``os.replace``).
    quick : bool
        Small sizes (a few seconds per figure), as the tests use.
    only : str or iterable of str, optional
        Labels to build, e.g. ``"F1,F3"``; default all of :data:`FIGURES`.
    log : callable, optional
        Called as ``log(label, result, seconds)`` after each figure (``result`` is the module's
        ``build`` dict, with its ``findings``).
    """
    out = Path(out_dir)
    paths: list[Path] = []
    for key in select(only):
        t0 = time.perf_counter()
        result = FIGURES[key].build(out, quick=quick)
        if log is not None:
            log(key, result, time.perf_counter() - t0)
        paths.extend(result["paths"][k] for k in ("pdf", "png", "csv"))
    return paths
