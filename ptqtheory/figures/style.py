r"""The one matplotlib style of every paper figure (serif, 8-9 pt, column width, colorblind-safe).

Drawn on the Agg canvas (no pyplot, no global backend switch), typeset in STIX mathtext (Times-like
paper fonts), in :data:`COLORS` with varied line styles and markers too (so it reads in grey scale).
"""

from __future__ import annotations

import contextlib
from typing import cast

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.rcsetup import cycler
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

__all__ = ["COLORS", "MARKERS", "PANEL", "RC", "context", "new_figure", "plain_log_ticks"]

PANEL = (3.4, 2.5)
"""Size in inches of one panel: a paper column (about 3.3 in) by a readable height."""

#: Okabe & Ito (2008), "Color universal design": distinguishable under every common color deficiency.
COLORS = {
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "green": "#009E73",
    "purple": "#CC79A7",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

RC = {
    "font.family": "serif",
    "font.serif": ["STIXGeneral", "DejaVu Serif"],
    "mathtext.fontset": "stix",
    "font.size": 8.5,
    "axes.titlesize": 8.5,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7.5,
    "legend.title_fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "axes.linewidth": 0.6,
    "axes.grid": True,
    "axes.grid.which": "major",
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    "axes.prop_cycle": cycler(color=[COLORS[k] for k in (
        "blue", "vermillion", "green", "purple", "orange", "sky", "black")]),
    "axes.formatter.use_mathtext": True,
    "lines.linewidth": 1.1,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.8",
    "legend.handlelength": 1.8,
    "legend.borderpad": 0.3,
    "legend.labelspacing": 0.25,
    "legend.handletextpad": 0.4,
    "legend.columnspacing": 0.9,
    "figure.dpi": 150,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text (searchable, editable)
    "ps.fonttype": 42,
    "svg.fonttype": "none",
}


@contextlib.contextmanager
def context():
    """Apply :data:`RC` for the duration of a ``with`` block (figure creation *and* saving)."""
    with matplotlib.rc_context(RC):
        yield


def new_figure(ncols: int = 1, nrows: int = 1, width: float | None = None,
               height: float | None = None, **subplot_kw):
    """``(fig, axes)``: a constrained-layout :class:`~matplotlib.figure.Figure` of :data:`PANEL` per panel
    by default, ``axes`` squeezed as :meth:`Figure.subplots` does. Call inside :func:`context`."""
    w = PANEL[0] * ncols if width is None else width
    h = PANEL[1] * nrows if height is None else height
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **subplot_kw)
    cast(ConstrainedLayoutEngine, fig.get_layout_engine()).set(w_pad=0.02, h_pad=0.02, wspace=0.04, hspace=0.04)
    return fig, axes


def plain_log_ticks(axis, subs=(1.0, 2.0, 5.0)) -> None:
    """Label a log axis that spans few decades at 1, 2, 5 times powers of ten in plain numbers
    (``20, 50, 100``) instead of matplotlib's scientific minor labels (``2x10^1``)."""
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())
