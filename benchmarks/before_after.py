"""Before/after in the same session: one benchmark script run alternately against two package trees.

``--before`` names a directory holding an older ``ptqtheory/`` package (e.g. ``git archive <commit>
ptqtheory | tar -x -C DIR``); the "after" side is this checkout. Each round runs the benchmark once
with ``PYTHONPATH=DIR`` and once with ``PYTHONPATH=<this checkout>`` (alternating which goes first),
so both sides see the same machine load. The per-round JSON files are kept, and the medians over
rounds of every numeric field of each row are written to ``results/<name>_before_after.json``.

Usage::

    python benchmarks/before_after.py --before /tmp/base --rounds 3 -- \\
        benchmarks/certify_cost.py --sizes 4096 --repeats 1 --no-profiles
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("size", "algorithm", "path")  # what identifies a row of certify_cost


def run_once(script: list[str], tree: Path, out: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([sys.executable, *script, "--out", str(out)], env=env, check=True, cwd=ROOT)
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


def medians(payloads: list[dict]) -> list[dict]:
    """Per row of ``rows`` (certify_cost) the median over rounds of each numeric field."""
    out = []
    for i, row in enumerate(payloads[0]["rows"]):
        med = {k: row[k] for k in KEYS if k in row}
        for k, v in row.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in KEYS:
                med[k] = float(np.median([p["rows"][i][k] for p in payloads]))
        med["rounds"] = len(payloads)
        out.append(med)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="directory holding the older ptqtheory/")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--name", default="certify_cost")
    ap.add_argument("--work", type=Path, default=Path("/tmp/before_after"))
    ap.add_argument("--into", type=Path, default=None,
                    help="also store the medians under 'before_after' in this results JSON (e.g. "
                         "benchmarks/results/certify_cost.json), keyed by the script's arguments")
    ap.add_argument("--collect", action="store_true",
                    help="run nothing: summarize the rounds already in --work (each side's complete rounds)")
    ap.add_argument("script", nargs=argparse.REMAINDER, help="-- the benchmark script and its arguments")
    args = ap.parse_args(argv)
    script = [a for a in args.script if a != "--"]
    sides: dict[str, list[dict]] = {"before": [], "after": []}
    trees = {"before": args.before.resolve(), "after": ROOT}
    if args.collect:
        for side in sides:
            for r in range(args.rounds):
                found = sorted((args.work / f"{side}_{r}").glob("*.json"))
                if found:
                    sides[side].append(json.loads(found[0].read_text()))
        done = min(len(sides["before"]), len(sides["after"]))
        sides = {k: v[:done] for k, v in sides.items()}
        args.rounds = done
    for r in range(0 if args.collect else args.rounds):
        order = ("before", "after") if r % 2 == 0 else ("after", "before")
        for side in order:
            out = args.work / f"{side}_{r}"
            out.mkdir(parents=True, exist_ok=True)
            for old in out.glob("*.json"):
                old.unlink()
            print(f"round {r + 1}/{args.rounds}: {side}", flush=True)
            sides[side].append(run_once(script, trees[side], out))
    table = {side: medians(p) for side, p in sides.items()}
    rows = []
    for b, a in zip(table["before"], table["after"], strict=True):
        row = {k: b[k] for k in KEYS if k in b}
        for key in ("t_quantize", "t_certify", "ratio", "t_certify_stats", "ratio_stats"):
            if key in b:
                row[f"{key}_before"], row[f"{key}_after"] = b[key], a[key]
        rows.append(row)
    print(C.table(rows, [("size", "n=N", "d"), ("algorithm", "algorithm", "s"), ("path", "path", "s"),
                         ("t_quantize_before", "quant. before", ".2f"), ("t_quantize_after", "after", ".2f"),
                         ("t_certify_before", "cert(X) before", ".2f"), ("t_certify_after", "after", ".2f"),
                         ("ratio_before", "ratio before", ".2f"), ("ratio_after", "after", ".2f"),
                         ("ratio_stats_before", "ratio(stats) before", ".2f"),
                         ("ratio_stats_after", "after", ".2f")]))
    payload = {"benchmark": f"{args.name}_before_after", "command": C.command(), "machine": C.machine(),
               "script": script, "before_tree": str(args.before), "rounds": args.rounds,
               "medians": rows, "runs": sides}
    print(f"\nwritten: {C.write(args.name + '_before_after', payload)}")
    if args.into is not None:
        target = json.loads(args.into.read_text()) if args.into.exists() else {}
        target.setdefault("before_after", {})[" ".join(script)] = {
            k: payload[k] for k in ("command", "machine", "before_tree", "rounds", "medians")}
        args.into.write_text(json.dumps(target, indent=1) + "\n")
        print(f"stored in: {args.into}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
