"""INT4 against dINT4 on the real MiniLM layers: OPTQ's layer error and its bound B1.

Every linear layer of the embedded all-MiniLM-L6-v2 encoder (6 blocks x q, k, v, o, fc1, fc2), with
its inputs captured from the float model on calibration paragraphs (forward pre-hooks, padding
dropped: :func:`ptqtheory.figures.f8_optimality.capture`), is quantized by OPTQ (numpy float64,
nearest rounding, ``percdamp`` 0.01, natural order), per output channel, onto

* ``minmax-asym``: the package's usual 4-bit grid, ``pt.Grid.minmax(W, 4)`` (16 levels, asymmetric);
* ``int4``: the symmetric integer alphabet ``pt.Alphabet.integer(4).fit(W)``, {0, +-1, ..., +-7}
  (15 levels, absmax scale per row);
* ``dint4``: ``pt.Alphabet.dint(4).fit(W)``, {0, +-1/2, +-1, ..., +-6} (15 levels, absmax scale).

Per layer and format: the error :math:`\\|X(W - Q)\\|_F^2` relative to :math:`\\|XW\\|_F^2`, the rows
that clipped (the bounds' hypothesis fails there), and on the rows without clipping the sums of the
error, of B1 (largest gap, a priori) and of B1.local (the gap of each :math:`x_t`; alphabets only),
each from the certificate's bound checks. Inputs are float64 copies of the float32 activations.

Usage::

    python benchmarks/dint_minilm.py                       # all 36 layers, 64 paragraphs
    python benchmarks/dint_minilm.py --blocks 1 --texts 16 --out /tmp/r   # quick

Writes ``benchmarks/results/dint_minilm.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

import ptqtheory as pt
from ptqtheory import bounds
from ptqtheory.figures.f8_optimality import KINDS, SHORT, capture

PERCDAMP = 0.01
FORMATS = ("minmax-asym", "int4", "dint4")


def _grid(fmt: str, W: np.ndarray):
    if fmt == "minmax-asym":
        return pt.Grid.minmax(W, bits=4)
    return (pt.Alphabet.integer(4) if fmt == "int4" else pt.Alphabet.dint(4)).fit(W)


def measure(name: str, W: np.ndarray, X: np.ndarray) -> dict:
    out: dict = {"layer": name, "kind": SHORT[name.split(".", 3)[3]], "n": W.shape[0], "N": W.shape[1],
                 "m": X.shape[0]}
    ref = float(np.sum((X @ W.T) ** 2))
    for fmt in FORMATS:
        t0 = time.perf_counter()
        run = pt.optq(W, X, lam=pt.Damping.percdamp(PERCDAMP), grid=_grid(fmt, W))
        checks = {c.label: c for c in bounds.b1(bounds.context(run, X))}
        b1 = checks["B1"]
        ok = b1.applies
        row = {
            "rel_err": float(np.sum(b1.empirical)) / ref,
            "rows_clipped": int(np.sum(~ok)),
            "err_unclipped": float(np.sum(b1.empirical[ok])),
            "B1_unclipped": float(np.sum(b1.value[ok])),
            "B1_holds": bool(b1.violations == 0),
            "seconds": time.perf_counter() - t0,
        }
        if "B1.local" in checks:
            row["B1_local_unclipped"] = float(np.sum(checks["B1.local"].value[ok]))
            row["B1_local_holds"] = bool(checks["B1.local"].violations == 0)
        out[fmt] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--blocks", type=int, default=6, help="encoder blocks 0..B-1 (default all 6)")
    ap.add_argument("--texts", type=int, default=64, help="calibration paragraphs (<= 128 tokens each)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    names = [f"encoder.layer.{b}.{k}" for b in range(args.blocks) for k in KINDS]
    W, X = capture(names, args.texts)
    layers = []
    for name in names:
        layers.append(measure(name, W[name], X[name]))
        r = layers[-1]
        print(f"{name:42s} m={r['m']:5d} " + "  ".join(
            f"{f}: rel {r[f]['rel_err']:.4g} clip {r[f]['rows_clipped']:4d}" for f in FORMATS), flush=True)
    summary = {}
    for fmt in FORMATS:
        rel = np.array([r[fmt]["rel_err"] for r in layers])
        summary[fmt] = {
            "mean_rel_err": float(np.mean(rel)), "median_rel_err": float(np.median(rel)),
            "rows_clipped": int(sum(r[fmt]["rows_clipped"] for r in layers)),
            "rows": int(sum(r["n"] for r in layers)),
            "err_unclipped": float(sum(r[fmt]["err_unclipped"] for r in layers)),
            "B1_unclipped": float(sum(r[fmt]["B1_unclipped"] for r in layers)),
            "B1_violations": int(sum(not r[fmt]["B1_holds"] for r in layers)),
        }
        if fmt != "minmax-asym":
            summary[fmt]["B1_local_unclipped"] = float(sum(r[fmt]["B1_local_unclipped"] for r in layers))
    wins = sum(r["dint4"]["rel_err"] < r["int4"]["rel_err"] for r in layers)
    summary["dint4_better_than_int4_layers"] = f"{wins}/{len(layers)}"
    print(C.table([{"format": f, **summary[f]} for f in FORMATS],
                  [("format", "format", "s"), ("mean_rel_err", "mean rel err", ".4g"),
                   ("median_rel_err", "median", ".4g"), ("rows_clipped", "clipped rows", "d"),
                   ("err_unclipped", "err (unclipped)", ".4g"), ("B1_unclipped", "B1 (unclipped)", ".4g")]))
    print("dINT4 below INT4 on", summary["dint4_better_than_int4_layers"], "layers")
    path = C.write("dint_minilm", {
        "machine": C.machine(), "command": C.command(), "percdamp": PERCDAMP, "texts": args.texts,
        "formats": {"minmax-asym": "pt.Grid.minmax(W, bits=4)", "int4": "pt.Alphabet.integer(4).fit(W)",
                    "dint4": "pt.Alphabet.dint(4).fit(W)"},
        "summary": summary, "layers": layers,
    }, args.out)
    print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
