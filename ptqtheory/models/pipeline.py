r"""Layer-wise PTQ of a whole model, one block at a time, with a certificate for every row.

The block loop of GPTQ's reference implementation, for every algorithm here and with certificates:

1. The model's prefix (embeddings, rotary position embeddings, masks: whatever it computes before its
   first block) runs **once** per calibration batch; a pre-hook on block 0 keeps the block's inputs
   (hidden states and keyword arguments) and stops the pass (:func:`capture_block_inputs`).
2. For each block ``b`` in forward order: the block is loaded onto the work device (:class:`BlockSource`), its
   ``nn.Linear`` layers are grouped by the input tensor they read (q/k/v; o; gate/up; down; one call of the
   block, :func:`discover_groups`), and the groups are quantized **in call order**, each on inputs computed by
   running the block on its cached inputs up to the group's first layer, so a later group sees the block's
   already quantized layers. Then the quantized block's outputs become the next block's cached inputs.
3. Qronos and GPFQ read two streams, the float model's inputs :math:`X` and the quantized model's
   :math:`\tilde X`, each carried through its own version of the current block: the float one is a
   copy of that block alone, made when it is loaded and dropped when it is done.

Which data each method reads (THEORY.md notation): RTN (A1) none (its comparison bounds are
checked on :math:`\tilde X`); OPTQ, stochastic OPTQ (A2', A2s) and LDLQ (A3, A3i)
:math:`\tilde X` (GPTQ's convention); Qronos (A4, A4') and GPFQ (A5) both. BoA (method ``boa``,
A7) quantizes a BERT- or Llama-style block's query/key/value group with :func:`ptqtheory.boa_attention`
on :math:`\tilde X` (its attention probabilities per calibration sequence, padding dropped; grouped-query
heads, rotary embeddings from the block's ``position_embeddings``, causal masks), certified by I7 per
head, in float64 numpy on either backend, and the block's other groups with OPTQ (docs/methods.md, "BoA").

Activation quantization (W4A8, ``Config.act_bits``): a forward pre-hook on every quantized
``nn.Linear`` of the quantized block replaces the layer's input by :math:`Q_a(\cdot)`
(:func:`add_activation_quantization`), registered after the float copy and the grouping, so that
:math:`\tilde X` is the quantized model's *quantized* input (OPTQ sees only it; Qronos sees it and the
float :math:`X`, which the float copy computes without hooks), the block's outputs handed on are
computed with quantized activations, and the hooks stay on the model for its evaluation.

AQAS (``Config.aqas``, settings ``METHOD-4b-a8-aqas``; theory.md W4A8.4): per group, one more pass
captures the quantized stream's input before activation quantization, :func:`ptqtheory.aqas` chooses one
scale vector :math:`s` for the group's stacked weights, the group's hooks then compute
:math:`Q_a(xS^{-1})` (and the float copy's input is divided by :math:`s` while the group is quantized),
and the group is quantized and certified as the scaled problem :math:`(WS, XS^{-1}, Q_a(\tilde XS^{-1}))`;
the layer keeps :math:`Q_s` as its weight.

Block forward passes (one call of a block on one calibration batch; :attr:`PipelineResult.block_forwards`):
with :math:`G` groups in a block and :math:`s` streams (1, or 2 for Qronos and GPFQ), a block costs at
most :math:`s(G + 1)` passes over the batches with captured layer inputs, :math:`s(2G + 1)` with streamed
statistics (one more pass per group for the certificate; :math:`s(3G + 1)` with stochastic runs'
per-sample bounds), plus one call to discover the groups: linear in depth (Llama blocks: :math:`G = 4`).

Backends. ``device=None``: the float64 numpy reference on float64 host copies of each group's inputs.
``device="cpu"`` or ``"cuda"``: the torch backend on that device in ``dtype``, on the inputs captured as
float64 tensors (on both, every bound is evaluated) or, with ``stream=True`` (the default on CUDA), on
float64 statistics accumulated batch by batch (a group's inputs are never held at once).

Memory (``docs/pipeline.md``, checked in ``benchmarks/llm_scale.py``): with :math:`m` calibration tokens, hidden
size :math:`d`, activations of :math:`a` bytes, :math:`P_b` parameters per block of :math:`p` bytes, widest
group input :math:`N_{\max}` with :math:`n_{\max}` stacked rows and :math:`s` streams, the work device holds

.. math::
    s\,m\,d\,a + s\,P_b\,p + 8\,s\,m\,N_{\max} + O\big(8(n_{\max}N_{\max} + N_{\max}^2)\big)

(cached block inputs; the block and, for two streams, its float copy; one group's inputs captured in
float64, which streaming replaces by at most four :math:`N_{\max}\times N_{\max}` float64 statistics; the
run's state). No term depends on the number of blocks: peak memory does not grow with depth.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, runtime_checkable

import numpy as np
import torch

from .. import algorithms as alg
from .. import registry
from .._validate import check_choice, is_torch
from ..api import certify
from ..calibration import Damping
from ..grids import Grid
from ..report import LayerRecord, summarize_bound, summarize_certificate
from .capture import StopForward, token_rows

__all__ = [
    "METHODS",
    "BlockInputs",
    "BlockSource",
    "BoAAttention",
    "Config",
    "ModelBlocks",
    "PipelineResult",
    "add_activation_quantization",
    "boa_attention_module",
    "capture_block_inputs",
    "discover_groups",
    "quantize_model",
    "run_setting",
]

METHODS = tuple(registry.METHODS)
ACT_GRANULARITIES = ("token", "tensor")
ALPHABETS = ("int", "dint")
"""Weight formats besides the min-max grid (``Config.alphabet``): the symmetric INT alphabet and dINT
(:class:`ptqtheory.Alphabet`), absmax-scaled per output channel."""
_ALPHABET_METHODS = tuple(m for m in METHODS if m not in ("owq", "boa"))


@dataclass(frozen=True)
class Config:
    """One quantization setting: method, bit width, optional group size (min-max grid), and optionally
    activation quantization (W4A8, :mod:`ptqtheory.activations`).

    ``alphabet``: ``None`` for the min-max grid, or ``"int"`` / ``"dint"`` for the symmetric INT or
    dINT alphabet of ``bits`` bits with one absmax scale per output channel
    (``pt.Alphabet.dint(bits).fit(W)``; no groups).

    ``act_bits``: when set, every quantized ``nn.Linear``'s input in the quantized stream is
    fake-quantized to ``act_bits`` bits (symmetric INT, dynamic steps, one per token with
    ``act_granularity="token"`` or one per tensor with ``"tensor"``), in calibration and evaluation
    (module notes, "Activation quantization").

    ``aqas``: with ``act_bits``, each group of layers that read one input is quantized as the scaled
    problem of one AQAS scale vector :math:`s`, the weights :math:`WS` on their own grid (module notes,
    "AQAS"; docs/methods.md, "AQAS in the pipeline"). Setting suffix ``-aqas`` (e.g. ``qronos-4b-a8-aqas``).
    """

    method: str
    bits: int
    group_size: int | None = None
    sym: bool = False
    act_bits: int | None = None
    act_granularity: str = "token"
    alphabet: str | None = None
    aqas: bool = False

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or self.bits < 1:
            raise ValueError(f"bits must be an integer >= 1; got {self.bits!r}")
        if self.group_size is not None and (isinstance(self.group_size, bool)
                                            or not isinstance(self.group_size, int) or self.group_size < 1):
            raise ValueError(f"group_size must be None or an integer >= 1; got {self.group_size!r}")
        if self.act_bits is not None:
            from ..activations import act_levels

            act_levels(self.act_bits)  # an integer in [2, 16], or a ValueError naming bits
        check_choice("act_granularity", self.act_granularity, ACT_GRANULARITIES)
        if self.alphabet is not None:
            if self.alphabet not in ALPHABETS:
                raise ValueError(f"alphabet must be None (min-max grid) or one of {ALPHABETS}; got "
                                 f"{self.alphabet!r}")
            if self.group_size is not None:
                raise ValueError(f"alphabet={self.alphabet!r} has one scale per output channel, no groups; "
                                 f"drop group_size={self.group_size}")
            if self.method not in _ALPHABET_METHODS:
                raise ValueError(f"alphabet={self.alphabet!r} is supported for the methods "
                                 f"{_ALPHABET_METHODS}; got {self.method!r}")
            if not 2 <= self.bits <= 16:
                raise ValueError(f"bits={self.bits}: the INT and dINT alphabets have 2 to 16 bits")
        if self.act_bits is not None and registry.method(self.method).attention == "boa":
            raise ValueError(f"act_bits={self.act_bits}: method 'boa' is not combined with activation "
                             "quantization (the combination is not implemented and tested); use boa without "
                             "-aN, or optq/qronos with -aN")
        if not isinstance(self.aqas, bool):
            raise TypeError(f"aqas must be True or False; got {self.aqas!r}")
        if self.aqas and self.act_bits is None:
            raise ValueError("aqas=True needs act_bits (AQAS chooses scales for W4A8: weights and "
                             "activations); add -a8, e.g. optq-4b-a8-aqas")
        if self.aqas and self.alphabet is not None:
            raise ValueError(f"aqas=True with alphabet={self.alphabet!r}: AQAS's objective and the scaled "
                             "problem are implemented for the min-max grid only; drop -int/-dint or -aqas")
        if self.group_size is not None and registry.method(self.method).attention == "boa":
            raise ValueError(f"group_size={self.group_size}: method 'boa' quantizes q/k/v with "
                             "pt.boa_attention, which fits one min-max grid per output channel (no groups); "
                             "drop group_size (e.g. boa-4b), or use optq with groups")

    @property
    def name(self) -> str:
        """The setting's name in tables and reports, e.g. ``optq-4b``, ``optq-3b-g128``, ``qronos-4b-a8``
        (activations quantized to 8 bits per token), ``qronos-4b-a8t`` (per tensor) or
        ``qronos-4b-a8-aqas`` (with AQAS scales)."""
        tail = f"-g{self.group_size}" if self.group_size else ""
        if self.alphabet is not None:
            tail += f"-{self.alphabet}"
        if self.act_bits is not None:
            tail += f"-a{self.act_bits}" + ("t" if self.act_granularity == "tensor" else "")
        if self.aqas:
            tail += "-aqas"
        return f"{self.method}-{self.bits}b{tail}"

    @property
    def uses_float_inputs(self) -> bool:
        """Whether the method reads the float model's inputs :math:`X` besides :math:`\\tilde X`."""
        return registry.method(self.method).uses_xt


@runtime_checkable
class BlockSource(Protocol):
    """Where the blocks of a model come from and go back to: ``model`` is the whole model (blocks not
    loaded may live on ``meta``), ``names`` the blocks' module names in forward order; ``load(i, device)``
    returns block ``i`` with its float weights on ``device``; ``release(i, block)`` is called when block
    ``i`` is done (quantized) and may write it out and free its memory."""

    model: torch.nn.Module
    names: list[str]

    def __len__(self) -> int: ...

    def load(self, i: int, device: torch.device) -> torch.nn.Module: ...

    def release(self, i: int, block: torch.nn.Module) -> None: ...


class ModelBlocks:
    """A :class:`BlockSource` over a model held in memory, quantized in place: ``load`` moves a block to
    the work device when it lives elsewhere, ``release`` moves it back."""

    def __init__(self, model: torch.nn.Module, blocks: Sequence[tuple[str, torch.nn.Module]]):
        if not blocks:
            raise ValueError("blocks is empty: pass the model's blocks as [(name, module), ...]")
        self.model = model
        self.names = [name for name, _ in blocks]
        self._blocks = [blk for _, blk in blocks]
        self._home: dict[int, torch.device] = {}

    def __len__(self) -> int:
        return len(self._blocks)

    def load(self, i: int, device: torch.device) -> torch.nn.Module:
        blk = self._blocks[i]
        home = next((t.device for t in blk.parameters()), torch.device("cpu"))
        if home != device:
            self._home[i] = home
            blk.to(device)
        return blk

    def release(self, i: int, block: torch.nn.Module) -> None:
        home = self._home.pop(i, None)
        if home is not None:
            block.to(home)


# --------------------------------------------------------------------------------------------------
# Cached block inputs and calls of one block


def _to(obj: Any, device: torch.device) -> Any:
    """Tensors anywhere inside tuples, lists and dicts moved to ``device`` (other objects as they are)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@dataclass
class BlockInputs:
    """The inputs of the current block, one entry per calibration batch: ``hidden[j]`` is batch ``j``'s hidden
    state (the block's first argument), ``args[j]`` and ``kwargs[j]`` the other arguments (attention mask,
    rotary embeddings, ...; the same for every block), ``masks[j]`` its ``attention_mask`` or ``None``."""

    hidden: list[torch.Tensor]
    args: list[tuple]
    kwargs: list[dict]
    masks: list[torch.Tensor | None]
    keyword_hidden: bool = False

    def __len__(self) -> int:
        return len(self.hidden)

    @property
    def tokens(self) -> int:
        """Calibration rows each layer sees (real tokens)."""
        return sum(int(mk.sum()) if mk is not None else h.shape[0] * h.shape[1] if h.dim() == 3
                   else h.shape[0] for h, mk in zip(self.hidden, self.masks, strict=True))

    def with_hidden(self, hidden: list[torch.Tensor]) -> BlockInputs:
        """The same arguments around other hidden states (the other stream)."""
        return BlockInputs(hidden, self.args, self.kwargs, self.masks, self.keyword_hidden)

    def nbytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.hidden)


def capture_block_inputs(model: torch.nn.Module, first_block: torch.nn.Module, calibration: Sequence[dict],
                         forward: Callable[[torch.nn.Module, dict], object],
                         device: torch.device) -> BlockInputs:
    """Run the model's prefix once per batch, keeping ``first_block``'s inputs on ``device`` (notes, step 1)."""
    got: list[tuple[tuple, dict]] = []

    def hook(_module, args, kwargs):
        got.append((args, kwargs))
        raise StopForward

    hidden, rest, kws, masks = [], [], [], []
    keyword_hidden = False
    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            for j, batch in enumerate(calibration):
                got.clear()
                with contextlib.suppress(StopForward):
                    forward(model, batch)
                if not got:
                    raise RuntimeError(f"calibration batch {j}: the forward pass never reached the first "
                                       "block; is `blocks` the model's list of blocks?")
                args, kwargs = got[0]
                kwargs = dict(kwargs)
                if args:
                    h, args = args[0], args[1:]
                else:  # some models pass the hidden states by keyword
                    h = kwargs.pop("hidden_states")
                    keyword_hidden = True
                hidden.append(h.detach().to(device))
                rest.append(_to(args, device))
                kws.append(_to(kwargs, device))
                mask = batch.get("attention_mask") if isinstance(batch, dict) else None
                masks.append(None if mask is None else mask.to(device).bool())
    finally:
        handle.remove()
    return BlockInputs(hidden, rest, kws, masks, keyword_hidden)


class _Counter:
    """Counts calls of a block on one calibration batch (the unit of :attr:`block_forwards`)."""

    def __init__(self):
        self.calls = 0


def _call(block: torch.nn.Module, inputs: BlockInputs, j: int, counter: _Counter):
    counter.calls += 1
    if inputs.keyword_hidden:
        out = block(*inputs.args[j], hidden_states=inputs.hidden[j], **inputs.kwargs[j])
    else:
        out = block(inputs.hidden[j], *inputs.args[j], **inputs.kwargs[j])
    return out[0] if isinstance(out, tuple | list) else out


def _layer_batches(block: torch.nn.Module, layer: torch.nn.Module, inputs: BlockInputs,
                   counter: _Counter) -> Iterator[torch.Tensor]:
    """The input rows of ``layer`` for each cached batch: the block runs until the layer is reached."""
    for j in range(len(inputs)):
        got: list[torch.Tensor] = []

        def hook(_module, args, got=got):
            got.append(args[0])
            raise StopForward

        handle = layer.register_forward_pre_hook(hook)
        try:
            with torch.no_grad(), contextlib.suppress(StopForward):
                _call(block, inputs, j, counter)
        finally:
            handle.remove()
        if not got:
            raise RuntimeError("the block never called one of its own linear layers on this batch")
        yield token_rows(got[0], inputs.masks[j])


def _captured(block: torch.nn.Module, layer: torch.nn.Module, inputs: BlockInputs,
              counter: _Counter) -> torch.Tensor:
    """The input rows of ``layer`` (:func:`_layer_batches`) in float64 (exact for float32 and float16)."""
    return torch.cat([b.to(torch.float64) for b in _layer_batches(block, layer, inputs, counter)])


def _numpy64(a) -> np.ndarray:
    """A tensor or an array as a float64 numpy array on the host."""
    if isinstance(a, torch.Tensor):
        return a.detach().to(torch.float64).cpu().numpy()
    return np.asarray(a, np.float64)


def _block_outputs(block: torch.nn.Module, inputs: BlockInputs, counter: _Counter) -> list[torch.Tensor]:
    with torch.no_grad():
        return [_call(block, inputs, j, counter).detach() for j in range(len(inputs))]


def discover_groups(block: torch.nn.Module, inputs: BlockInputs, counter: _Counter | None = None,
                    prefix: str = "") -> list[list[str]]:
    """The ``nn.Linear`` layers of ``block`` grouped by the input tensor they read, in call order (one call on
    the first cached batch). Inputs are told apart by storage address, shape and strides, each kept alive until
    the call ends: a freed activation's address reused by a later, different input would merge, e.g., OPT's
    ``out_proj`` and ``fc1``. Names are relative to the block (``prefix.name`` with ``prefix``)."""
    seen: dict[str, tuple] = {}
    keys: dict[tuple, list[str]] = {}  # in order of first appearance
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
                keys.setdefault(key, []).append(full)
            handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            _call(block, inputs, 0, counter or _Counter())
    finally:
        for h in handles:
            h.remove()
        alive.clear()
    return list(keys.values())


# --------------------------------------------------------------------------------------------------
# Activation quantization (W4A8): a forward pre-hook on each quantized linear layer


class _ActivationHook:
    r"""Forward pre-hook: the layer's first argument :math:`x` replaced by :math:`Q_a(x)`, or by
    :math:`Q_a(xS^{-1})` once AQAS scales are set (``scales``: :math:`s`, divided out in the input's dtype
    before quantizing). ``bypass``: leave the input as it is (the pipeline reads the unquantized input
    of the quantized stream through it, to choose the scales)."""

    def __init__(self, bits: int, granularity: str):
        self.bits = bits
        self.granularity = granularity
        self.scales: torch.Tensor | None = None
        self.bypass = False

    def __call__(self, _module, args):
        from ..activations import quantize_activations

        if self.bypass:
            return None
        x = args[0]
        if self.scales is not None:
            x = x / self.scales.to(device=x.device, dtype=x.dtype)
        x = quantize_activations(x, bits=self.bits, granularity=self.granularity)  # type: ignore[arg-type]
        return (x, *args[1:])


def add_activation_quantization(block: torch.nn.Module, names: Sequence[str], bits: int,
                                granularity: str = "token") -> list:
    """Fake-quantize the inputs of the ``nn.Linear`` layers ``names`` of ``block`` from now on.

    A forward pre-hook on each layer (:func:`ptqtheory.activations.quantize_activations`, dynamic
    steps); returns the hook handles (``handle.remove()`` undoes it). :func:`quantize_model` calls it
    for every quantized layer when ``cfg.act_bits`` is set, so the quantized model keeps quantizing
    its activations when it is evaluated afterwards.
    """
    return [h for h, _ in _activation_hooks(block, names, bits, granularity)]


def _activation_hooks(block: torch.nn.Module, names: Sequence[str], bits: int,
                      granularity: str) -> list[tuple[Any, _ActivationHook]]:
    """:func:`add_activation_quantization`, also returning each hook object (AQAS sets its scales)."""
    from ..activations import act_levels

    act_levels(bits)
    if granularity not in ACT_GRANULARITIES:
        raise ValueError(f"granularity must be one of {ACT_GRANULARITIES}; got {granularity!r}")
    mods = dict(block.named_modules())
    missing = [n for n in names if not isinstance(mods.get(n), torch.nn.Linear)]
    if missing:
        raise ValueError(f"names: {missing} are not nn.Linear layers of the block")
    hooks = [_ActivationHook(bits, granularity) for _ in names]
    return [(mods[n].register_forward_pre_hook(h), h) for n, h in zip(names, hooks, strict=True)]


AQAS_N_GRID = 10
r"""Exponents searched per group by the pipeline's AQAS (:math:`\alpha = 0, 0.1, \dots, 1`, plus
:math:`s = 1`): half of ``pt.aqas``'s default, to keep SmolLM2's run within minutes (docs/methods.md)."""


@dataclass
class _AQASGroup:
    """AQAS on one group: the chosen scales, the group's and each row's objective, and the float-stream
    hook that divides the float copy's input by :math:`s` while the group is quantized."""

    result: Any
    scales: np.ndarray
    rows_scaled: np.ndarray
    rows_unscaled: np.ndarray
    tokens: int
    fallback: str | None
    handle: Any

    def scale(self, w):
        r""":math:`WS` in ``w``'s type (numpy, or a tensor on its device in its dtype)."""
        if isinstance(w, torch.Tensor):
            return w * torch.from_numpy(self.scales).to(device=w.device, dtype=w.dtype)
        return w * self.scales

    def summary(self, rows: slice, group: list[str]) -> dict:
        res = self.result
        return {"alpha": res.alpha, "family": "smoothquant", "n_grid": AQAS_N_GRID, "group": group,
                "objective": float(np.sum(self.rows_scaled[rows])),
                "objective_unscaled": float(np.sum(self.rows_unscaled[rows])),
                "objective_group": float(res.objective),
                "objective_unscaled_group": float(res.objective_unscaled),
                "scales_min": float(self.scales.min()), "scales_max": float(self.scales.max()),
                "tokens": self.tokens, "fallback": self.fallback}


def _aqas_group(cfg: Config, qblock: torch.nn.Module, fblock: torch.nn.Module | None, group: list[str],
                hooks: dict[str, _ActivationHook], q_in: BlockInputs, counter: _Counter) -> _AQASGroup:
    r"""Choose one AQAS scale vector for ``group`` and set it: on the group's activation hooks (the
    quantized stream computes :math:`Q_a(xS^{-1})`) and, with a float copy ``fblock``, on a temporary
    pre-hook of the float copy's first group layer (the float stream's captured input is :math:`XS^{-1}`;
    ``handle.remove()`` when the group is done)."""
    from ..aqas import aqas, aqas_objective

    mods = dict(qblock.named_modules())
    first = hooks[group[0]]
    first.bypass = True  # the quantized stream's input before activation quantization
    try:
        X0 = _captured(qblock, mods[group[0]], q_in, counter).cpu().numpy()
    finally:
        first.bypass = False
    W = np.concatenate([_numpy64(mods[g].weight) for g in group])
    kw: dict[str, Any] = {"w_bits": cfg.bits, "a_bits": cfg.act_bits, "sym": cfg.sym,
                          "group_size": cfg.group_size, "a_granularity": cfg.act_granularity}
    fallback = None
    dead = ~np.any(X0 != 0, axis=0)
    if dead.any():  # a scale of an input channel that never fires is undefined: keep s = 1
        from ..aqas import AQASResult, _objective_rows

        fallback = f"{int(dead.sum())} all-zero input channels: identity scales"
        # AQAS's per-row objective without the all-zero-column check (identity scales only)
        rows_s = rows_1 = _objective_rows(X0 @ W.T, W, X0, np.ones(W.shape[1]), **kw)
        base = float(np.sum(rows_1))
        res: Any = AQASResult(scales=np.ones(W.shape[1]), W=W, X=X0, alpha=None, objective=base,
                              objective_unscaled=base, alphas=np.zeros(0), objectives=np.zeros(0))
    else:
        res = aqas(W, X0, n_grid=AQAS_N_GRID, family="smoothquant", **kw)
        rows_1 = aqas_objective(W, X0, np.ones(W.shape[1]), per_row=True, **kw)
        rows_s = rows_1 if res.alpha is None else aqas_objective(W, X0, res.scales, per_row=True, **kw)
    s = np.asarray(res.scales, dtype=np.float64)
    s_t = torch.from_numpy(s)
    for g in group:
        hooks[g].scales = s_t
    handle = None
    if fblock is not None:
        def divide(_m, args):
            x = args[0]
            return (x / s_t.to(device=x.device, dtype=x.dtype), *args[1:])
        handle = dict(fblock.named_modules())[group[0]].register_forward_pre_hook(divide)
    return _AQASGroup(res, s, np.asarray(rows_s), np.asarray(rows_1), int(X0.shape[0]), fallback, handle)


# --------------------------------------------------------------------------------------------------
# One setting on one group: the same code for both backends


def run_setting(cfg: Config, W, X, Xt, lam, seed: int):
    """Run ``cfg`` on weights ``W`` with float-model inputs ``X`` and quantized-model inputs ``Xt`` (what
    each method reads: module notes), on either backend (the public algorithms pick theirs from the inputs'
    types); with streamed statistics Qronos reads the mismatch accumulator as ``X`` and ``Xt`` is ``None``."""
    grid: Any
    if cfg.alphabet is not None:
        from ..alphabets import Alphabet

        levels = Alphabet.dint(cfg.bits) if cfg.alphabet == "dint" else Alphabet.integer(cfg.bits)
        grid = levels.fit(W)
    elif is_torch(W):
        from .. import torch_backend as tb

        grid = tb.minmax_grid(W, bits=cfg.bits, sym=cfg.sym, group_size=cfg.group_size)
    else:
        grid = Grid.minmax(W, bits=cfg.bits, sym=cfg.sym, group_size=cfg.group_size)
    spec = registry.method(cfg.method)
    row = spec.entry
    data = (X, Xt) if row.uses_xt else ((Xt,) if row.factor else ())
    kw: dict[str, Any] = {"grid": grid}
    if row.factor:
        kw["lam"] = lam
    if spec.rounding != "nearest":
        kw.update(rounding=spec.rounding, seed=seed)
    if spec.incoherence:
        kw.update(incoherence="kron", seed=seed)
    if spec.variant is not None:
        kw["variant"] = spec.variant
    if spec.algorithm == "gpfq":
        # An all-zero column of Xt (e.g. a small channel on an 8-bit activation grid) leaves GPFQ's step
        # undefined: those weights are rounded to nearest, as the run's notes (in the layer summary) say.
        kw["dead_columns"] = "round"
    if spec.algorithm == "owq":  # kept columns: the default effective-bit target (ptqtheory.owq)
        from ..owq import default_keep, owq

        kw["keep"] = default_keep(int(W.shape[-1]), cfg.bits)
        return owq(W, *data, **kw)
    return getattr(alg, spec.algorithm)(W, *data, **kw)


@dataclass
class _Backend:
    """Where runs happen: ``device=None`` is the numpy reference; else torch on ``device`` in ``dtype``."""

    device: torch.device | None
    dtype: torch.dtype
    stream: bool

    def weights(self, mod: torch.nn.Linear):
        w = mod.weight.detach()
        return _numpy64(w) if self.device is None else w.to(device=self.device, dtype=self.dtype)

    def stack(self, parts: list):
        return np.concatenate(parts, axis=0) if self.device is None else torch.cat(parts, dim=0)

    def gather(self, rows: torch.Tensor):
        """A group's inputs captured whole in float64 (:func:`_captured`), on the host for numpy."""
        return rows.cpu().numpy() if self.device is None else rows


def _group_data(cfg: Config, backend: _Backend, qblock, fblock, first: str, q_in: BlockInputs,
                f_in: BlockInputs | None, counter: _Counter):
    """``(X for the run, Xt for the run, certify(run, p) -> Certificate)`` of one group."""
    qmod = dict(qblock.named_modules())[first]
    fmod = dict(fblock.named_modules())[first] if f_in is not None else None
    uses_x = cfg.uses_float_inputs
    # A vector identity over the samples (GPFQ's I6) needs the data: such runs never stream.
    if backend.stream and not registry.method(cfg.method).entry.identity_reads_samples:
        from ..torch_backend import TorchAccumulator

        def batches():  # one batch at a time: a group's inputs are never held at once
            xts = _layer_batches(qblock, qmod, q_in, counter)
            return zip(_layer_batches(fblock, fmod, f_in, counter), xts, strict=True) if uses_x else xts

        acc = TorchAccumulator(qmod.in_features, backend.device, with_mismatch=uses_x)
        for item in batches():
            acc.update(*item) if uses_x else acc.update(item)
        run_x, run_xt = (acc, None) if uses_x else (None, acc)
        # One more pass for the empirical errors, another for a stochastic run's bounds B5 and B10.sup.
        return run_x, run_xt, lambda run, p: certify(run, batches(), p=p, samples=batches)
    Xt = backend.gather(_captured(qblock, qmod, q_in, counter))
    X = None
    if uses_x:
        assert fmod is not None and f_in is not None  # the float stream is kept when the config reads it
        X = backend.gather(_captured(fblock, fmod, f_in, counter))

    def cert(run, p):  # certified on the float64 inputs, also for float32 runs
        return certify(run, X, Xt, p=p) if uses_x else certify(run, Xt, p=p)

    if backend.device is None:
        return X, Xt, cert
    return (None if X is None else X.to(backend.dtype)), Xt.to(backend.dtype), cert


@dataclass
class _MagR:
    """MagR on one group: its result, the float64 weights and Gram it read, and ``V`` in the run's type."""

    result: Any
    W: np.ndarray
    gram: np.ndarray
    V: Any
    samples: np.ndarray | None  # the data as float64 rows, when the run read samples (not statistics)


def _magr_preprocess(cfg: Config, W, data) -> _MagR:
    """MagR (``pt.magr``, the authors' per-channel or group-wise settings by ``cfg.group_size``) on the
    data the run reads; the run then quantizes ``V`` with a grid fitted to ``V``."""
    from ..magr import magr_gram

    torch_in = isinstance(W, torch.Tensor)
    W64 = _numpy64(W)
    samples = _numpy64(data) if isinstance(data, np.ndarray | torch.Tensor) else None
    gram = samples.T @ samples if samples is not None else data.gram_X.to(torch.float64).cpu().numpy()
    res = magr_gram(W64, gram, group_size=cfg.group_size)
    V = torch.as_tensor(res.V).to(device=W.device, dtype=W.dtype) if torch_in else res.V
    return _MagR(res, W64, gram, V, samples)


def _add_magr_summary(summary: dict, pre: _MagR, run, cert, rows: slice) -> None:
    r"""MagR's certificate and the end-to-end bound (``MagR``) for one layer's ``rows``.

    ``err_l2_mean`` becomes :math:`\|X(w - q)\|` against the float weights :math:`w` (what the other
    settings report), and the certificate's :math:`\|X(v - q)\|` moves to ``magr.err_l2_mean_vs_v``.
    """
    from ..magr import end_to_end_check

    res = pre.result
    V, Q = np.atleast_2d(_numpy64(run.W)), np.atleast_2d(_numpy64(run.Q))

    def norms(D):  # ||X d|| per row: from the samples where the run read them, else d^T (X^T X) d
        if pre.samples is not None:
            return np.linalg.norm(D @ pre.samples.T, axis=1)
        return np.sqrt(np.maximum(np.sum((D @ pre.gram) * D, axis=1), 0.0))

    change, empirical, reference = norms(pre.W - V), norms(pre.W - Q), norms(pre.W)
    N = pre.W.shape[1]
    terms = N * pre.samples.shape[0] if pre.samples is not None else N * N
    if "B1" in [b.label for b in cert.bounds]:
        summary["bounds"]["MagR"] = summarize_bound(end_to_end_check(cert.bound("B1"), change, empirical,
                                                                     terms=terms), rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_change = np.where(reference > 0, change / reference, 0.0)[rows]
    summary["magr"] = {
        "alpha": res.alpha, "iterations": res.iterations, "group_size": res.group_size,
        "rows_uncertified": int(np.count_nonzero(~res.certified[rows])),
        "max_gap": float(np.max(res.gap[rows])),
        "max_gap_relative": float(np.max(res.gap[rows] / np.maximum(res.objective[rows], 1e-300))),
        "w_inf_median": float(np.median(res.w_inf[rows])), "v_inf_median": float(np.median(res.v_inf[rows])),
        "inf_ratio_median": float(np.median(res.v_inf[rows] / np.maximum(res.w_inf[rows], 1e-300))),
        "output_change_relative_median": float(np.median(rel_change)),
        "err_l2_mean_vs_v": summary["err_l2_mean"],
    }
    summary["err_l2_mean"] = float(np.mean(empirical[rows]))


# --------------------------------------------------------------------------------------------------
# BoA on the block's query/key/value group


_BOA_PROJECTIONS = ("query", "key", "value")
_LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj")
_BOA_ADVICE = ("pt.boa_attention supports BERT-style encoder self-attention (query/key/value, absolute "
               "positions: BERT, MiniLM) and Llama-style causal self-attention (q_proj/k_proj/v_proj, "
               "grouped-query heads, rotary embeddings passed as position_embeddings: Llama, SmolLM2); for "
               "this model use optq or magr-optq")


@dataclass(frozen=True)
class BoAAttention:
    """The self-attention of a block as method ``boa`` reads it (:func:`boa_attention_module`).

    ``name``: the attention module's name in the block; ``projections``: its query, key and value
    linears' attribute names; ``rope``: the logits read rotary-embedded queries and keys (the block's
    ``position_embeddings`` argument); ``causal``: decoder (causal) attention.
    """

    name: str
    n_heads: int
    n_kv_heads: int
    head_dim: int
    projections: tuple[str, str, str]
    rope: bool
    causal: bool

    def layer(self, i: int) -> str:
        """Block-relative name of projection ``i`` (0 query, 1 key, 2 value)."""
        return f"{self.name}.{self.projections[i]}" if self.name else self.projections[i]


def _refuse(where: str, name: str, mod: torch.nn.Module, problem: str) -> NoReturn:
    raise ValueError(f"method 'boa': the attention {where}.{name} ({type(mod).__name__}) is not supported: "
                     f"{problem}; {_BOA_ADVICE}")


def boa_attention_module(block: torch.nn.Module, where: str = "the block") -> BoAAttention:
    """The block's self-attention for method ``boa`` (:class:`BoAAttention`), or ``ValueError``.

    Two styles are recognized. *BERT-style*: one module with ``nn.Linear`` attributes ``query``,
    ``key``, ``value`` of equal shape, ``num_attention_heads`` heads, not a decoder (no causal or cross
    attention) and absolute position embeddings only. *Llama-style*: one module with ``nn.Linear``
    ``q_proj``, ``k_proj``, ``v_proj`` and a ``config`` giving ``num_attention_heads``,
    ``num_key_value_heads`` (dividing it) and ``head_dim``, causal (``is_causal``), logits scaled by
    ``head_dim ** -0.5``; refused are sliding windows, query/key norms (Qwen3, OLMo2), logit soft-capping
    and attention sinks, which :func:`ptqtheory.boa_attention` does not model. Rotary embeddings are read
    from the block's ``position_embeddings`` argument when the group is quantized.
    """
    found = [(name, mod, p) for name, mod in block.named_modules()
             for p in (_BOA_PROJECTIONS, _LLAMA_PROJECTIONS)
             if all(isinstance(getattr(mod, a, None), torch.nn.Linear) for a in p)]
    if len(found) != 1:
        kinds = sorted({type(m).__name__ for _, m in block.named_modules()
                        if "attention" in type(m).__name__.lower()})
        has = f"{len(found)} such modules" if found else f"attention {', '.join(kinds) or 'none found'}"
        raise ValueError(f"method 'boa': {where} has no single self-attention with query/key/value (or "
                         f"q_proj/k_proj/v_proj) linears (it has {has}); {_BOA_ADVICE}")
    name, mod, proj = found[0]
    q, k, v = (getattr(mod, a) for a in proj)
    cfg = getattr(mod, "config", None)
    if proj == _BOA_PROJECTIONS:
        heads = getattr(mod, "num_attention_heads", None)
        position = getattr(cfg, "position_embedding_type", "absolute")
        if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1:
            _refuse(where, name, mod, "no integer num_attention_heads")
        if not (q.weight.shape == k.weight.shape == v.weight.shape) or q.out_features % heads:
            _refuse(where, name, mod, f"query/key/value shapes {tuple(q.weight.shape)}, "
                                      f"{tuple(k.weight.shape)}, {tuple(v.weight.shape)} (not {heads} equal "
                                      "heads)")
        if getattr(mod, "is_decoder", False) or getattr(mod, "is_causal", False):
            _refuse(where, name, mod, "it is a BERT-style decoder attention (causal or cross attention)")
        if position not in (None, "absolute"):
            _refuse(where, name, mod, f"position_embedding_type={position!r} (relative position terms in the "
                                      "logits)")
        return BoAAttention(name, heads, heads, q.out_features // heads, proj, rope=False, causal=False)
    heads, kv = getattr(cfg, "num_attention_heads", None), getattr(cfg, "num_key_value_heads", None)
    kv = heads if kv is None else kv
    if any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in (heads, kv)):
        _refuse(where, name, mod, "no config with integer num_attention_heads / num_key_value_heads")
    assert isinstance(heads, int) and isinstance(kv, int)
    dh = getattr(mod, "head_dim", None) or getattr(cfg, "head_dim", None) or q.out_features // heads
    problem = None
    if heads % kv or q.weight.shape != (heads * dh, q.in_features) or \
            k.weight.shape != v.weight.shape or k.weight.shape != (kv * dh, q.in_features):
        problem = (f"q/k/v shapes {tuple(q.weight.shape)}, {tuple(k.weight.shape)}, {tuple(v.weight.shape)} do "
                   f"not match {heads} query heads and {kv} key/value heads of {dh}")
    elif getattr(mod, "is_causal", None) is not True:
        problem = "not causal (is_causal is not True): a bidirectional or cross attention"
    elif getattr(mod, "sliding_window", None) is not None or (
            getattr(cfg, "sliding_window", None) is not None and getattr(cfg, "use_sliding_window", True)):
        problem = "a sliding window (the window is not modelled)"
    elif any(hasattr(mod, a) for a in ("q_norm", "k_norm", "q_layernorm", "k_layernorm")):
        problem = "query/key normalization before the logits (not modelled)"
    elif getattr(cfg, "attn_logit_softcapping", None) is not None or hasattr(mod, "sinks"):
        problem = "logit soft-capping or attention sinks (not modelled)"
    elif abs(float(getattr(mod, "scaling", dh ** -0.5)) - dh ** -0.5) > 1e-12 * dh ** -0.5:
        problem = f"logits scaled by {getattr(mod, 'scaling', None)}, not head_dim ** -0.5"
    if problem is not None:
        _refuse(where, name, mod, problem)
    return BoAAttention(name, heads, kv, int(dh), proj, rope=True, causal=True)


def _sequence_lengths(inputs: BlockInputs) -> list[int]:
    """Real tokens per calibration sequence, in the order :func:`token_rows` stacks them (sequences with no
    real token contribute no rows and are left out)."""
    out: list[int] = []
    for h, mk in zip(inputs.hidden, inputs.masks, strict=True):
        if h.dim() != 3:
            raise ValueError(f"method 'boa' needs block inputs of shape (batch, tokens, features); got "
                             f"{tuple(h.shape)}")
        if mk is None:
            out.extend([int(h.shape[1])] * int(h.shape[0]))
        else:
            out.extend(int(c) for c in mk.reshape(h.shape[0], -1).sum(dim=1).tolist() if c > 0)
    return out


def _rotary_rows(inputs: BlockInputs, head_dim: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Each real token's rotary embedding ``(cos, sin)``, float64 ``(tokens, head_dim)``, in the order
    :func:`token_rows` stacks the tokens: the block's own ``position_embeddings`` argument (so the positions
    are the model's, whatever its padding), broadcast over the batch and restricted to the real tokens."""
    rows: list[list[torch.Tensor]] = []  # per batch: its cos and sin rows
    for j, (h, mk) in enumerate(zip(inputs.hidden, inputs.masks, strict=True)):
        pe = inputs.kwargs[j].get("position_embeddings")
        if not (isinstance(pe, tuple | list) and len(pe) == 2 and all(isinstance(t, torch.Tensor) for t in pe)):
            raise ValueError(f"method 'boa': {where} was not given position_embeddings=(cos, sin) (rotary "
                             f"embeddings); {_BOA_ADVICE}")
        B, T = int(h.shape[0]), int(h.shape[1])
        rows.append([])
        for t in pe:
            if t.dim() == 2:
                t = t.unsqueeze(0)
            if t.dim() != 3 or t.shape[-2] != T or t.shape[-1] != head_dim or t.shape[0] not in (1, B):
                raise ValueError(f"method 'boa': {where}'s position_embeddings have shape {tuple(t.shape)}, "
                                 f"not (batch, {T}, head_dim={head_dim}) (partial rotary embeddings are not "
                                 f"modelled); {_BOA_ADVICE}")
            rows[-1].append(token_rows(t.expand(B, T, head_dim).to(torch.float64), mk))
    cos_rows, sin_rows = zip(*rows, strict=True)
    return (torch.cat(cos_rows).cpu().numpy(), torch.cat(sin_rows).cpu().numpy())


def _boa_summary(att: Any, key: str, X: np.ndarray, W: np.ndarray, rtol: float, rope: bool = False) -> dict:
    r"""One projection's record summary, with the keys of :func:`~ptqtheory.report.summarize_certificate`.

    I7 is one identity per head (``d_h`` rows): ``identity_holds`` is every head's
    :meth:`~ptqtheory.BoACertificate.holds`; ``identity_max_gap`` the largest relative gap
    :math:`|lhs - rhs|/\max(|lhs|, |rhs|)` over the heads whose sides lie far above their allowance
    (``identity_rows_resolved`` counts those heads' rows); ``pivots_hold`` that every pivot of both
    factors is positive and finite. ``err_l2_mean`` is the mean over rows of :math:`\|X(w - q)\|` on the
    group's inputs (OPTQ's err_l2), ``err_inf_max`` the largest :math:`\|X(w - q)\|_\infty`. I7 has no
    a-priori bound, so ``bounds`` is empty. ``boa`` holds the heads' objectives and dampings.
    """
    from ..tolerances import RESOLVED

    runs, certs = att.runs[key], att.certificates[key]
    dh = runs[0].W.shape[0]
    size = [max(abs(c.lhs), abs(c.rhs)) for c in certs]
    resolved = [c.atol <= RESOLVED * s for c, s in zip(certs, size, strict=True)]
    gaps = [abs(c.gap) / s if s > 0 else 0.0 for c, s in zip(certs, size, strict=True)]
    XE = X @ (W - np.asarray(att.Q[key], dtype=float)).T
    clipped = np.concatenate([np.asarray(r.clipped, bool) for r in runs]).any(axis=1)
    pivots = all(np.all(np.isfinite(d)) and np.all(d > 0) for r in runs for d in (r.D_in, r.D_out))
    logits = "attention logits (rotary, averaged over positions)" if rope else "attention logits"
    objective = {"q": f"{logits}, keys fixed", "k": f"{logits}, queries fixed", "v": "attention output"}[key]
    return {
        "identity": "I7", "rows": int(W.shape[0]),
        "identity_holds": all(c.holds(rtol) for c in certs),
        "identity_max_gap": float(max((g for g, r in zip(gaps, resolved, strict=True) if r), default=0.0)),
        "identity_rows_resolved": int(dh * sum(resolved)),
        "pivots_hold": bool(pivots),
        "clipped_rows": int(np.count_nonzero(clipped)),
        "err_l2_mean": float(np.mean(np.linalg.norm(XE, axis=0))),
        "err_inf_max": float(np.max(np.abs(XE))),
        "bounds": {}, "skipped_bounds": [],
        "boa": {"heads": len(runs), "objective": objective,
                "err_out_per_head": [c.err_out for c in certs],
                "lam_in_per_head": [r.lam_in for r in runs], "lam_out_per_head": [r.lam_out for r in runs],
                "structure_residual_max": float(max(c.structure_residual for c in certs))},
    }


def _check_reference_forward(qblock: torch.nn.Module, attention: BoAAttention, where: str, q_in: BlockInputs,
                             X: np.ndarray, cos, sin, W: dict, bias: Callable, counter: _Counter) -> None:
    """``ValueError`` unless :func:`ptqtheory.attention_heads` on the first calibration batch (captured
    rows, lengths, rotary rows, GQA, causal) reproduces the block's own attention output, the input of
    its ``o_proj``, to :func:`~ptqtheory.tolerances.reference_forward_rtol` of the block's precision:
    a safety net for what the static checks of :func:`boa_attention_module` cannot see (another rotary
    layout, positions without rotation, a window)."""
    from ..boa import attention_heads
    from ..tolerances import reference_forward_rtol

    mods = dict(qblock.named_modules())
    out_proj = getattr(mods[attention.name], "o_proj", None)
    if not isinstance(out_proj, torch.nn.Linear):
        raise ValueError(f"method 'boa': the attention {where}.{attention.name} has no o_proj linear, so its "
                         f"output cannot be checked against pt.attention_heads; {_BOA_ADVICE}")
    first = BlockInputs(q_in.hidden[:1], q_in.args[:1], q_in.kwargs[:1], q_in.masks[:1], q_in.keyword_hidden)
    L0 = _sequence_lengths(first)
    n0 = sum(L0)
    got = _captured(qblock, out_proj, first, counter).cpu().numpy()
    ref, _ = attention_heads(X[:n0], W["query"], W["key"], W["value"], attention.n_heads, L0, bias("query"),
                             bias("key"), bias("value"), attention.causal, n_kv_heads=attention.n_kv_heads,
                             cos=cos[:n0], sin=sin[:n0])
    rel = float(np.linalg.norm(ref - got) / max(np.linalg.norm(got), np.finfo(float).tiny))
    tol = reference_forward_rtol(float(torch.finfo(out_proj.weight.dtype).eps) / 2)
    if not rel <= tol:
        raise ValueError(f"method 'boa': pt.attention_heads does not reproduce the attention {where}."
                         f"{attention.name} ({type(mods[attention.name]).__name__}) on the calibration tokens "
                         f"(relative error {rel:.2g} > {tol:.2g}): it has a position scheme or mask that "
                         f"pt.boa_attention does not model; {_BOA_ADVICE}")


def _quantize_boa_group(cfg: Config, qblock: torch.nn.Module, attention: BoAAttention, where: str,
                        group: list[str], q_in: BlockInputs, lam,
                        counter: _Counter) -> dict[str, tuple[dict, float]]:
    """BoA on the block's q/k/v group, on its captured quantized-stream inputs (float64 numpy, also
    for the torch backend); writes the quantized weights back. Returns ``{layer: (summary, lam)}``,
    ``lam`` the column factor's damping (q, k: shared by the heads; v: the mean over the heads).
    Llama-style attention: ``n_kv_heads`` key/value heads, each token's rotary embedding from the block's
    ``position_embeddings`` (:func:`_rotary_rows`), causal."""
    from ..boa import boa_attention
    from ..tolerances import RTOL_IDENTITY

    mods = dict(qblock.named_modules())
    names = {a: attention.layer(i) for i, a in enumerate(_BOA_PROJECTIONS)}
    if sorted(group) != sorted(names.values()):
        raise RuntimeError(f"method 'boa': the query/key/value projections do not read one input "
                           f"(group {group})")
    X = _captured(qblock, mods[names["query"]], q_in, counter).cpu().numpy()
    lengths = _sequence_lengths(q_in)
    if sum(lengths) != X.shape[0]:
        raise RuntimeError(f"method 'boa': {sum(lengths)} real tokens in the masks, {X.shape[0]} rows captured")
    cos, sin = _rotary_rows(q_in, attention.head_dim, where) if attention.rope else (None, None)
    W = {a: _numpy64(mods[n].weight) for a, n in names.items()}

    def bias(a):
        b = mods[names[a]].bias
        return None if b is None else _numpy64(b)

    if attention.rope:  # the factors must be the model's: the reference forward reproduces its attention
        _check_reference_forward(qblock, attention, where, q_in, X, cos, sin, W, bias, counter)

    att = boa_attention(X, W["query"], W["key"], W["value"], attention.n_heads, bits=cfg.bits, sym=cfg.sym,
                        lengths=lengths, b_q=bias("query"), b_k=bias("key"), causal=attention.causal, lam=lam,
                        n_kv_heads=attention.n_kv_heads, cos=cos, sin=sin)
    out = {}
    for a, key in zip(_BOA_PROJECTIONS, ("q", "k", "v"), strict=True):
        mod = mods[names[a]]
        with torch.no_grad():
            mod.weight.copy_(torch.from_numpy(np.asarray(att.Q[key])).to(device=mod.weight.device,
                                                                          dtype=mod.weight.dtype))
        out[names[a]] = (_boa_summary(att, key, X, W[a], RTOL_IDENTITY, attention.rope),
                         float(np.mean([r.lam_in for r in att.runs[key]])))
    return out


@dataclass
class PipelineResult:
    """What :func:`quantize_model` did: per-layer records and what it cost."""

    layers: list[LayerRecord] = field(default_factory=list)
    block_forwards: int = 0
    blocks: int = 0
    calibration_tokens: int = 0
    seconds: float = 0.0
    peak_device_bytes: int | None = None
    cached_input_bytes: int = 0
    activation_hooks: list = field(default_factory=list)
    """With ``cfg.act_bits``: the activation-quantization hooks left on the quantized layers (the model
    is evaluated with them; ``h.remove()`` for each restores float activations)."""


def quantize_model(
    source: BlockSource,
    calibration: Sequence[dict],
    forward: Callable[[torch.nn.Module, dict], object],
    cfg: Config,
    *,
    lam=None,
    p: float = 1e-6,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float64,
    stream: bool | None = None,
    progress: Callable[[str], None] | None = None,
    on_layer: Callable[[str, Any, slice, list[str]], None] | None = None,
) -> PipelineResult:
    """Quantize every ``nn.Linear`` of every block of ``source`` with ``cfg``, in place; certify every row.

    Parameters
    ----------
    source : BlockSource
        The model and its blocks (:class:`ModelBlocks`: in memory); ``source.model`` ends up quantized.
    calibration : sequence of dict
        Calibration batches (``attention_mask``, if present, marks the real tokens).
    forward : callable
        ``forward(model, batch)`` runs the model (only its prefix runs here: it stops at block 0).
    cfg : Config
    lam : float or Damping, optional
        Default GPTQ's ``Damping.percdamp(0.01)``; the absolute value used is in each record.
    p : float
        Failure probability of the probabilistic bounds.
    seed : int
        Seed of the stochastic rounding and of the incoherence transforms.
    device : str or torch.device, optional
        ``None``: the numpy reference, blocks on the CPU; else the torch backend and the blocks on it.
    dtype : torch.dtype
        Working precision of the torch backend (``torch.float64`` or ``torch.float32``).
    stream : bool, optional
        Torch backend only: streamed statistics (module notes, "Backends"; default on CUDA).
    progress : callable, optional
        ``progress(message)`` after each group.
    on_layer : callable, optional
        ``on_layer(name, run, rows, group)`` after each layer: its run (rows ``rows`` of the run belong
        to the layer; the layers of a group share one run) and the layer names of its group. Not
        called for the q/k/v layers of method ``boa`` (their runs are per head, :class:`~ptqtheory.BoARun`).

    Returns
    -------
    PipelineResult
    """
    if not isinstance(source, BlockSource):
        raise TypeError(f"source must be a BlockSource (e.g. ModelBlocks(model, blocks)); got "
                        f"{type(source).__name__}")
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a Config; got {type(cfg).__name__}")
    if len(calibration) == 0:
        raise ValueError("calibration is empty: at least one calibration batch is needed")
    lam = Damping.percdamp(0.01) if lam is None else lam
    if device is not None:
        device = torch.empty(0, device=device).device
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
        stream = device.type == "cuda" if stream is None else bool(stream)
    elif stream:
        raise ValueError("stream=True needs the torch backend: pass device='cpu' or 'cuda'")
    backend = _Backend(device, dtype, bool(stream))
    work = device if device is not None else torch.device("cpu")
    if work.type == "cuda":
        torch.cuda.reset_peak_memory_stats(work)
    t_start = time.perf_counter()
    counter = _Counter()
    model = source.model
    first = source.load(0, work)
    spec = registry.method(cfg.method)
    boa = spec.attention == "boa"
    if boa:  # refused before any work when the model's attention is not one boa_attention supports
        boa_attention_module(first, source.names[0])
    q_in = capture_block_inputs(model, first, calibration, forward, work)
    two_streams = cfg.uses_float_inputs
    f_in = q_in.with_hidden(list(q_in.hidden)) if two_streams else None
    result = PipelineResult(blocks=len(source), calibration_tokens=q_in.tokens,
                            cached_input_bytes=q_in.nbytes() * (2 if two_streams else 1))
    record = functools.partial(LayerRecord, config=cfg.name, method=cfg.method, bits=cfg.bits,
                               group_size=cfg.group_size)
    for b in range(len(source)):
        name = source.names[b]
        qblock = first if b == 0 else source.load(b, work)
        fblock = copy.deepcopy(qblock) if two_streams else qblock
        groups = discover_groups(qblock, q_in, counter)
        act_hooks: dict[str, _ActivationHook] = {}
        if cfg.act_bits is not None:
            # After the float copy and the grouping (a hook per layer would give q/k/v distinct input
            # tensors): from here on the quantized stream reads Q_a(input) in every quantized layer,
            # its captured Xt included, and so does the model when it is evaluated.
            names = [g for group in groups for g in group]
            pairs = _activation_hooks(qblock, names, cfg.act_bits, cfg.act_granularity)
            result.activation_hooks += [h for h, _ in pairs]
            act_hooks = {n: hk for n, (_, hk) in zip(names, pairs, strict=True)}
        mods = dict(qblock.named_modules())
        attention = boa_attention_module(qblock, name) if boa else None
        qkv = {attention.layer(i) for i in range(3)} if attention is not None else set()
        for group in groups:
            t0 = time.perf_counter()
            if attention is not None and qkv & set(group):
                done = _quantize_boa_group(cfg, qblock, attention, name, group, q_in, lam, counter)
                for layer in group:
                    summary, layer_lam = done[layer]
                    result.layers.append(record(layer=f"{name}.{layer}", shape=tuple(mods[layer].weight.shape),
                                                lam=layer_lam, seconds=(time.perf_counter() - t0) / len(group),
                                                summary=summary))
                if progress is not None:
                    progress(f"{cfg.name}: {name}: {', '.join(group)} (BoA)")
                continue
            # AQAS: one scale vector for the group, set before its data are captured, so that X and Xt
            # below are the scaled problem's X S^-1 and Q_a(Xt S^-1), and the weights become W S.
            aq = _aqas_group(cfg, qblock, fblock if two_streams else None, group, act_hooks, q_in,
                             counter) if cfg.aqas else None
            X, Xt, cert_fn = _group_data(cfg, backend, qblock, fblock, group[0], q_in, f_in, counter)
            weights = [backend.weights(mods[g]) for g in group]
            if aq is not None:
                weights = [aq.scale(w) for w in weights]
            # Incoherence mixes rows: quantize each layer on its own there, else stack the rows.
            parts = [[i] for i in range(len(group))] if spec.incoherence else [list(range(len(group)))]
            for part in parts:
                W_part = backend.stack([weights[i] for i in part])
                pre = _magr_preprocess(cfg, W_part, Xt) if spec.preprocess == "magr" else None
                run = run_setting(cfg, W_part if pre is None else pre.V, X, Xt, lam, seed)
                cert = cert_fn(run, p)
                Q = torch.atleast_2d(torch.as_tensor(run.Q))
                start = 0
                for i in part:
                    layer = group[i]
                    n = weights[i].shape[0]
                    mod = mods[layer]
                    rows = slice(start, start + n)
                    with torch.no_grad():
                        mod.weight.copy_(Q[rows].to(device=mod.weight.device, dtype=mod.weight.dtype))
                    if on_layer is not None:
                        on_layer(f"{name}.{layer}", run, rows, [f"{name}.{g}" for g in group])
                    summary = summarize_certificate(cert, rows)
                    if getattr(run, "kept", None) is not None:  # OWQ: kept columns, bits per weight
                        summary.update(kept_columns=run.keep, effective_bits=run.effective_bits)
                    if pre is not None:
                        _add_magr_summary(summary, pre, run, cert, rows)
                    if run.notes:
                        summary["notes"] = list(run.notes)
                    if aq is not None:
                        lo = sum(weights[k].shape[0] for k in range(i))
                        summary["aqas"] = aq.summary(slice(lo, lo + n), [f"{name}.{g}" for g in group])
                    result.layers.append(record(
                        layer=f"{name}.{layer}", shape=tuple(weights[i].shape), lam=float(run.lam),
                        seconds=(time.perf_counter() - t0) / len(group), summary=summary))
                    start += n
            if aq is not None and aq.handle is not None:
                aq.handle.remove()  # the float copy's next group reads its input unscaled
            if progress is not None:
                progress(f"{cfg.name}: {name}: {', '.join(group)}")
        q_in = q_in.with_hidden(_block_outputs(qblock, q_in, counter))
        if f_in is not None:  # two streams
            f_in = f_in.with_hidden(_block_outputs(fblock, f_in, counter))
        del fblock
        source.release(b, qblock)
    result.block_forwards = counter.calls
    result.seconds = time.perf_counter() - t_start
    if work.type == "cuda":
        result.peak_device_bytes = int(torch.cuda.max_memory_allocated(work))
    return result
