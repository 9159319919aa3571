"""Command-line entry point: ``python -m proofs_check``.

Runs every registered check, prints one ``PASS``/``FAIL`` line per check (with the
detail of failures, and of every check with ``-v``), a summary, and exits with
status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

from .registry import all_checks


def main(argv: list[str] | None = None) -> int:
    """Run the checks and report.

    Parameters
    ----------
    argv : list[str], optional
        Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    int
        0 if every selected check passed, 1 otherwise.
    """
    parser = argparse.ArgumentParser(prog="python -m proofs_check", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="print the detail of every check")
    parser.add_argument("-k", "--select", default="", help="only run checks whose name contains this text")
    args = parser.parse_args(argv)
    checks = [c for c in all_checks() if args.select in c.name]
    start = time.perf_counter()
    failed = 0
    for check in checks:
        result = check()
        print(result.line(), flush=True)
        if args.verbose or not result.passed:
            print(f"      {result.detail}  [{result.seconds:.2f} s]", flush=True)
        failed += not result.passed
    elapsed = time.perf_counter() - start
    print(f"{len(checks) - failed} passed, {failed} failed, {len(checks)} checks in {elapsed:.1f} s")
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
