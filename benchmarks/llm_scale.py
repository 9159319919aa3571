"""Benchmark 5: whole-model scale without a GPU. Llama-7B-shaped blocks streamed from disk.

SYNTHETIC MODELS. The models quantized here are random (seeded normal weights, std 0.02; norms
one) Llama models with the block shape of Llama-7B (hidden 4096, intermediate 11008, 32 heads,
32 KV heads) and a 512-token vocabulary (so the embedding and ``lm_head`` stay small), written as
safetensors folders of 1, 2 and 4 blocks. They say nothing about accuracy; they measure time and
memory of the real pipeline on real shapes:

1. **Write** each model block by block (one block's tensors in memory at a time; one shard per
   block, the depth-d folder links the first d shards), in a temporary folder (``--models DIR``
   keeps and reuses them).
2. **Quantize** each depth in a fresh subprocess (so the peak resident memory of one depth is not
   mixed with another's): :func:`ptqtheory.models.pipeline.quantize_model` over
   :class:`ptqtheory.models.lazy.SafetensorsBlocks` (the model's weights stay on disk, one block is
   loaded at a time and written back quantized to ``out_dir``), torch backend on ``--device`` in
   float32, statistics streamed (float64), OPTQ 4-bit per channel (min-max, asymmetric), percdamp
   0.01, every row certified. Calibration: seeded random token ids (synthetic), by default 4
   sequences x 256 tokens = 1024 tokens on the CPU: every group then runs the same factorization,
   sweep and certificate as with more tokens (those costs do not depend on the token count), while
   the token-proportional parts (statistics, block forward passes) stay small enough for two cores;
   the flop model below scales them to any token count.
3. **Record** per depth: total time, per block the load / work / release times, the resident-set
   high-water mark (``resource.getrusage``, in the subprocess) after each block, and on CUDA
   ``torch.cuda.max_memory_allocated``. (``tracemalloc`` is not used: it sees only Python's own
   allocator, not tensor memory.) Peak memory must not grow with depth: 1 vs 4 blocks.
4. **Flop model** per block, from the shapes (groups q/k/v, o, gate/up, down; ``n`` stacked rows,
   ``N`` columns, ``m`` tokens, ``P`` parameters of a block, ``T`` sequence length, ``F`` block
   passes per block as counted by the pipeline):

   - statistics ``2 m N^2`` (float64, accumulated batch by batch);
   - factorization ``2 N^3 / 3`` (Cholesky ``N^3/3`` + triangular inverse ``N^3/3``, float64);
   - sweep ``n N^2`` (working dtype; sum over columns t of ``2 n (N - t)``);
   - certificate ``4 n N^2 + 2 m n N`` (float64: the structure residual ``eta L^T`` and the
     host-side bounds ~``2 n N^2`` each, the empirical errors ``E X^T`` over the data);
   - block forward passes ``F (2 P m + 4 m T d)`` (working dtype), ``F`` the pipeline's block calls
     per batch in full-pass equivalents: a call that stops at a group's first layer counts the share
     of the block's weights before it (:func:`full_passes`).

   The model's predicted time at the measured CPU GEMM rates is compared with the measured time.
5. **ON PAPER (EXTRAPOLATION, NOT MEASURED)**: Llama-7B, 13B and 70B on one H100/H200 from the same
   flop model at ``--gpu-tokens`` tokens and stated rates (``--gpu-f32``, ``--gpu-f64``,
   ``--gpu-factor``, ``--gpu-column-latency``, ``--disk``), with a memory estimate per block
   (:func:`memory_model` with the per-group constants fitted to the measured group peaks,
   :func:`fit_memory`; on a GPU part of that state, the bounds' per-entry arrays, is host memory).

Usage::

    python benchmarks/llm_scale.py                      # CPU, depths 1 2 4 (7 blocks, ~1 h on 2 cores)
    python benchmarks/llm_scale.py --device cuda        # on a GPU (16 x 2048 tokens by default)
    python benchmarks/llm_scale.py --quick --out /tmp/r # tiny shapes, seconds (the test)
    python benchmarks/llm_scale.py --reanalyze benchmarks/results/llm_scale.json --gpu-f32 40e12
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

SYNTHETIC = ("SYNTHETIC: random Llama-architecture weights (seeded normal, std 0.02; norm weights 1), "
             "random calibration token ids; for time and memory only, says nothing about accuracy")
EXTRAPOLATION = ("EXTRAPOLATION ON PAPER, NOT MEASURED: the flop model of this benchmark at stated GPU "
                 "rates; refresh with measured GPU numbers (benchmarks/device/gpu_check.sh)")


@dataclass(frozen=True)
class Shape:
    """A Llama block shape and, for models on paper, the depth and vocabulary."""

    name: str
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    blocks: int

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def groups(self) -> list[tuple[str, int, int]]:
        """``(group, n stacked rows, N columns)`` in call order (layers reading one input share a run)."""
        d, i = self.hidden, self.intermediate
        return [("q,k,v", d + 2 * self.kv_dim, d), ("o", d, d), ("gate,up", 2 * i, d), ("down", d, i)]

    @property
    def block_params(self) -> int:
        return sum(n * N for _, n, N in self.groups()) + 2 * self.hidden  # + the two RMSNorm weights


BENCH_7B = Shape("synthetic Llama-7B block shape", 4096, 11008, 32, 32, 512, 4)
QUICK = Shape("synthetic tiny (quick)", 64, 176, 4, 2, 128, 2)
PAPER = [Shape("Llama-7B", 4096, 11008, 32, 32, 32000, 32),
         Shape("Llama-13B", 5120, 13824, 40, 40, 32000, 40),
         Shape("Llama-70B", 8192, 28672, 64, 8, 32000, 80)]

# GPU assumptions for the extrapolation (H100 SXM / H200: same compute; datasheet peaks 67 Tflop/s
# FP32 without TF32 and 67 Tflop/s FP64 on tensor cores). Achieved rates are assumed, not measured.
GPU_F32 = 50e12      # float32 GEMM-like work (sweep, block forwards), TF32 off
GPU_F64 = 60e12      # float64 GEMMs (statistics, certificate)
GPU_FACTOR = 20e12   # float64 Cholesky + triangular inverse (cuSOLVER reaches less than GEMM)
GPU_COLUMN_LATENCY = 40e-6  # seconds of kernel launches per column of the sweep (~8 launches x 5 us)
DISK = 2e9           # bytes/s reading a block from NVMe (bfloat16 checkpoint: 2 bytes per parameter)
GPU_TOKENS = 128 * 2048  # GPTQ's usual calibration: 128 sequences x 2048 tokens


# --------------------------------------------------------------------------------------------------
# Writing the synthetic models


def llama_config(shape: Shape, depth: int, seq_len: int):
    from transformers import LlamaConfig

    return LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                       num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
                       num_hidden_layers=depth, vocab_size=shape.vocab,
                       max_position_embeddings=max(seq_len, 2048), tie_word_embeddings=False)


def write_synthetic(root: Path, shape: Shape, depths: list[int], seq_len: int,
                    seed: int = 0) -> dict[int, Path]:
    """Write the synthetic models; ``{depth: folder}``. One shard per block, written and dropped in turn.

    Tensor names and shapes come from the model class itself (a skeleton on ``meta``), so the files
    match what ``transformers`` builds. The depth-``d`` folder holds its ``config.json``, an index and
    links to the shared shards of blocks ``0..d-1`` plus the non-block shard. ``spec.json`` is written
    last: a folder with a matching one is reused as it is.
    """
    from accelerate import init_empty_weights
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    top = max(depths)
    spec = {"shape": asdict(shape), "blocks": top, "seed": seed, "std": 0.02, "dtype": "float32",
            "synthetic": SYNTHETIC}
    folders = {d: root / f"depth-{d}" for d in depths}
    spec_file = root / "spec.json"
    if spec_file.is_file() and json.loads(spec_file.read_text()) == spec and all(
            (f / "config.json").is_file() for f in folders.values()):
        return folders
    shutil.rmtree(root, ignore_errors=True)
    shards = root / "shards"
    shards.mkdir(parents=True)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(llama_config(shape, top, seq_len))
    by_block: dict[int | None, dict[str, tuple]] = {}
    for name, p in skeleton.named_parameters():
        parts = name.split(".")
        block = int(parts[2]) if parts[:2] == ["model", "layers"] else None
        by_block.setdefault(block, {})[name] = tuple(p.shape)
    meta = {"format": "pt", "synthetic": SYNTHETIC}
    files: dict[int | None, str] = {}
    for block, tensors in sorted(by_block.items(), key=lambda kv: -1 if kv[0] is None else kv[0]):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + (0 if block is None else block + 1))
        out = {}
        for name, shp in tensors.items():
            if name.endswith("norm.weight"):
                out[name] = torch.ones(shp)
            else:
                out[name] = torch.randn(shp, generator=gen).mul_(0.02)
        fname = "rest.safetensors" if block is None else f"block-{block:04d}.safetensors"
        save_file(out, str(shards / fname), metadata=meta)
        files[block] = fname
        del out  # one block's tensors at a time
    for depth, folder in folders.items():
        folder.mkdir()
        llama_config(shape, depth, seq_len).save_pretrained(folder)
        weight_map = {}
        for block in [None, *range(depth)]:
            link = folder / f"model-{'rest' if block is None else f'{block:05d}'}.safetensors"
            link.symlink_to(Path("..") / "shards" / files[block])
            weight_map |= dict.fromkeys(by_block[block], link.name)
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": meta,
                                                                          "weight_map": weight_map}, indent=1))
        (folder / "SYNTHETIC.txt").write_text(SYNTHETIC + "\n")
    spec_file.write_text(json.dumps(spec))
    return folders


# --------------------------------------------------------------------------------------------------
# The flop and memory models


def block_flops(shape: Shape, tokens: int, seq_len: int, passes: float) -> dict:
    """Flops of one block by part and precision (see the module notes); ``passes`` block passes."""
    m, d = tokens, shape.hidden
    parts = {"statistics_f64": 0.0, "factor_f64": 0.0, "sweep_work": 0.0, "certificate_f64": 0.0}
    for _, n, N in shape.groups():
        parts["statistics_f64"] += 2 * m * N**2
        parts["factor_f64"] += 2 * N**3 / 3
        parts["sweep_work"] += n * N**2
        parts["certificate_f64"] += 4 * n * N**2 + 2 * m * n * N
    parts["forwards_work"] = passes * (2 * shape.block_params * m + 4 * m * seq_len * d)
    parts["total"] = sum(parts.values())
    parts["columns"] = sum(N for _, _, N in shape.groups())
    return parts


def full_passes(shape: Shape, passes: float) -> float:
    """Block calls per batch, as the pipeline counts them, in full-pass equivalents.

    With streamed statistics the pipeline calls a block once to find its groups, ``k`` times per group
    (statistics, the certificate's pass over the data, ...), each call stopping at the group's first
    layer, and once for its outputs: ``2 + k G`` calls. A call that stops at a group costs the share
    of the block's weights before that group. A count of any other form is taken as full passes (an
    upper bound).
    """
    groups = shape.groups()
    k = (passes - 2) / len(groups)
    if k < 0 or abs(k - round(k)) > 1e-9:
        return passes
    before, share = 0, 0.0
    for _, n, N in groups:
        share += before / shape.block_params
        before += n * N
    return 2 + round(k) * share


def predicted_seconds(fl: dict, f32: float, f64: float, factor: float, column_latency: float = 0.0) -> dict:
    """Seconds per block at the given rates (work dtype float32), by part."""
    t = {"statistics": fl["statistics_f64"] / f64, "factor": fl["factor_f64"] / factor,
         "sweep": fl["sweep_work"] / f32 + fl["columns"] * column_latency,
         "certificate": fl["certificate_f64"] / f64, "forwards": fl["forwards_work"] / f32}
    t["total"] = sum(t.values())
    return t


K_SQUARE, K_ROWS = 6.0, 3.0  # float64 N x N matrices and n x N arrays of a group (a priori guess)


def memory_model(shape: Shape, tokens: int, act_bytes: int = 4, weight_bytes: int = 4,
                 k_square: float = K_SQUARE, k_rows: float = K_ROWS) -> dict:
    """Bytes the pipeline holds for one block (streamed statistics, one stream; module notes of
    :mod:`ptqtheory.models.pipeline`): independent of the depth.

    Cached block inputs and the outputs being computed (2 m d a), the block's weights (P w), and the
    largest group's state, ``8 (k_square N^2 + k_rows n N)`` bytes: float64 ``N x N`` matrices
    (statistics, damped H, its factor, L^T, the certificate's copies) and ``n x N`` arrays (W, Q, E,
    eta and the bounds' per-entry arrays). :func:`fit_memory` measures ``k_square`` and ``k_rows``.
    """
    cached = 2 * tokens * shape.hidden * act_bytes
    block = shape.block_params * weight_bytes
    state = max(8 * (k_square * N * N + k_rows * n * N) for _, n, N in shape.groups())
    return {"cached_inputs": cached, "block_weights": block, "group_state": state,
            "total": cached + block + state, "k_square": k_square, "k_rows": k_rows}


def fit_memory(shape: Shape, runs: list[dict]) -> dict | None:
    """``k_square``, ``k_rows`` (and a constant) fitted to the resident-set peak of every group.

    Each group's peak (``VmHWM``, reset after each group) is modelled as ``c + 8 k_square N^2 +
    8 k_rows n N``: ``c`` holds the process, the non-block tensors, the block and the cached inputs.
    Least squares over all groups of all depths; ``None`` without per-group peaks.
    """
    import numpy as np

    groups = shape.groups()
    A, y = [], []
    for r in runs:
        for k, g in enumerate(r.get("groups", [])):
            if g.get("hwm") and g.get("hwm_reset"):
                _, n, N = groups[k % len(groups)]
                A.append([1.0, 8.0 * N * N, 8.0 * n * N])
                y.append(float(g["hwm"]))
    if len({tuple(a) for a in A}) < 3:
        return None
    coef, *_ = np.linalg.lstsq(np.array(A), np.array(y), rcond=None)
    resid = np.array(y) - np.array(A) @ coef
    return {"constant": float(coef[0]), "k_square": float(coef[1]), "k_rows": float(coef[2]),
            "points": len(y), "max_abs_residual": float(np.max(np.abs(resid)))}


# --------------------------------------------------------------------------------------------------
# One depth, in its own process


def _status_bytes(field: str) -> int:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes; 0 where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _rss_now() -> int:
    """Current resident set size in bytes (Linux ``/proc``; 0 elsewhere)."""
    return _status_bytes("VmRSS")


def _hwm() -> int:
    """The resident-set high-water mark since the last :func:`_reset_hwm` (bytes; 0 if unknown)."""
    return _status_bytes("VmHWM")


_FOLDED = [0]  # the highest VmHWM seen before a reset


def _reset_hwm() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); whether it worked."""
    _FOLDED[0] = max(_FOLDED[0], _hwm())
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _rss_peak() -> int:
    """The process's peak RSS so far. Resetting VmHWM lowers ``ru_maxrss`` too, so the peaks seen
    before each reset count as well."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _FOLDED[0], _hwm())  # KiB


class TimedBlocks:
    """A block source that times and measures another one (same protocol, same blocks)."""

    def __init__(self, source, device):
        self.source, self.device = source, device
        self.model, self.names = source.model, source.names
        self.blocks: list[dict] = []
        self._t: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self.source)

    def load(self, i, device):
        t0 = time.perf_counter()
        blk = self.source.load(i, device)
        C.sync(device)
        self._t[i] = time.perf_counter()
        self.blocks.append({"block": i, "load_s": self._t[i] - t0})
        return blk

    def release(self, i, block):
        C.sync(self.device)
        t0 = time.perf_counter()
        rec = next(r for r in self.blocks if r["block"] == i)
        rec["work_s"] = t0 - self._t.pop(i)
        self.source.release(i, block)
        rec["release_s"] = time.perf_counter() - t0
        rec["rss_peak_after"] = _rss_peak()
        rec["rss_after"] = _rss_now()
        if str(self.device).startswith("cuda"):
            rec["cuda_peak_after"] = int(torch.cuda.max_memory_allocated(self.device))
        print(f"    block {i}: load {rec['load_s']:.1f} s, work {rec['work_s']:.1f} s, "
              f"release {rec['release_s']:.1f} s, RSS peak {rec['rss_peak_after'] / 2**30:.2f} GiB", flush=True)


def child(args: argparse.Namespace) -> int:
    """Quantize one depth; write the measurements to ``args.result``."""
    from ptqtheory.models.hf import calibration_batches, forward
    from ptqtheory.models.lazy import SafetensorsBlocks
    from ptqtheory.models.pipeline import Config, quantize_model

    device = torch.device(args.device)
    out: dict = {"rss_start": _rss_now()}
    t0 = time.perf_counter()
    src = SafetensorsBlocks(args.folder, dtype=torch.float32, out_dir=args.write)
    out["setup_s"] = time.perf_counter() - t0
    out["rss_after_setup"] = _rss_now()
    vocab = src.model.config.vocab_size
    calib, desc = calibration_batches(None, tokens=0, seq_len=args.seq_len, batch_size=args.batch_size,
                                      random_tokens=args.sequences * args.seq_len, vocab_size=vocab,
                                      seed=0)
    timed = TimedBlocks(src, device)
    groups: list[dict] = []
    reset = _reset_hwm()
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        # The peak of this group alone: VmHWM since the last reset (after the previous group).
        groups.append({"t": time.perf_counter() - t0, "group": msg, "hwm": _hwm(), "hwm_reset": reset,
                       "rss": _rss_now()})
        _reset_hwm()
        print(f"    {groups[-1]['t']:7.1f} s  {msg}  (group peak RSS {groups[-1]['hwm'] / 2**30:.2f} GiB)",
              flush=True)

    res = quantize_model(timed, calib, forward, Config("optq", bits=4), device=device,
                         dtype=torch.float32, stream=True, seed=0, progress=progress)
    C.sync(device)
    wall = time.perf_counter() - t0
    layers = res.layers
    violations = sum(b["violations"] for r in layers for b in r.summary["bounds"].values())
    out |= {
        "depth": len(src), "calibration": desc, "batches": len(calib), "wall_s": wall,
        "pipeline_s": res.seconds, "block_forwards": res.block_forwards,
        "calibration_tokens": res.calibration_tokens, "cached_input_bytes": res.cached_input_bytes,
        "peak_device_bytes": res.peak_device_bytes, "rss_peak": _rss_peak(), "blocks": timed.blocks,
        "layers": len(layers), "identities_hold": all(r.summary.get("identity_holds", False) for r in layers),
        "bound_violations": violations,
        "layer_seconds": {r.layer: r.seconds for r in layers}, "groups": groups,
        "written": sorted(p.name for p in Path(args.write).glob("block-*.safetensors")) if args.write else [],
    }
    Path(args.result).write_text(json.dumps(out, indent=1))
    return 0


def run_depth(folder: Path, depth: int, args: argparse.Namespace, work: Path) -> dict:
    """One depth in a fresh interpreter (its own peak RSS)."""
    result = work / f"result-{depth}.json"
    qdir = work / f"quantized-{depth}"
    shutil.rmtree(qdir, ignore_errors=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--folder", str(folder),
           "--result", str(result), "--device", args.device, "--sequences", str(args.sequences),
           "--seq-len", str(args.seq_len), "--batch-size", str(args.batch_size)]
    if not args.no_write:
        cmd += ["--write", str(qdir)]
    print(f"  depth {depth}: {' '.join(cmd[1:3])} ... (fresh process)", flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    out = json.loads(result.read_text())
    out["process_s"] = time.perf_counter() - t0
    shutil.rmtree(qdir, ignore_errors=True)  # the quantized blocks are checked by count, then dropped
    return out


# --------------------------------------------------------------------------------------------------
# The parent: write, run every depth, model, extrapolate, report


def _gib(b) -> float | None:
    return None if b is None else b / 2**30


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="work device of the pipeline: cpu or cuda")
    ap.add_argument("--quick", action="store_true", help="tiny shapes, seconds (structure test)")
    ap.add_argument("--depths", type=int, nargs="+", default=None, help="blocks per model (default 1 2 4)")
    ap.add_argument("--sequences", type=int, default=None, help="calibration sequences (CPU 4, CUDA 16)")
    ap.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (CPU 256, CUDA 2048)")
    ap.add_argument("--batch-size", type=int, default=4, help="sequences per calibration batch")
    ap.add_argument("--models", type=Path, default=None, help="keep (and reuse) the synthetic models here")
    ap.add_argument("--no-write", action="store_true", help="do not write the quantized blocks")
    ap.add_argument("--gpu-tokens", type=int, default=GPU_TOKENS, help="calibration tokens on paper")
    ap.add_argument("--gpu-f32", type=float, default=GPU_F32, help="assumed GPU float32 flop/s")
    ap.add_argument("--gpu-f64", type=float, default=GPU_F64, help="assumed GPU float64 GEMM flop/s")
    ap.add_argument("--gpu-factor", type=float, default=GPU_FACTOR, help="assumed GPU Cholesky flop/s")
    ap.add_argument("--gpu-column-latency", type=float, default=GPU_COLUMN_LATENCY,
                    help="assumed seconds of launches per sweep column")
    ap.add_argument("--disk", type=float, default=DISK, help="assumed bytes/s reading a block")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reanalyze", type=Path, default=None, metavar="JSON",
                    help="recompute the tables and the extrapolation from the runs in a result file "
                         "(other GPU assumptions without measuring again)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--write", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    if args.reanalyze is not None:
        old = json.loads(args.reanalyze.read_text())
        st = old["settings"]
        args.device, args.quick, args.batch_size = old["device"], st["quick"], st["batch_size"]
        args.sequences, args.seq_len, args.no_write = st["sequences"], st["seq_len"], not st["write_quantized"]
        shape = QUICK if args.quick else BENCH_7B
        measured = {"machine": old["machine"], "command": old["command"], "reanalyzed_by": C.command(),
                    "write_s": old["write_s"], "load_average": old.get("load_average")}
        return _report(args, shape, st["depths"], old["gemm_f32_flops"], old["gemm_f64_flops"], old["runs"],
                       measured)
    gpu = args.device.startswith("cuda")
    shape = QUICK if args.quick else BENCH_7B
    depths = sorted(set(args.depths or ([1, 2] if args.quick else [1, 2, 4])))
    if depths[0] < 1:
        raise SystemExit("--depths must be >= 1")
    args.sequences = args.sequences or (2 if args.quick else 16 if gpu else 4)
    args.seq_len = args.seq_len or (16 if args.quick else 2048 if gpu else 256)
    tokens = args.sequences * args.seq_len
    print(f"llm_scale on {args.device}: {shape.name}, depths {depths}, calibration {args.sequences} x "
          f"{args.seq_len} = {tokens} random tokens\n{SYNTHETIC}", flush=True)

    # The machine's GEMM rates, to check the flop model against the measured times.
    dev = torch.device(args.device)
    size = 256 if args.quick else 4096 if gpu else 2048
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from layer_floor import gemm_rate

    rate32, rate64 = gemm_rate(dev, torch.float32, size), gemm_rate(dev, torch.float64, size)
    print(f"{dev}: float32 GEMM {rate32 / 1e12:.3f} Tflop/s, float64 GEMM {rate64 / 1e12:.3f} Tflop/s",
          flush=True)

    load_start = os.getloadavg()  # other processes on the machine distort every time below
    work = Path(tempfile.mkdtemp(prefix="llm_scale-"))
    try:
        root = args.models or work / "models"
        t0 = time.perf_counter()
        folders = write_synthetic(root, shape, depths, args.seq_len)
        t_write = time.perf_counter() - t0
        print(f"models in {root} ({t_write:.1f} s)", flush=True)
        runs = [run_depth(folders[d], d, args, work) for d in depths]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    measured = {"machine": C.machine(args.device), "command": C.command(), "write_s": t_write,
                "load_average": {"start": load_start, "end": os.getloadavg()}}
    return _report(args, shape, depths, rate32, rate64, runs, measured)


def _peak(run: dict) -> int:
    """A depth's peak RSS: the process's, and every group's and block's (whichever were recorded)."""
    return max([run["rss_peak"], *(g.get("hwm", 0) for g in run.get("groups", [])),
                *(b.get("rss_peak_after", 0) for b in run["blocks"])])


def _report(args: argparse.Namespace, shape: Shape, depths: list[int], rate32: float, rate64: float,
            runs: list[dict], measured: dict) -> int:
    """Tables, memory fit and extrapolation from the measured runs; writes the JSON file."""
    gpu = args.device.startswith("cuda")
    tokens = args.sequences * args.seq_len
    rows = []
    for r in runs:
        b = r["blocks"]
        passes = r["block_forwards"] / (r["depth"] * r["batches"])
        equiv = full_passes(shape, passes)
        fl = block_flops(shape, r["calibration_tokens"], args.seq_len, equiv)
        pred = predicted_seconds(fl, rate32, rate64, rate64)
        per_block = sum(x["load_s"] + x["work_s"] + x["release_s"] for x in b) / len(b)
        rows.append({
            "depth": r["depth"], "total_s": r["wall_s"], "per_block_s": per_block,
            "work_s": sum(x["work_s"] for x in b) / len(b), "load_s": sum(x["load_s"] for x in b) / len(b),
            "release_s": sum(x["release_s"] for x in b) / len(b), "rss_peak_gib": _gib(_peak(r)),
            "rss_setup_gib": _gib(r["rss_after_setup"]), "cuda_peak_gib": _gib(r["peak_device_bytes"]),
            "passes_per_block": passes, "full_passes": equiv, "flops_per_block": fl["total"],
            "flops": fl, "predicted": pred, "predicted_s": pred["total"],
            "model_over_measured": pred["total"] / per_block,
            "identities_hold": r["identities_hold"], "bound_violations": r["bound_violations"],
        })
    print()
    print(C.table(rows, [
        ("depth", "blocks", "d"), ("total_s", "total s", ".1f"), ("per_block_s", "s/block", ".1f"),
        ("load_s", "load s", ".2f"), ("work_s", "work s", ".1f"), ("release_s", "release s", ".2f"),
        ("rss_setup_gib", "RSS setup GiB", ".2f"), ("rss_peak_gib", "RSS peak GiB", ".2f"),
        ("cuda_peak_gib", "CUDA peak GiB", ".2f"), ("passes_per_block", "passes", ".1f"),
        ("full_passes", "full-pass equiv.", ".2f"), ("flops_per_block", "flop/block", ".3g"),
        ("predicted_s", "model s", ".1f"), ("identities_hold", "identities", ""),
        ("bound_violations", "violations", "d")]))
    first, last = rows[0], rows[-1]
    growth = last["rss_peak_gib"] - first["rss_peak_gib"]
    block_gib = shape.block_params * 4 / 2**30
    print(f"\npeak RSS {first['depth']} -> {last['depth']} blocks: {growth:+.3f} GiB "
          f"({growth / block_gib:+.1%} of one block's float32 weights, {block_gib:.2f} GiB)")
    fit = fit_memory(shape, runs)
    ks = {"k_square": fit["k_square"], "k_rows": fit["k_rows"]} if fit and not args.quick else {}
    if fit:
        print(f"memory fit over {fit['points']} groups: group peak = {fit['constant'] / 2**30:.2f} GiB + 8 B x "
              f"({fit['k_square']:.2f} N^2 + {fit['k_rows']:.2f} n N), max residual "
              f"{fit['max_abs_residual'] / 2**30:.2f} GiB" + (" (quick: not used)" if args.quick else ""))
    mem = memory_model(shape, tokens, **ks)
    above = (_peak(runs[-1]) - runs[-1]["rss_after_setup"]) / 2**30
    print(f"memory model per block: {mem['total'] / 2**30:.2f} GiB (cached inputs "
          f"{mem['cached_inputs'] / 2**30:.2f}, block {mem['block_weights'] / 2**30:.2f}, largest group "
          f"{mem['group_state'] / 2**30:.2f}); measured peak above the setup ({last['depth']} blocks): "
          f"{above:.2f} GiB")
    print(f"flop model at this machine's GEMM rates / measured time per block: "
          f"{last['model_over_measured']:.2f}")

    # On paper: the same flop model at GPU rates and GPTQ's calibration size.
    passes = rows[-1]["passes_per_block"]
    paper = []
    for s in PAPER:
        fl = block_flops(s, args.gpu_tokens, 2048, full_passes(s, passes))
        t = predicted_seconds(fl, args.gpu_f32, args.gpu_f64, args.gpu_factor, args.gpu_column_latency)
        io = 2 * s.block_params / args.disk
        m = memory_model(s, args.gpu_tokens, **ks)
        paper.append({"model": s.name, "blocks": s.blocks, "hidden": s.hidden, "intermediate": s.intermediate,
                      "heads": s.heads, "kv_heads": s.kv_heads, "flops_per_block": fl["total"],
                      "flops": fl, "seconds": t, "io_s": io, "per_block_s": t["total"] + io,
                      "total_min": s.blocks * (t["total"] + io) / 60, "memory": m,
                      "memory_gib": m["total"] / 2**30, "fwd": t["forwards"], "stat": t["statistics"],
                      "fac": t["factor"], "sw": t["sweep"], "cert": t["certificate"]})
    print(f"\n{EXTRAPOLATION}\nassumed: one H100 SXM / H200, float32 {args.gpu_f32 / 1e12:.0f} Tflop/s "
          f"(TF32 off), float64 GEMM {args.gpu_f64 / 1e12:.0f} Tflop/s, float64 Cholesky "
          f"{args.gpu_factor / 1e12:.0f} Tflop/s, {args.gpu_column_latency * 1e6:.0f} us launches per sweep "
          f"column, disk {args.disk / 1e9:.1f} GB/s (bfloat16 checkpoint), {args.gpu_tokens} calibration "
          f"tokens, {passes:.0f} block passes per block (as counted above)")
    print(C.table(paper, [
        ("model", "model (on paper)", "s"), ("blocks", "blocks", "d"), ("flops_per_block", "flop/block", ".3g"),
        ("fwd", "forwards s", ".1f"), ("stat", "stats s", ".2f"), ("fac", "factor s", ".2f"),
        ("sw", "sweep s", ".2f"), ("cert", "cert s", ".2f"), ("io_s", "read s", ".2f"),
        ("per_block_s", "s/block", ".1f"), ("total_min", "total min", ".1f"),
        ("memory_gib", "memory GiB", ".1f")]))

    payload = {"benchmark": "llm_scale", "synthetic": True, "label": SYNTHETIC, **measured,
               "device": args.device,
               "settings": {"method": "optq", "bits": 4, "grid": "per channel, asymmetric min-max",
                            "percdamp": 0.01, "dtype": "float32", "stream": True, "depths": depths,
                            "sequences": args.sequences, "seq_len": args.seq_len, "tokens": tokens,
                            "batch_size": args.batch_size, "write_quantized": not args.no_write,
                            "quick": args.quick},
               "shape": asdict(shape) | {"block_params": shape.block_params, "groups": shape.groups()},
               "gemm_f32_flops": rate32, "gemm_f64_flops": rate64,
               "rows": rows, "runs": runs, "peak_rss_growth_gib": growth, "memory_model": mem,
               "memory_fit": fit,
               "extrapolation": {"label": EXTRAPOLATION,
                                 "assumptions": {"gpu": "one H100 SXM / H200", "f32_flops": args.gpu_f32,
                                                 "f64_flops": args.gpu_f64, "factor_flops": args.gpu_factor,
                                                 "column_latency_s": args.gpu_column_latency,
                                                 "disk_bytes_per_s": args.disk, "tokens": args.gpu_tokens,
                                                 "seq_len": 2048, "passes_per_block": passes,
                                                 "memory_constants": "fitted" if ks else "a priori"},
                                 "rows": paper}}
    name = "llm_scale" + ("_gpu" if gpu else "") + ("_quick" if args.quick else "")
    print(f"\nwritten: {C.write(name, payload, args.out)}")
    ok = all(r["identities_hold"] and r["bound_violations"] == 0 for r in rows)
    ok = ok and all(len(r["written"]) == (0 if args.no_write else r["depth"]) for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
