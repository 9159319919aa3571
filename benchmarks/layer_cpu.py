"""Benchmark 1: one layer on the CPU, our OPTQ and Qronos against peers, same inputs, same grid.

For each size ``n = N`` (default 1024 and 4096, ``m = 8192`` calibration rows, 4 bits, percdamp
0.01, block 128), every contestant goes from the data ``(W, X)`` to the quantized weights (statistics,
factorization and column sweep included):

* ours: ``pt.optq`` on numpy float64 (the reference's fast path A2'), on torch float64 and on torch
  float32 (factorization in float64, the default); ``pt.qronos`` (A4) on torch float32;
* the plain GPTQ-style blocked loop as published (``benchmarks/gptq_loop.py``, torch float32);
* Brevitas' GPTQ and Qronos (``benchmarks/brevitas_peer.py``; optional ``bench`` extra).

All use one grid: Brevitas' frozen per-row min-max grid read back as a ``pt.Grid`` (our own
``Grid.minmax`` when Brevitas is absent). Before any timing each pair's results are compared (grid
codes and layer-output error, ``_common.agreement``); a pair that is not equal is reported and the
command exits 1. Brevitas' Qronos keeps its matrices in float32 and flips ~0.1% of codes at float32
near-ties on 4096 columns; its equality is decided by the same run with float64 buffers (untimed).
Ratios are per pair, from times measured in the same run, the contestants taking turns (round-robin).

Usage::

    python benchmarks/layer_cpu.py                      # n = N = 1024 and 4096, m = 8192
    python benchmarks/layer_cpu.py --sizes 256 --m 1024 --repeats 1 --out /tmp/r
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
import brevitas_peer as bp
from gptq_loop import gptq_loop

import ptqtheory as pt
from ptqtheory.torch_backend import TorchAccumulator

TARGETS = {  # pair -> the ratio it must not exceed (issue 6)
    ("ours torch f32", "GPTQ loop f32"): 1.0,
    ("ours torch f32 f32-Gram", "GPTQ loop f32"): 1.0,
    ("ours torch f32", "Brevitas GPTQ f32"): 1.0,
    ("ours numpy f64", "ours torch f64"): 2.0,
}
PAIRS = [
    *TARGETS,
    ("ours torch f32", "ours torch f64"),
    ("ours torch f32 f32-Gram", "ours torch f32"),
    ("ours Qronos torch f32", "Brevitas Qronos f32"),
]
REFERENCE = {  # what each contestant's result is checked against before timing
    "ours torch f64": "ours numpy f64", "ours torch f32": "ours numpy f64",
    "ours torch f32 f32-Gram": "ours numpy f64",
    "GPTQ loop f32": "ours numpy f64", "Brevitas GPTQ f32": "ours numpy f64",
    "Brevitas Qronos f32": "ours Qronos torch f32",
    "_Brevitas Qronos f64 buffers": "ours Qronos torch f32",
}
# Checks that decide equality (the others are reported): a float32 Brevitas Qronos is judged by the
# same algorithm run with float64 buffers.
DECIDES = {"Brevitas Qronos f32": "_Brevitas Qronos f64 buffers"}


def contestants(W, X, bits: int, percdamp: float, block: int, brevitas: bool):
    """The callables (each returns Q; names starting with ``_`` are checked, not timed), the shared
    grid, its per-row ``(delta, zero)`` columns and the quantized-model inputs ``Xt``."""
    f32, f64 = torch.float32, torch.float64
    W32, X32 = torch.tensor(W, dtype=f32), torch.tensor(X, dtype=f32)
    W64, X64 = torch.tensor(W, dtype=f64), torch.tensor(X, dtype=f64)
    # Quantized-model inputs for Qronos: X on an 8-bit per-tensor grid.
    s = float(np.max(np.abs(X))) / 127
    Xt = np.round(X / s) * s
    Xt32 = torch.tensor(Xt, dtype=f32)
    if brevitas:
        layer, grid = bp.frozen_minmax_layer(W32, bits)
    else:
        layer, grid = None, pt.Grid.minmax(W, bits=bits).frozen()
    delta, zero = grid.delta.reshape(-1, 1), grid.zero.reshape(-1, 1)
    lo, hi = 0.0, float(2**bits - 1)
    damp = pt.Damping.percdamp(percdamp)
    # Brevitas' Qronos damps relative to mean diag(Xt^T Xt); ours takes that absolute value.
    lam_t = percdamp * float(np.mean(np.sum(Xt32.double().numpy() ** 2, axis=0)))
    d32, z32 = torch.tensor(delta[:, 0], dtype=f32), torch.tensor(zero[:, 0], dtype=f32)
    runs = {
        "ours numpy f64": lambda: pt.optq(W, X, lam=damp, grid=grid, block_size=block).Q,
        "ours torch f64": lambda: pt.optq(W64, X64, lam=damp, grid=grid, block_size=block).Q,
        "ours torch f32": lambda: pt.optq(W32, X32, lam=damp, grid=grid, block_size=block).Q,
        # X^T X from float32 products of 1024-row chunks added in float64 (tolerances.gram_rounding)
        "ours torch f32 f32-Gram": lambda: pt.optq(W32, TorchAccumulator.from_data(X32, gram="float32"),
                                                   lam=damp, grid=grid, block_size=block).Q,
        "GPTQ loop f32": lambda: gptq_loop(W32, X32, d32, z32, lo, hi, percdamp, block),
        "ours Qronos torch f32": lambda: pt.qronos(W32, X32, Xt32, lam=lam_t, grid=grid, variant="paper",
                                                   start="w", block_size=block).Q,
    }
    if brevitas:
        runs["Brevitas GPTQ f32"] = lambda: bp.gptq(layer, X32, percdamp, block)
        runs["Brevitas Qronos f32"] = lambda: bp.qronos(layer, X32, Xt32, percdamp=percdamp, block_size=block)
        # Brevitas' Qronos keeps H, G and its inverse in float32: at 4096 columns about 0.1% of codes
        # flip at float32 near-ties. The same algorithm with float64 buffers is the equality check.
        runs["_Brevitas Qronos f64 buffers"] = lambda: bp.qronos(layer, X32, Xt32, percdamp=percdamp,
                                                                 block_size=block, dtype=torch.float64)
    return runs, grid, delta, zero, Xt


def phases(W, X, grid, percdamp: float, block: int, delta, zero, bits: int) -> dict:
    """Seconds per phase of ours (torch float32, with float64 and with float32-chunk statistics) and
    of the GPTQ loop on the same layer (one run each)."""
    W32, X32 = torch.tensor(W, dtype=torch.float32), torch.tensor(X, dtype=torch.float32)
    out = {"ours torch f32": _our_phases(W32, X32, grid, percdamp, block, "float64"),
           "ours torch f32 f32-Gram": _our_phases(W32, X32, grid, percdamp, block, "float32")}
    loop: dict = {}
    d32, z32 = (torch.tensor(a[:, 0], dtype=torch.float32) for a in (delta, zero))
    gptq_loop(W32, X32, d32, z32, 0.0, float(2**bits - 1), percdamp, block, phases=loop)
    return out | {"GPTQ loop f32": loop}


def _our_phases(W32, X32, grid, percdamp: float, block: int, gram: str) -> dict:
    from ptqtheory.torch_backend import engine as te

    ours, t = {}, time.perf_counter()

    def lap(name):
        nonlocal t
        now = time.perf_counter()
        ours[name], t = now - t, now

    acc = TorchAccumulator.from_data(X32, gram=gram)
    lap("statistics")
    s = te.setup(W32, acc, pt.Damping.percdamp(percdamp), grid, "nearest", "natural", None)
    L_T = s.L_T()
    lap("factorization")
    rounder, trace = s.rounder(), te.Trace.empty(s.Wp)
    te.optq_blocked(s.Wp.clone(), L_T, rounder, trace, block)
    lap("sweep")
    te.finish(s, trace, rounder, "optq", "blocked", block_size=block)
    lap("record")
    return ours


def profile(fn, top: int = 12) -> list[str]:
    """The ``top`` functions by internal time of one run of ``fn`` (cProfile; torch CPU ops are synchronous)."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    lines = [ln.rstrip() for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    return lines[start:]


def bench_size(size: int, m: int, bits: int, percdamp: float, block: int, repeats: int,
               brevitas: bool, only: list[str] | None = None) -> dict:
    W, X = C.layer_data(size, size, m, seed=size)
    runs, grid, delta, zero, Xt = contestants(W, X, bits, percdamp, block, brevitas)
    if only is not None:  # the chosen contestants, and (run once, untimed) their references
        refs = {REFERENCE[k] for k in only if k in REFERENCE} - set(only)
        runs = {k: v for k, v in runs.items() if k in only or k in refs}
    results, times = {}, {}
    for name, fn in runs.items():  # one untimed run each: the results checked below
        print(f"  n = N = {size}: {name} ...", flush=True)
        results[name] = fn()
    timed = [k for k in runs if not k.startswith("_") and (only is None or k in only)]
    times = {k: [] for k in timed}
    for _ in range(repeats):  # round-robin, so that a slow spell of the machine hits every contestant
        for name in timed:
            t0 = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - t0)
    checks = {}
    for name, ref in REFERENCE.items():
        if name in results and ref in results:
            Xc = Xt if "Qronos" in name else X
            checks[name] = {"against": ref, **C.agreement(results[name], results[ref], Xc, W, delta, zero)}
            checks[name]["equal"] = C.equal_enough(checks[name])
    for name, judge in DECIDES.items():
        if name in checks and judge in checks:
            checks[name]["decided_by"] = judge
            checks[name]["equal"] = checks[judge]["equal"] and checks[name]["loss_rel"] <= C.MAX_LOSS_REL
    best = {k: min(v) for k, v in times.items()}
    pairs = []
    for a, b in PAIRS:
        if a in best and b in best:
            ratio = best[a] / best[b]
            target = TARGETS.get((a, b))
            pairs.append({"size": size, "ours": a, "peer": b, "t_ours": best[a], "t_peer": best[b],
                          "ratio": ratio, "target": target,
                          "met": None if target is None else bool(ratio <= target)})
    # Per phase the minimum over `repeats` runs (one run's phases are as noisy as its total).
    splits = [phases(W, X, grid, percdamp, block, delta, zero, bits) for _ in range(repeats)]
    split = {who: {ph: min(sp[who][ph] for sp in splits) for ph in splits[0][who]} for who in splits[0]}
    profiles = {}
    for p in pairs:
        if p["met"] is False:
            for name in (p["ours"], p["peer"]):
                if name not in profiles:
                    profiles[name] = profile(runs[name])
    return {"size": size, "m": m, "times": times, "best": best, "checks": checks, "pairs": pairs,
            "phases": split, "profiles": profiles}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--m", type=int, default=8192)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--percdamp", type=float, default=0.01)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-brevitas", action="store_true", help="leave Brevitas out even if installed")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help="time only these contestants (their references run once, untimed)")
    ap.add_argument("--tag", default=None, help="write layer_cpu_<tag>.json instead of layer_cpu.json")
    args = ap.parse_args(argv)
    brevitas = bp.available() and not args.no_brevitas
    if not brevitas and not args.no_brevitas:
        print("Brevitas is not installed (pip install -e '.[bench]'): its rows are left out", flush=True)
    sizes = [bench_size(s, args.m, args.bits, args.percdamp, args.block, args.repeats, brevitas, args.only)
             for s in args.sizes]
    rows = [{"size": s["size"], "name": k, "best": s["best"].get(k), "median": float(np.median(s["times"][k]))
             if k in s["times"] else None, "codes": c.get("codes"), "loss_rel": c.get("loss_rel")}
            for s in sizes for k in [*s["times"], *(n for n in s["checks"] if n.startswith("_"))]
            for c in [s["checks"].get(k, {})]]
    print()
    print(C.table(rows, [("size", "n=N", "d"), ("name", "contestant", "s"), ("best", "best s", ".3f"),
                         ("median", "median s", ".3f"), ("codes", "codes equal", ".5f"),
                         ("loss_rel", "loss rel diff", ".1e")]))
    pairs = [p for s in sizes for p in s["pairs"]]
    print()
    print(C.table([{**p, "met": None if p["met"] is None else ("met" if p["met"] else "MISSED")}
                   for p in pairs],
                  [("size", "n=N", "d"), ("ours", "ours", "s"), ("peer", "peer", "s"),
                   ("ratio", "time ratio", ".3f"), ("target", "target <=", ".1f"), ("met", "", "s")]))
    print()
    print(C.table([{"size": s["size"], "name": k, **v, "total": sum(v.values())}
                   for s in sizes for k, v in s["phases"].items()],
                  [("size", "n=N", "d"), ("name", "phases of", "s"), ("statistics", "statistics s", ".3f"),
                   ("factorization", "factorization s", ".3f"), ("sweep", "sweep s", ".3f"),
                   ("record", "record s", ".3f"), ("total", "total s", ".3f")]))
    unequal = [(s["size"], k, c["against"]) for s in sizes for k, c in s["checks"].items() if not c["equal"]]
    payload = {"benchmark": "layer_cpu", "command": C.command(), "machine": C.machine(),
               "settings": vars(args) | {"out": str(args.out), "brevitas": brevitas}, "sizes": sizes,
               "pairs": pairs, "unequal": unequal}
    path = C.write("layer_cpu" + (f"_{args.tag}" if args.tag else ""), payload, args.out)
    print(f"\nwritten: {path}")
    for size, k, ref in unequal:
        print(f"NOT EQUAL at n = N = {size}: {k} against {ref}; its times are not comparable")
    return 1 if unequal else 0


if __name__ == "__main__":
    sys.exit(main())
