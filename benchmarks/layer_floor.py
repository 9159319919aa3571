"""Benchmark 4: our torch float32 OPTQ against the GPTQ-style loop and against the hardware floor.

On the device given (``cuda`` when there is one, else the CPU), for each layer shape ``n x N`` with
``m`` calibration rows, float32, TF32 off:

* times ours (``pt.optq`` on tensors on the device) and the published GPTQ-style loop
  (``benchmarks/gptq_loop.py``) on the same device, after checking that their results are equal;
* measures, in the same call, the device's float32 and float64 GEMM rates and its copy bandwidth,
  and computes the floor of the work: ``max(flops / rate, bytes / bandwidth)`` with
  flops = statistics ``2 m N^2`` + factorization ``2 N^3 / 3`` + sweep ``n N^2`` and
  bytes = reading ``X`` once plus reading and writing ``W`` and ``Q`` (float32);
* reports peak device memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: peak resident set).

Issue 6's GPU targets: ours at most 0.5x the loop's time on 4096 x 4096 and within 5x of the floor.
GPU shapes (default with ``--device cuda``): 4096x4096, 11008x4096 and 4096x11008 with
``m = 128 * 2048``. On the CPU the defaults are 1024 and 4096 square with ``m = 8192``.

Usage::

    python benchmarks/layer_floor.py                       # CUDA if available, else CPU
    python benchmarks/layer_floor.py --device cpu --shapes 256x256 --m 1024 --repeats 1 --out /tmp/r
"""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C
from gptq_loop import gptq_loop

import ptqtheory as pt

GPU_SHAPES = ["4096x4096", "11008x4096", "4096x11008"]
CPU_SHAPES = ["1024x1024", "4096x4096"]


def gemm_rate(device, dtype, size: int, repeats: int = 3) -> float:
    """Measured flop/s of a ``size``-cubed matrix product."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    _, t = C.timed(lambda: a @ b, repeats, device)
    return 2 * size**3 / min(t)


def copy_bandwidth(device, nbytes: int, repeats: int = 3) -> float:
    """Measured bytes/s of a device-to-device copy (read + write counted)."""
    src = torch.empty(nbytes // 4, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    _, t = C.timed(lambda: dst.copy_(src), repeats, device)
    return 2 * nbytes / min(t)


def floor_seconds(n: int, N: int, m: int, rate: float, bandwidth: float) -> dict:
    flops = 2 * m * N**2 + 2 * N**3 / 3 + n * N**2
    nbytes = 4 * (m * N + 3 * n * N)
    return {"flops": flops, "bytes": nbytes, "t_flops": flops / rate, "t_bytes": nbytes / bandwidth,
            "floor": max(flops / rate, nbytes / bandwidth)}


def peak_memory(device) -> float:
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def bench_shape(n: int, N: int, m: int, device, repeats: int, bits: int, percdamp: float,
                rate: float, bandwidth: float) -> dict:
    gen = torch.Generator(device=device).manual_seed(n * 7 + N)
    X = torch.randn(m, N, device=device, generator=gen)
    X = X @ (torch.eye(N, device=device) + 0.3 * torch.randn(N, N, device=device, generator=gen) / N**0.5)
    W = 0.02 * torch.randn(n, N, device=device, generator=gen)
    grid = pt.Grid.minmax(W.double().cpu().numpy(), bits=bits).frozen()
    delta = torch.tensor(grid.delta, device=device, dtype=torch.float32)
    zero = torch.tensor(grid.zero, device=device, dtype=torch.float32)
    damp = pt.Damping.percdamp(percdamp)
    out = {"n": n, "N": N, "m": m}
    results = {}
    for name, fn in (("ours torch f32", lambda: pt.optq(W, X, lam=damp, grid=grid).Q),
                     ("GPTQ loop f32", lambda: gptq_loop(W, X, delta, zero, 0.0, 2.0**bits - 1, percdamp))):
        if str(device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)
        print(f"  {n}x{N}, m = {m}: {name} ...", flush=True)
        results[name], times = C.timed(fn, repeats, device)
        out[name] = {"best": min(times), "times": times, "peak_memory_gib": peak_memory(device)}
    Wn = W.double().cpu().numpy()
    d, z = grid.delta.reshape(-1, 1), grid.zero.reshape(-1, 1)
    sample = slice(0, min(m, 8192))  # the output error on a sample of rows (all of X is large on a GPU)
    out["check"] = C.agreement(results["ours torch f32"], results["GPTQ loop f32"],
                               X[sample].double().cpu().numpy(), Wn, d, z)
    out["check"]["equal"] = C.equal_enough(out["check"])
    fl = floor_seconds(n, N, m, rate, bandwidth)
    ours, loop = out["ours torch f32"]["best"], out["GPTQ loop f32"]["best"]
    out |= {"floor": fl, "ratio_loop": ours / loop, "ratio_floor": ours / fl["floor"],
            "loop_ratio_floor": loop / fl["floor"]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", nargs="+", default=None, help="n x N, e.g. 4096x4096")
    ap.add_argument("--m", type=int, default=None, help="calibration rows (GPU 262144, CPU 8192)")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--percdamp", type=float, default=0.01)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    shapes = args.shapes or (GPU_SHAPES if gpu else CPU_SHAPES)
    m = args.m or (128 * 2048 if gpu else 8192)
    size = 4096 if gpu else 2048
    rate32, rate64 = gemm_rate(device, torch.float32, size), gemm_rate(device, torch.float64, size)
    bandwidth = copy_bandwidth(device, 2**30 if gpu else 2**28)
    print(f"{device}: float32 GEMM {rate32 / 1e12:.2f} Tflop/s, float64 GEMM {rate64 / 1e12:.2f} Tflop/s, "
          f"copy {bandwidth / 1e9:.1f} GB/s")
    rows = []
    for shape in shapes:
        n, N = (int(v) for v in shape.lower().split("x"))
        rows.append(bench_shape(n, N, m, device, args.repeats, args.bits, args.percdamp, rate32, bandwidth))
    print()
    print(C.table([{**r, "shape": f"{r['n']}x{r['N']}", "ours": r["ours torch f32"]["best"],
                    "loop": r["GPTQ loop f32"]["best"], "floor": r["floor"]["floor"],
                    "mem": r["ours torch f32"]["peak_memory_gib"], "codes": r["check"]["codes"]}
                   for r in rows],
                  [("shape", "n x N", "s"), ("ours", "ours s", ".3f"), ("loop", "GPTQ loop s", ".3f"),
                   ("floor", "floor s", ".3f"), ("ratio_loop", "ours/loop", ".3f"),
                   ("ratio_floor", "ours/floor", ".2f"), ("loop_ratio_floor", "loop/floor", ".2f"),
                   ("mem", "peak GiB", ".2f"), ("codes", "codes equal", ".5f")]))
    payload = {"benchmark": "layer_floor", "command": C.command(), "machine": C.machine(str(device)),
               "device": str(device), "gemm_f32_flops": rate32, "gemm_f64_flops": rate64,
               "copy_bytes_per_s": bandwidth, "settings": vars(args) | {"out": str(args.out), "m": m},
               "rows": rows}
    name = "layer_floor_gpu" if gpu else "layer_floor_cpu"
    print(f"\nwritten: {C.write(name, payload, args.out)}")
    unequal = [r for r in rows if not r["check"]["equal"]]
    return 1 if unequal else 0


if __name__ == "__main__":
    sys.exit(main())
