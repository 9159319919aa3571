r"""Sequential quantization of a model, block by block, with a certificate for every row.

Inputs to each block come from the already quantized model, so later layers see the quantized
inputs :math:`\tilde X` while the float model provides :math:`X`. Inside a block, the layers that
read the same input tensor (for instance query, key and value) form a group and are quantized
together, with their rows stacked (one factorization of :math:`H`), and the groups run in the order
the forward pass reaches them.

Which data each method sees (THEORY.md notation):

* RTN (A1): none.
* OPTQ / stochastic OPTQ (A2', A2s) and LDLQ (A3, A3i): :math:`\tilde X` (GPTQ's convention: the
  inputs of the partly quantized model).
* Qronos (A4, A4') and GPFQ (A5): both :math:`X` and :math:`\tilde X`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import algorithms as alg
from ..calibration import Damping
from ..certificates import Certificate, certify
from ..grids import Grid
from .capture import capture_inputs

__all__ = ["METHODS", "Config", "LayerResult", "discover_groups", "quantize_sequential", "summarize"]

METHODS = ("rtn", "optq", "optq-stochastic", "qronos", "qronos-ls", "ldlq-incoherence", "gpfq")
USES_FLOAT_INPUTS = ("qronos", "qronos-ls", "gpfq")


@dataclass(frozen=True)
class Config:
    """One quantization setting: method, bit width, optional group size (min-max grid)."""

    method: str
    bits: int
    group_size: int | None = None
    sym: bool = False

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")

    @property
    def name(self) -> str:
        tail = f"-g{self.group_size}" if self.group_size else ""
        return f"{self.method}-{self.bits}b{tail}"


@dataclass
class LayerResult:
    """Per-layer outcome: shape, setting, time, and the per-row certificate summarized."""

    layer: str
    shape: tuple[int, int]
    config: str
    method: str
    bits: int
    group_size: int | None
    lam: float
    seconds: float
    summary: dict = field(default_factory=dict)


def discover_groups(model: torch.nn.Module, block: torch.nn.Module, prefix: str,
                    forward: Callable, batch: dict) -> list[list[str]]:
    """The ``nn.Linear`` layers of ``block`` grouped by the input tensor they read, in call order."""
    seen: dict[str, int] = {}
    keys: dict[int, list[str]] = {}
    order: list[int] = []
    handles = []
    for name, mod in block.named_modules():
        if isinstance(mod, torch.nn.Linear):
            full = f"{prefix}.{name}" if prefix else name

            def hook(_m, args, full=full):
                if full in seen:
                    return
                key = args[0].data_ptr()
                seen[full] = key
                if key not in keys:
                    keys[key] = []
                    order.append(key)
                keys[key].append(full)
            handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            forward(model, batch)
    finally:
        for h in handles:
            h.remove()
    return [keys[k] for k in order]


def _run_method(cfg: Config, W: np.ndarray, X, Xt, lam, seed: int):
    """The run and the data to certify it with: ``(run, X_cert, Xt_cert)``."""
    grid = Grid.minmax(W, bits=cfg.bits, sym=cfg.sym, group_size=cfg.group_size)
    if cfg.method == "rtn":  # RTN reads no data; its comparison bounds are checked on Xt
        return alg.rtn(W, grid=grid), Xt, None
    if cfg.method == "optq":
        return alg.optq(W, Xt, lam=lam, grid=grid), Xt, None
    if cfg.method == "optq-stochastic":
        return alg.optq(W, Xt, lam=lam, grid=grid, rounding="stochastic", seed=seed), Xt, None
    if cfg.method == "ldlq-incoherence":
        return alg.ldlq(W, Xt, lam=lam, grid=grid, incoherence="kron", seed=seed), Xt, None
    if cfg.method == "gpfq":
        return alg.gpfq(W, X, Xt, grid=grid), X, Xt
    variant = "ls" if cfg.method == "qronos-ls" else "paper"
    return alg.qronos(W, X, Xt, lam=lam, grid=grid, variant=variant), X, Xt


def summarize(c: Certificate, rows: slice, rtol: float = 1e-10) -> dict:
    """One layer's share of a (possibly stacked) certificate: identity and every bound."""
    out: dict = {"identity": c.identity, "rows": rows.stop - rows.start}
    if c.identity is not None:
        ok = c.identity_holds(rtol)[rows]
        keep = c.resolved[rows]
        gaps = np.asarray(c.identity_gap, float)[rows]
        out["identity_holds"] = bool(ok.all())
        out["identity_max_gap"] = float(np.max(gaps[keep])) if keep.any() else 0.0
        out["pivots_hold"] = c.pivots is None or c.pivots.holds(rtol)
    out["clipped_rows"] = int(np.count_nonzero(np.asarray(c.n_clipped)[rows]))
    out["err_l2_mean"] = float(np.mean(c.err_l2[rows]))
    out["err_inf_max"] = float(np.max(c.err_inf[rows]))
    bounds = {}
    for b in c.bounds:
        applies = b.applies[rows]
        holds = b.holds[rows]
        ratio = b.ratio[rows]
        bounds[b.label] = {
            "kind": b.kind, "rows_applied": int(applies.sum()),
            "violations": int(np.count_nonzero(applies & ~holds)),
            "max_ratio": float(np.max(ratio[applies])) if applies.any() else None,
        }
    out["bounds"] = bounds
    return out


def quantize_sequential(
    model: torch.nn.Module,
    blocks: list[tuple[str, torch.nn.Module]],
    calibration: list[dict],
    forward: Callable,
    cfg: Config,
    lam=None,
    p: float = 1e-6,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    float_inputs: dict[str, np.ndarray] | None = None,
) -> tuple[torch.nn.Module, list[LayerResult]]:
    """Quantize every ``nn.Linear`` of ``blocks`` with ``cfg``; return the quantized copy and results.

    Parameters
    ----------
    model : nn.Module
        The float model (left unchanged).
    blocks : list of (name, module)
        The model's blocks in forward order (e.g. BERT's ``encoder.layer.i``).
    calibration : list of dict
        Calibration batches.
    forward : callable
        ``forward(model, batch)`` runs the model.
    cfg : Config
    lam : float or Damping, optional
        Default GPTQ's ``Damping.percdamp(0.01)``; the absolute value used is in each result.
    p : float
        Failure probability for the probabilistic bounds.
    float_inputs : dict, optional
        Inputs of every layer in the float model (computed here if not given; reuse across runs).
    """
    lam = Damping.percdamp(0.01) if lam is None else lam
    qmodel = copy.deepcopy(model)
    qmods = dict(qmodel.named_modules())
    groups_by_block = [discover_groups(qmodel, blk_q, name, forward, calibration[0])
                       for name, blk_q in [(n, qmods[n]) for n, _ in blocks]]
    if float_inputs is None and cfg.method in USES_FLOAT_INPUTS:
        fmods = dict(model.named_modules())
        firsts = {g[0]: fmods[g[0]] for groups in groups_by_block for g in groups}
        float_inputs = capture_inputs(model, firsts, calibration, forward)
    results: list[LayerResult] = []
    for groups in groups_by_block:
        for group in groups:
            t0 = time.perf_counter()
            Xt = capture_inputs(qmodel, {group[0]: qmods[group[0]]}, calibration, forward,
                                stop_after=group[0])[group[0]]
            X = float_inputs[group[0]] if cfg.method in USES_FLOAT_INPUTS else None
            weights = [qmods[name].weight.detach().to(torch.float64).cpu().numpy() for name in group]
            # Incoherence mixes rows: quantize each layer on its own there, else stack the rows.
            parts = [[i] for i in range(len(group))] if cfg.method == "ldlq-incoherence" else \
                [list(range(len(group)))]
            for part in parts:
                W = np.concatenate([weights[i] for i in part], axis=0)
                run, Xc, Xtc = _run_method(cfg, W, X, Xt, lam, seed)
                cert = certify(run, Xc, Xtc, p=p)
                Q = np.atleast_2d(run.Q)
                start = 0
                for i in part:
                    name = group[i]
                    n = weights[i].shape[0]
                    mod = qmods[name]
                    with torch.no_grad():
                        mod.weight.copy_(torch.from_numpy(Q[start:start + n]).to(mod.weight.dtype))
                    summary = summarize(cert, slice(start, start + n))
                    results.append(LayerResult(
                        layer=name, shape=tuple(weights[i].shape), config=cfg.name, method=cfg.method,
                        bits=cfg.bits, group_size=cfg.group_size, lam=float(run.lam),
                        seconds=(time.perf_counter() - t0) / len(group), summary=summary))
                    start += n
            if progress is not None:
                progress(f"{cfg.name}: {', '.join(group)}")
    return qmodel, results

