"""``ptqtheory quantize MODEL_DIR``: a Hugging Face causal LM, block by block, with certificates.

The model (safetensors only, :mod:`ptqtheory.models.hf`) is quantized in place by the block loop of
:func:`ptqtheory.models.pipeline.quantize_model` on the torch backend (``--device``, working precision
``--dtype``), every row certified (identity I2-I6, I1, and every a-priori bound whose hypotheses held;
on CUDA the statistics are streamed and the per-sample bounds listed as skipped).

Written to ``--out``: ``model/`` (the quantized model, ``save_pretrained`` in safetensors, plus the
tokenizer when there is one), ``codes.safetensors`` (per layer the integer grid codes and the step and
zero point per row or per group: ``weight = delta * (codes - zero)``; not for LDLQ with incoherence
processing, whose weights :math:`U^TQ'V` lie on no grid), ``report.json`` and ``report.csv`` (the
per-layer records of ``ptqtheory validate``). Every file is written atomically. The model is loaded
and saved in float32, so the saved weights are the certified grid values rounded to float32.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import report as rep
from ..calibration import Damping
from ..grids import Grid
from . import hf
from .pipeline import METHODS, Config, ModelBlocks, quantize_model

__all__ = ["QuantizeError", "run_quantize"]


class QuantizeError(ValueError):
    """A usage error found before any work (bad folder, no GPU, no tokenizer, bad option)."""


def resolve_device(name: str) -> torch.device:
    """``torch.device(name)``; a clear :class:`QuantizeError` when CUDA was asked for and is absent."""
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise QuantizeError(f"--device {name!r} is not a device; use cpu or cuda") from exc
    if dev.type not in ("cpu", "cuda"):
        raise QuantizeError(f"--device {name!r}: use cpu or cuda")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise QuantizeError(f"--device {name}: no CUDA GPU is available on this machine "
                                f"(torch {torch.__version__}, {built}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise QuantizeError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _save_model(qmodel, tokenizer, dest: Path) -> None:
    """``save_pretrained`` (safetensors) into a temporary folder, then renamed into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        kwargs = {}
        if "safe_serialization" in inspect.signature(qmodel.save_pretrained).parameters:
            kwargs["safe_serialization"] = True  # transformers 4.x; 5.x writes safetensors only
        qmodel.save_pretrained(tmp, **kwargs)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        pickled = [p.name for pattern in hf.PICKLED for p in tmp.glob(pattern)]
        if not any(tmp.glob("*.safetensors")) or pickled:
            raise RuntimeError(f"save_pretrained did not write safetensors only ({sorted(os.listdir(tmp))})")
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
            os.replace(dest, old)
            shutil.rmtree(old)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compress(a: np.ndarray, group_size: int | None) -> np.ndarray:
    """A per-entry grid parameter ``(n, N)`` as one value per row ``(n, 1)`` or per group."""
    return np.ascontiguousarray(a[:, ::group_size] if group_size else a[:, :1])


def run_quantize(model_dir: str | Path, method: str, bits: int, group_size: int | None = None,
                 device: str = "cpu", dtype: str | None = None, percdamp: float = 0.01,
                 tokens: int = 8192, text: str | None = None, out: str | Path = "ptqtheory-quantized",
                 p: float = 1e-6, seed: int = 0, random_tokens: int | None = None,
                 seq_len: int = 512, batch_size: int = 4, stream: bool | None = None) -> int:
    """Quantize, certify, save; print the table; return the exit code (1 = a violation) or raise
    :class:`QuantizeError`. ``dtype``: the torch backend's working precision (default float64 on CPU,
    float32 on CUDA); ``stream``: stream the statistics (default on CUDA)."""
    t_start = time.perf_counter()
    if method not in METHODS:
        raise QuantizeError(f"--method must be one of {', '.join(METHODS)}; got {method!r}")
    if method == "boa":
        raise QuantizeError("--method boa: ptqtheory quantize exports each layer's grid codes from its run, "
                            "and BoA's q/k/v runs are per head (not exported yet); run BoA with `ptqtheory "
                            "validate --settings boa-4b` (--model minilm or smollm2), or use --method optq / "
                            "magr-optq here")
    try:
        cfg = Config(method, bits, group_size)
        # The grid itself: refuses bit widths float64 cannot round exactly, before any work.
        Grid.minmax(np.zeros((1, 1)), bits=bits)
    except (ValueError, TypeError) as exc:
        raise QuantizeError(f"--bits {bits} / --group-size {group_size}: {exc}") from exc
    if not 0 < p < 1:
        raise QuantizeError(f"--p must be in (0, 1); got {p}")
    if not (np.isfinite(percdamp) and percdamp >= 0):
        raise QuantizeError(f"--percdamp must be a finite number >= 0 (GPTQ uses 0.01); got {percdamp}")
    if tokens < 1 or seq_len < 1 or batch_size < 1:
        raise QuantizeError("--tokens, --seq-len and --batch-size must be >= 1")
    dev = resolve_device(device)
    dtype = dtype or ("float32" if dev.type == "cuda" else "float64")
    if dtype not in ("float32", "float64"):
        raise QuantizeError(f"--dtype must be float32 or float64; got {dtype!r}")
    work_dtype = getattr(torch, dtype)
    with rep.reraise_as(QuantizeError, rep.OutputPathError, hf.ModelFolderError):
        outdir = rep.check_out_dir(out)
        folder = hf.check_folder(model_dir)
    tokenizer = None if random_tokens is not None else hf.load_tokenizer(folder)
    if random_tokens is None and tokenizer is None:
        raise QuantizeError(
            f"{folder} has no tokenizer (none of {', '.join(hf.TOKENIZER_FILES)}), so the calibration "
            "text cannot be tokenized; pass --random-tokens N to calibrate on N seeded random token "
            "ids (synthetic: for test models, not for real quantization)"
        )
    if random_tokens is not None and random_tokens < 1:
        raise QuantizeError("--random-tokens must be >= 1")

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", file=sys.stderr, flush=True)

    try:
        model = hf.load_causal_lm(folder, torch.float32).to(dev)
    except Exception as exc:  # a corrupted or truncated file, a config transformers cannot build
        raise QuantizeError(f"{folder}: the model could not be loaded ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); check the folder's "
                            "config.json and safetensors files") from exc
    with rep.reraise_as(QuantizeError, hf.ModelFolderError):
        blocks = hf.decoder_blocks(model)
    # a text file too short or unreadable, a tokenizer mismatch
    with rep.reraise_as(QuantizeError, ValueError, OSError):
        batches, cal = hf.calibration_batches(
            tokenizer, tokens=tokens, seq_len=seq_len, batch_size=batch_size, text=text,
            random_tokens=random_tokens, vocab_size=model.config.vocab_size, seed=seed, device=dev)
    if not batches:
        raise QuantizeError("the calibration text gave no complete sequence; lower --seq-len or "
                            "give more --tokens")
    streaming = dev.type == "cuda" if stream is None else bool(stream)
    arch = type(model).__name__
    log(f"quantize: {folder} ({arch}), {len(blocks)} decoder blocks, {cfg.name}, torch on {dev} in "
        f"{dtype}{', streamed statistics' if streaming else ''}; calibration {cal['tokens']} tokens "
        f"({cal['source']})")

    group_of: dict[str, tuple[str, ...]] = {}
    codes: dict[str, np.ndarray] = {}
    notes: list[str] = []
    done = [0]

    def on_layer(name, run, rows, group):
        group_of[name] = tuple(group)
        if run.transform is not None:
            if not notes:
                notes.append("ldlq-incoherence: the weights U^T Q' V lie on no grid; no codes exported")
            return
        k_all = np.atleast_2d(run.codes)
        delta, zero, _, _ = run.grid.expand(*k_all.shape)  # per entry, original column order
        store = np.uint8 if bits <= 8 else np.int32
        codes[f"{name}.codes"] = np.ascontiguousarray(k_all[rows].astype(store))
        codes[f"{name}.delta"] = _compress(delta[rows], group_size)
        codes[f"{name}.zero"] = _compress(zero[rows], group_size)

    def progress(msg: str) -> None:
        done[0] += 1
        log(f"group {done[0]}: {msg}")

    t0 = time.perf_counter()
    res = quantize_model(ModelBlocks(model, blocks), batches, hf.forward, cfg, lam=Damping.percdamp(percdamp),
                         p=p, seed=seed, progress=progress, device=dev, dtype=work_dtype, stream=streaming,
                         on_layer=on_layer)
    config: dict[str, Any] = {
        "config": cfg.name, "method": cfg.method, "bits": cfg.bits, "group_size": cfg.group_size,
        "seconds": time.perf_counter() - t0, "block_forwards": res.block_forwards,
        "layers": [r.to_dict() for r in res.layers]}
    summary = rep.summarize([config], p)
    skipped = sorted({lab for r in res.layers for lab in r.summary.get("skipped_bounds", [])})
    _save_model(model, tokenizer, outdir / "model")
    if codes:
        from safetensors.numpy import save_file

        rep.write_bytes(outdir / "codes.safetensors",
                            lambda tmp: save_file(codes, tmp, metadata={"format": "ptqtheory-codes",
                                                                        "bits": str(bits)}))
    elif (outdir / "codes.safetensors").exists():  # a previous run's codes would not match this model
        (outdir / "codes.safetensors").unlink()
    report = {
        "model": str(folder), "architecture": arch,
        "synthetic_calibration": bool(cal["synthetic"]), "calibration": cal,
        "device": str(dev), "precision": dtype, "streamed_statistics": streaming, "tf32": False,
        "damping": f"percdamp={percdamp} (GPTQ)", "p": p, "seed": seed,
        "outputs": {"model": str(outdir / "model"),
                    "codes": str(outdir / "codes.safetensors") if codes else None},
        "notes": notes, "skipped_bounds": skipped,
        "seconds": time.perf_counter() - t_start, "summary": summary, "configs": [config],
    }
    rep.write_text(outdir / "report.json", json.dumps(report, indent=1, default=float))
    rep.write_text(outdir / "report.csv", rep.csv_text([config]))
    groups = rep.group_rows(config["layers"], group_of, [n for n, _ in blocks])
    print(rep.groups_table(groups, summary, skipped))
    print(f"quantized model: {outdir / 'model'}; report: {outdir / 'report.json'} and "
          f"{outdir / 'report.csv'} ({report['seconds']:.0f} s in all)")
    if summary["violations"]:
        print("VIOLATIONS:")
        for line in rep.failures([config]):
            print(f"  {line}")
        return 1
    return 0
