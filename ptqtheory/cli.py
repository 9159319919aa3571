"""The ``ptqtheory`` command.

``ptqtheory certify`` quantizes one seeded layer with every algorithm and prints, per algorithm,
the identity checked, its largest relative gap over rows, the empirical errors and the clip count.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from . import algorithms as alg
from .calibration import Damping
from .certificates import certify
from .grids import Grid


def default_layer(seed: int = 0, n: int = 96, N: int = 128, m: int = 512):
    """A seeded synthetic layer: heavy-tailed inputs (Student t, 3 dof) with a few outlier channels.

    Returns ``(W, X, Xt)``; ``Xt`` is ``X`` after 8-bit per-tensor activation rounding, the input
    mismatch that Qronos and GPFQ correct. Labelled synthetic wherever it is reported.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_t(3, size=(m, N))
    outliers = rng.choice(N, size=max(1, N // 32), replace=False)
    X[:, outliers] *= 20.0
    W = rng.standard_normal((n, N)) / np.sqrt(N)
    step = np.max(np.abs(X)) / 127.0
    Xt = step * np.floor(X / step + 0.5)
    return W, X, Xt


def _certify_table(args) -> int:
    W, X, Xt = default_layer(args.seed)
    damping = Damping.percdamp(args.percdamp)
    grid = Grid.minmax(W, bits=args.bits)
    runs = [
        ("rtn", lambda: alg.rtn(W, grid=grid), None),
        ("optq (A2')", lambda: alg.optq(W, X, lam=damping, grid=grid), None),
        ("optq act-order", lambda: alg.optq(W, X, lam=damping, grid=grid, order="decreasing_norm"),
         None),
        ("optq stochastic", lambda: alg.optq(W, X, lam=damping, grid=grid, rounding="stochastic",
                                             seed=args.seed), None),
        ("optq groups 32", lambda: alg.optq(W, X, lam=damping, grid=Grid.minmax(
            W, bits=args.bits, group_size=32)), None),
        ("ldlq", lambda: alg.ldlq(W, X, lam=damping, grid=grid), None),
        ("ldlq + incoherence", lambda: alg.ldlq(W, X, lam=damping, grid=grid, incoherence="kron",
                                                seed=args.seed), None),
        ("qronos (A4)", lambda: alg.qronos(W, X, Xt, lam=damping, grid=grid), Xt),
        ("qronos-ls (A4')", lambda: alg.qronos(W, X, Xt, lam=damping, grid=grid, variant="ls"), Xt),
        ("gpfq", lambda: alg.gpfq(W, X, Xt, grid=grid), Xt),
    ]
    print(f"Synthetic layer (seed {args.seed}): W {W.shape}, X {X.shape}, {args.bits}-bit min-max "
          f"grid per row, damping percdamp={args.percdamp}")
    head = f"{'algorithm':<20}{'identity':>9}{'max gap':>11}{'mean ||Xw-Xt q||':>18}" \
           f"{'max |.|_inf':>13}{'clipped':>9}{'seconds':>9}"
    print(head)
    print("-" * len(head))
    worst, all_hold = 0.0, True
    for name, fn, xt in runs:
        t0 = time.perf_counter()
        r = fn()
        c = certify(r, X, xt)
        dt = time.perf_counter() - t0
        worst = max(worst, c.max_gap)
        all_hold &= c.holds(args.tol)
        print(f"{name:<20}{c.identity or '-':>9}{c.max_gap:>11.2e}{np.mean(c.err_l2):>18.4f}"
              f"{np.max(c.err_inf):>13.4f}{r.n_clipped:>9d}{dt:>9.2f}")
    print(f"largest identity gap: {worst:.2e}; every identity holds at rtol={args.tol:g}: {all_hold}")
    return 0 if all_hold else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ptqtheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("certify", help="quantize a seeded synthetic layer with every algorithm "
                       "and print the exact certificates (I1-I6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--percdamp", type=float, default=0.01)
    p.add_argument("--tol", type=float, default=1e-9, help="relative tolerance of the identities")
    args = parser.parse_args(argv)
    if args.command == "certify":
        return _certify_table(args)
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
