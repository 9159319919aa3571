"""Check the Brevitas peer adapter against ptqtheory on a small and a medium layer.

Run with ``python benchmarks/check_brevitas_peer.py`` (add ``--time`` for the wall time of Brevitas'
GPTQ on n = N = 1024, m = 8192). For every layer it prints

1. RTN: entries where Brevitas' ``quant_weight`` differs from ``grid.round`` (only float32 ties may);
2. GPTQ: Brevitas vs ``pt.optq`` (torch float32 and numpy float64), same grid and ``percdamp``;
3. Qronos: Brevitas vs ``pt.qronos`` with ``Xt`` = ``X`` rounded to an 8-bit per-tensor grid,

as the fraction of equal integer codes, the rows that diverge anywhere (a row that flips one rounding
decision differs from there on), how close the first flip of each such row is to a rounding tie in
ptqtheory's float64 run (``|frac - 1/2|`` of ``x/delta + zero``), and the relative difference of the
proxy loss (``||X(W-Q)^T||_F^2``, for Qronos ``||XW^T - Xt Q^T||_F^2``).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brevitas_peer as bp

import ptqtheory as pt

BITS = 4
PERCDAMP = 0.01
BLOCK = 128
F32 = torch.float32


def make_layer(n: int, N: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded ``W ~ 0.02 randn``, inputs with correlated columns, and their 8-bit per-tensor rounding.

    Returns
    -------
    W : (n, N), X : (m, N), Xt : (m, N)
        float64 arrays; ``Xt`` is ``X`` rounded to ``s * [-128, 127]`` with ``s = max|X| / 127``.
    """
    rng = np.random.default_rng(seed)
    mix = np.eye(N) + rng.standard_normal((N, N)) / np.sqrt(N)
    X = rng.standard_normal((m, N)) @ mix
    W = 0.02 * rng.standard_normal((n, N))
    s = np.abs(X).max() / 127
    Xt = np.clip(np.round(X / s), -128, 127) * s
    return W, X, Xt


def t32(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=F32)


def to64(Q) -> np.ndarray:
    if isinstance(Q, torch.Tensor):
        return Q.detach().to(torch.float64).cpu().numpy()
    return np.asarray(Q, dtype=np.float64)


def proxy(W, X, Q, Xt=None) -> float:
    """``||X W^T - Xt Q^T||_F^2`` (``Xt = X`` by default), in float64."""
    Xt = X if Xt is None else Xt
    return float(np.sum((X @ W.T - Xt @ to64(Q).T) ** 2))


def tie_distance(run: pt.Run, grid: pt.Grid, i: int, j: int) -> float:
    """``|frac(u) - 1/2|`` of ``u = x/delta + zero`` at entry ``(i, j)`` of ptqtheory's run."""
    u = to64(run.x)[i, j] / grid.delta[i] + grid.zero[i]
    return float(abs(u - np.floor(u) - 0.5))


def compare(name: str, Qb, run: pt.Run, grid: pt.Grid, loss) -> dict:
    """Agreement of Brevitas' ``Qb`` with ptqtheory's ``run.Q`` on ``grid``."""
    cb, cp = bp.codes(Qb, grid), bp.codes(run.Q, grid)
    diff = cb != cp
    rows = np.flatnonzero(diff.any(axis=1))
    ties = [tie_distance(run, grid, i, int(np.flatnonzero(diff[i])[0])) for i in rows]
    lb, lp = loss(Qb), loss(run.Q)
    return {
        "case": name,
        "agree": float(1.0 - diff.mean()),
        "rows": f"{len(rows)}/{diff.shape[0]}",
        "max_tie": max(ties) if ties else float("nan"),
        "rel_loss": (lb - lp) / lp,
    }


def check_grid(layer, grid: pt.Grid, X) -> None:
    """RTN agreement and a frozen grid (GPTQ on a copy must leave scale and zero point unchanged)."""
    print(f"  RTN mismatches (Brevitas quant_weight vs grid.round): {bp.rtn_mismatches(layer, grid)}")
    other = copy.deepcopy(layer)
    bp.gptq(other, t32(X[:256]), PERCDAMP, BLOCK, inplace=True)
    after = bp.layer_grid(other, BITS)
    same = np.array_equal(after.delta, grid.delta) and np.array_equal(after.zero, grid.zero)
    print(f"  grid unchanged after GPTQ updated the weights: {same}")


def check_gptq(W, X, layer, grid) -> list[dict]:
    Qb = bp.gptq(layer, t32(X), PERCDAMP, BLOCK)
    Qb64 = bp.gptq(layer, t32(X), PERCDAMP, BLOCK, dtype=torch.float64)
    lam = pt.Damping.percdamp(PERCDAMP)
    r32 = pt.optq(t32(W), t32(X), lam=lam, grid=grid, block_size=BLOCK)
    r64 = pt.optq(W, X, lam=lam, grid=grid, block_size=BLOCK)

    def loss(Q):
        return proxy(W, X, Q)

    return [
        compare("GPTQ brev(H f32) vs optq torch f32", Qb, r32, grid, loss),
        compare("GPTQ brev(H f32) vs optq numpy f64", Qb, r64, grid, loss),
        compare("GPTQ brev(H f64) vs optq numpy f64", Qb64, r64, grid, loss),
    ]


def check_qronos(W, X, Xt, layer, grid) -> list[dict]:
    out = []

    def loss(Q):
        return proxy(W, X, Q, Xt)

    for pd in (None, PERCDAMP):
        tag = "alpha=1e-6" if pd is None else f"percdamp={pd:g}"
        rec: dict = {}
        Qb = bp.qronos(layer, t32(X), t32(Xt), pd, BLOCK, record=rec)
        Qb64 = bp.qronos(layer, t32(X), t32(Xt), pd, BLOCK, dtype=torch.float64)
        lam = rec["lam"]  # Brevitas' damping in our units (m * its mu)
        kw = {"lam": lam, "grid": grid, "block_size": BLOCK}
        r32 = pt.qronos(t32(W), t32(X), t32(Xt), variant="paper", start="w", **kw)
        r64 = pt.qronos(W, X, Xt, variant="paper", start="w", **kw)
        rls = pt.qronos(W, X, Xt, variant="ls", **kw)
        out += [
            compare(f"Qronos {tag} brev(f32) vs paper/w torch f32", Qb, r32, grid, loss),
            compare(f"Qronos {tag} brev(f32) vs paper/w numpy f64", Qb, r64, grid, loss),
            compare(f"Qronos {tag} brev(f64) vs paper/w numpy f64", Qb64, r64, grid, loss),
            compare(f"Qronos {tag} brev(f64) vs ls numpy f64", Qb64, rls, grid, loss),
        ]
    return out


def print_table(rows: list[dict]) -> None:
    print(f"  {'case':<52} {'agree':>9} {'rows diff':>10} {'max|frac-1/2|':>14} {'rel loss':>10}")
    for r in rows:
        print(f"  {r['case']:<52} {r['agree']:>9.5f} {r['rows']:>10} {r['max_tie']:>14.2e} "
              f"{r['rel_loss']:>10.2e}")


def run_case(n: int, N: int, m: int, seed: int) -> None:
    print(f"\n== n={n}, N={N}, m={m}, {BITS} bits, seed={seed} ==")
    W, X, Xt = make_layer(n, N, m, seed)
    layer, grid = bp.frozen_minmax_layer(t32(W), BITS)
    W = to64(layer.weight)  # the float32 weights both sides see
    check_grid(layer, grid, X)
    print_table(check_gptq(W, X, layer, grid) + check_qronos(W, X, Xt, layer, grid))


def time_gptq(n: int = 1024, N: int = 1024, m: int = 8192) -> None:
    W, X, _ = make_layer(n, N, m, seed=2)
    layer, _ = bp.frozen_minmax_layer(t32(W), BITS)
    X32 = t32(X)
    t0 = time.perf_counter()
    bp.gptq(layer, X32, PERCDAMP, BLOCK)
    dt = time.perf_counter() - t0
    print(f"\nBrevitas GPTQ n={n}, N={N}, m={m} float32 (incl. H forward passes): {dt:.2f} s "
          f"({torch.get_num_threads()} threads)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", action="store_true", help="also time Brevitas GPTQ on 1024 x 1024, m=8192")
    args = ap.parse_args()
    if not bp.available():
        print("brevitas is not importable; nothing to check")
        return
    import warnings

    warnings.filterwarnings("ignore")
    run_case(64, 256, 1024, seed=0)
    run_case(512, 512, 4096, seed=1)
    if args.time:
        time_gptq()


if __name__ == "__main__":
    main()
