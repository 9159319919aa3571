"""Benchmark 3: the test suite's wall time, and hypothesis examples per second per bound test.

Runs the README's test command (``python -m pytest -q``) in a subprocess and times it, then runs
the property-based bound tests (``tests/test_bounds.py``) with ``--hypothesis-show-statistics`` and
reads, per test, the passing examples and the seconds of the generate phase.

Usage::

    python benchmarks/suite.py                  # whole suite + bound statistics
    python benchmarks/suite.py --skip-suite     # bound statistics only
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

ROOT = Path(__file__).resolve().parent.parent
BOUND_TESTS = "tests/test_bounds.py"

_TEST = re.compile(r"^(\S+::\S+):\s*$")
_PHASE = re.compile(r"- during (\w+) phase \(([\d.]+) seconds\)")
# "- 300 passing, 0 failing, and 0 invalid test cases" (older releases: "... passing examples, ...")
_COUNTS = re.compile(r"- (\d+) passing\D+?(\d+) failing\D+?(\d+) invalid")


def parse_statistics(text: str) -> list[dict]:
    """Per test: the generate phase's passing/invalid examples and seconds (hypothesis' statistics)."""
    out, current, phase = [], None, None
    for line in text.splitlines():
        if m := _TEST.match(line.strip()):
            current = {"test": m.group(1), "seconds": None, "passing": None, "invalid": None}
            out.append(current)
            phase = None
        elif current is not None and (m := _PHASE.search(line)):
            phase = m.group(1)
            if phase == "generate":
                current["seconds"] = float(m.group(2))
        elif current is not None and phase == "generate" and (m := _COUNTS.search(line)):
            current["passing"], current["invalid"] = int(m.group(1)), int(m.group(3))
    for r in out:
        ok = r["seconds"] and r["passing"] is not None
        r["examples_per_s"] = r["passing"] / r["seconds"] if ok else None
    return [r for r in out if r["passing"] is not None]


def run(cmd: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    return time.perf_counter() - t0, proc.returncode, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-suite", action="store_true", help="only the hypothesis statistics")
    ap.add_argument("--tests", default=BOUND_TESTS, help="the bound tests to take statistics of")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    payload = {"benchmark": "suite", "command": C.command(), "machine": C.machine()}
    status = 0
    if not args.skip_suite:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        wall, rc, text = run(cmd)
        summary = next((ln for ln in reversed(text.splitlines()) if " in " in ln and "passed" in ln), "")
        payload["suite"] = {"command": "python -m pytest -q", "wall_s": wall, "returncode": rc,
                            "summary": summary.strip("= ")}
        print(f"test suite: {wall:.1f} s wall, exit {rc}: {summary.strip('= ')}")
        status |= rc
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
           args.tests]
    wall, rc, text = run(cmd)
    stats = parse_statistics(text)
    payload["hypothesis"] = {"command": "python -m pytest -q --hypothesis-show-statistics " + args.tests,
                             "wall_s": wall, "returncode": rc, "tests": stats}
    status |= rc
    print()
    print(C.table([{**r, "test": r["test"].split("::")[-1]} for r in stats],
                  [("test", "bound test", "s"), ("passing", "examples", "d"), ("invalid", "invalid", "d"),
                   ("seconds", "generate s", ".2f"), ("examples_per_s", "examples/s", ".1f")]))
    print(f"\nwritten: {C.write('suite', payload, args.out)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
