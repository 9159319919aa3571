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

Backends. By default every layer runs the float64 numpy reference on host copies of its weights and
inputs. With ``device=...`` the torch backend runs on that device in the working precision
``dtype``: either on the inputs captured as tensors (every bound evaluated, as for the reference), or,
with ``stream=True`` (the default on CUDA), on statistics accumulated batch by batch so that a layer's
inputs are never held at once: the run reads a :class:`~ptqtheory.torch_backend.TorchAccumulator`
and the certificate a second pass over the batches (one batch at a time), so the identity and the
empirical errors are measured on the data; the per-sample bounds (B5, B10.sup) are then skipped and
listed (``summary["skipped_bounds"]``). GPFQ needs the data and never streams.
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
from .capture import capture_inputs, layer_inputs

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
    """The ``nn.Linear`` layers of ``block`` grouped by the input tensor they read, in call order.

    Inputs are told apart by storage address, shape and strides; every input is kept alive until
    the pass ends, so that a freed activation's address cannot be reused by a later, different input
    (which would merge, e.g., OPT's ``out_proj`` and ``fc1``).
    """
    seen: dict[str, tuple] = {}
    keys: dict[tuple, list[str]] = {}
    order: list[tuple] = []
    alive: list[torch.Tensor] = []
    handles = []
    for name, mod in block.named_modules():
        if isinstance(mod, torch.nn.Linear):
            full = f"{prefix}.{name}" if prefix else name

            def hook(_m, args, full=full):
                if full in seen:
                    return
                x = args[0]
                alive.append(x)
                key = (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype)
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
        alive.clear()
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
        out["identity_rows_resolved"] = int(np.count_nonzero(keep))  # the gap is read on these rows
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
    out["skipped_bounds"] = list(getattr(c, "skipped_bounds", ()))
    return out


def _run_torch(cfg: Config, W: torch.Tensor, X, Xt, lam, seed: int):
    """The torch backend's run for ``cfg``. ``X``/``Xt`` are tensors, or ``X`` is a
    :class:`~ptqtheory.torch_backend.TorchAccumulator` (``Xt=None``): the quantized-model inputs'
    statistics for OPTQ/LDLQ/RTN, the mismatch statistics for Qronos."""
    from .. import torch_backend as tb

    grid = tb.minmax_grid(W, bits=cfg.bits, sym=cfg.sym, group_size=cfg.group_size)
    data = X if cfg.method in USES_FLOAT_INPUTS else Xt
    if cfg.method == "rtn":
        return tb.rtn(W, grid=grid)
    if cfg.method == "optq":
        return tb.optq(W, data, lam=lam, grid=grid)
    if cfg.method == "optq-stochastic":
        return tb.optq(W, data, lam=lam, grid=grid, rounding="stochastic", seed=seed)
    if cfg.method == "ldlq-incoherence":
        return tb.ldlq(W, data, lam=lam, grid=grid, incoherence="kron", seed=seed)
    if cfg.method == "gpfq":
        return tb.gpfq(W, X, Xt, grid=grid)
    variant = "ls" if cfg.method == "qronos-ls" else "paper"
    return tb.qronos(W, X, Xt, lam=lam, grid=grid, variant=variant)


def _torch_group(cfg: Config, model, qmodel, first: str, calibration, forward, float_inputs,
                 device, stream: bool):
    """``(run input X, run input Xt, certify(run) -> Certificate)`` of one group on ``device``."""
    from ..torch_backend import TorchAccumulator

    uses_x = cfg.method in USES_FLOAT_INPUTS
    qmod = dict(qmodel.named_modules())[first]
    fmod = dict(model.named_modules())[first] if uses_x else None
    if stream and cfg.method != "gpfq":
        def batches():  # one batch at a time: the layer's inputs are never held at once
            for batch in calibration:
                (xt,) = layer_inputs(qmodel, first, qmod, [batch], forward)
                if uses_x:
                    (x,) = layer_inputs(model, first, fmod, [batch], forward)
                    yield x, xt
                else:
                    yield xt

        acc = TorchAccumulator(qmod.in_features, device, with_mismatch=uses_x)
        for item in batches():
            if uses_x:
                acc.update(*item)
            else:
                acc.update(item)
        # Qronos reads the mismatch statistics as X; OPTQ, LDLQ and RTN read Xt's as their data.
        X, Xt = (acc, None) if uses_x else (None, acc)
        return X, Xt, lambda run, p: certify(run, batches(), p=p)
    # Inputs captured whole (float64 host copies, exact for float32 models), then on the device.
    Xt = capture_inputs(qmodel, {first: qmod}, calibration, forward, stop_after=first)[first]
    Xt = torch.from_numpy(Xt).to(device)
    X = torch.from_numpy(float_inputs[first]).to(device) if uses_x else None

    def cert(run, p):  # certified on the float64 inputs, also for float32 runs
        return certify(run, X, Xt, p=p) if uses_x else certify(run, Xt, p=p)

    return X, Xt, cert


def _as(a, dtype):
    """A data tensor in the working dtype (accumulators and ``None`` pass through)."""
    return a.to(dtype) if isinstance(a, torch.Tensor) else a


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
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    stream: bool | None = None,
    on_layer: Callable | None = None,
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
    device : str or torch.device, optional
        ``None`` (default): the float64 numpy reference. Otherwise the torch backend on this device
        (``"cpu"``, ``"cuda"``); the model's forward passes run wherever the model is.
    dtype : torch.dtype
        Working precision of the torch backend (``torch.float64`` or ``torch.float32``).
    stream : bool, optional
        Torch backend only: accumulate each layer's statistics batch by batch instead of capturing
        its inputs (default: on CUDA). See the module notes.
    on_layer : callable, optional
        ``on_layer(name, run, rows, group)`` after each layer: its run (rows ``rows`` of the run
        belong to the layer; several layers of a group share one run) and the layer names of its group.
    """
    lam = Damping.percdamp(0.01) if lam is None else lam
    if device is not None:
        device = torch.empty(0, device=device).device
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
        stream = device.type == "cuda" if stream is None else bool(stream)
    elif stream:
        raise ValueError("stream=True needs the torch backend: pass device='cpu' or 'cuda'")
    streaming = bool(stream)
    rtol = 1e-10 if device is None or dtype == torch.float64 else 1e-4
    qmodel = copy.deepcopy(model)
    qmods = dict(qmodel.named_modules())
    groups_by_block = [discover_groups(qmodel, blk_q, name, forward, calibration[0])
                       for name, blk_q in [(n, qmods[n]) for n, _ in blocks]]
    needs_float = cfg.method in USES_FLOAT_INPUTS and not (streaming and cfg.method != "gpfq")
    if float_inputs is None and needs_float:
        fmods = dict(model.named_modules())
        firsts = {g[0]: fmods[g[0]] for groups in groups_by_block for g in groups}
        float_inputs = capture_inputs(model, firsts, calibration, forward)
    results: list[LayerResult] = []
    for groups in groups_by_block:
        for group in groups:
            t0 = time.perf_counter()
            if device is None:
                Xt = capture_inputs(qmodel, {group[0]: qmods[group[0]]}, calibration, forward,
                                    stop_after=group[0])[group[0]]
                X = float_inputs[group[0]] if cfg.method in USES_FLOAT_INPUTS else None
                weights = [qmods[name].weight.detach().to(torch.float64).cpu().numpy() for name in group]
            else:
                X, Xt, cert_fn = _torch_group(cfg, model, qmodel, group[0], calibration, forward,
                                              float_inputs, device, streaming)
                weights = [qmods[name].weight.detach().to(device=device, dtype=dtype) for name in group]
            # Incoherence mixes rows: quantize each layer on its own there, else stack the rows.
            parts = [[i] for i in range(len(group))] if cfg.method == "ldlq-incoherence" else \
                [list(range(len(group)))]
            for part in parts:
                if device is None:
                    W = np.concatenate([weights[i] for i in part], axis=0)
                    run, Xc, Xtc = _run_method(cfg, W, X, Xt, lam, seed)
                    cert = certify(run, Xc, Xtc, p=p)
                    Q = torch.from_numpy(np.atleast_2d(run.Q))
                else:
                    W = torch.cat([weights[i] for i in part], dim=0)
                    run = _run_torch(cfg, W, _as(X, dtype), _as(Xt, dtype), lam, seed)
                    cert = cert_fn(run, p)
                    Q = torch.atleast_2d(run.Q)
                start = 0
                for i in part:
                    name = group[i]
                    n = weights[i].shape[0]
                    mod = qmods[name]
                    with torch.no_grad():
                        mod.weight.copy_(Q[start:start + n].to(device=mod.weight.device,
                                                               dtype=mod.weight.dtype))
                    summary = summarize(cert, slice(start, start + n), rtol=rtol)
                    if on_layer is not None:
                        on_layer(name, run, slice(start, start + n), list(group))
                    results.append(LayerResult(
                        layer=name, shape=tuple(weights[i].shape), config=cfg.name, method=cfg.method,
                        bits=cfg.bits, group_size=cfg.group_size, lam=float(run.lam),
                        seconds=(time.perf_counter() - t0) / len(group), summary=summary))
                    start += n
            if progress is not None:
                progress(f"{cfg.name}: {', '.join(group)}")
    return qmodel, results

