r"""Brevitas as a peer: its GPTQ and its Qronos on one linear layer with a frozen grid.

The benchmark compares :func:`ptqtheory.optq` and :func:`ptqtheory.qronos` against Brevitas'
implementations on the same inputs, the same grid and the same damping. This module builds the
Brevitas side:

* :func:`frozen_minmax_layer` makes a ``brevitas.nn.QuantLinear`` whose per-output-channel asymmetric
  min-max grid is computed once from the original weights and then kept as parameters, and returns the
  same grid as a :class:`ptqtheory.Grid`;
* :func:`gptq` and :func:`qronos` run ``brevitas.graph.gptq.gptq_mode`` and
  ``brevitas.graph.gpfq.gpfq_mode`` (with ``brevitas.graph.qronos.Qronos``) on that layer and return the
  dequantized weights.

Conventions are ptqtheory's: ``W`` is ``(n, N)`` (``nn.Linear.weight``), ``X`` and ``Xt`` are ``(m, N)``
and the layer computes ``X @ W.T``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

import ptqtheory as pt

try:  # Brevitas is an optional peer, not a dependency of ptqtheory.
    from brevitas.core.zero_point import ParameterFromStatsFromParameterZeroPoint
    from brevitas.graph.gpfq import gpfq_mode
    from brevitas.graph.gptq import gptq_mode
    from brevitas.graph.qronos import Qronos
    from brevitas.graph.utils import power_iteration
    from brevitas.nn import QuantLinear
    from brevitas.quant.shifted_scaled_int import ShiftedUint8WeightPerChannelFloat

    _IMPORT_ERROR: ImportError | None = None
except ImportError as exc:  # pragma: no cover - depends on the environment
    _IMPORT_ERROR = exc
    Qronos = object  # so that the subclass below can still be defined

__all__ = [
    "available", "blocks_for", "codes", "frozen_minmax_layer", "gptq", "layer_grid", "qronos", "qronos_lam",
    "rtn_mismatches",
]

#: Power-iteration steps Brevitas' Qronos uses to estimate the largest eigenvalue of its H.
POWER_STEPS = 30


def available() -> bool:
    """Whether Brevitas can be imported.

    Returns
    -------
    bool
        ``True`` when the Brevitas peer can run.
    """
    return _IMPORT_ERROR is None


def _require() -> None:
    if _IMPORT_ERROR is not None:
        raise ImportError(f"brevitas is not importable: {_IMPORT_ERROR}")


# -- the layer and its frozen grid -------------------------------------------------------------------


def _frozen_minmax_quant(bits: int):
    """Brevitas' per-channel asymmetric min-max weight quantizer, with scale and zero point frozen.

    ``ShiftedUint8WeightPerChannelFloat`` (unsigned integers ``[0, 2**bits - 1]``, float scale per
    output channel, integer zero point per output channel, scale from the min-max range and zero point
    from the negative minimum) recomputes both from the *current* weights at every call
    (``StatsFromParameterScaling`` / ``StatsFromParameterZeroPoint``). Overriding
    ``scaling_impl_type="parameter_from_stats"`` and ``zero_point_impl=ParameterFromStatsFromParameter-
    ZeroPoint`` initializes the same statistics once, at the first call, and stores them as
    parameters, so later weight updates do not move the grid.
    """
    return ShiftedUint8WeightPerChannelFloat.let(
        bit_width=bits,
        scaling_impl_type="parameter_from_stats",
        zero_point_impl=ParameterFromStatsFromParameterZeroPoint,
    )


def layer_grid(layer: nn.Module, bits: int) -> pt.Grid:
    """The grid of ``layer``'s weight quantizer in ptqtheory's terms (read back from Brevitas).

    Parameters
    ----------
    layer : brevitas.nn.QuantLinear
        Per-output-channel asymmetric weight quantizer.
    bits : int
        Its bit width.

    Returns
    -------
    ptqtheory.Grid
        ``Grid(delta=scale, zero=zero_point, lo=0, hi=2**bits - 1)`` with one value per row.
    """
    qw = layer.quant_weight()
    scale = qw.scale.detach().to(torch.float64).reshape(-1).cpu().numpy()
    zero = qw.zero_point.detach().to(torch.float64).reshape(-1).cpu().numpy()
    return pt.Grid(delta=scale, zero=zero, lo=0, hi=2**bits - 1)


def frozen_minmax_layer(W: torch.Tensor, bits: int) -> tuple[nn.Module, pt.Grid]:
    """A Brevitas ``QuantLinear`` holding ``W`` with a frozen per-row min-max grid, and that grid.

    Parameters
    ----------
    W : torch.Tensor, shape (n, N)
        Weights (stored as float32).
    bits : int
        Bit width; integer codes range over ``[0, 2**bits - 1]``.

    Returns
    -------
    layer : brevitas.nn.QuantLinear
        ``bias=False``; its weight quantizer (see :func:`_frozen_minmax_quant`) was initialized from
        ``W`` by one call of ``quant_weight``, after which scale and zero point are parameters.
    grid : ptqtheory.Grid
        ``Grid(delta=scale, zero=zero_point, lo=0, hi=2**bits - 1)`` per row, read back from
        ``layer.quant_weight()`` (float64 copies of Brevitas' float32 values).
    """
    _require()
    W = torch.as_tensor(W).detach().to(torch.float32)
    n, N = W.shape
    layer = QuantLinear(N, n, bias=False, weight_quant=_frozen_minmax_quant(bits))
    with torch.no_grad():
        layer.weight.copy_(W)
        grid = layer_grid(layer, bits)  # first call: initializes (freezes) scale and zero point
    return layer, grid


def rtn_mismatches(layer: nn.Module, grid: pt.Grid) -> int:
    """Entries where Brevitas' quantized weight differs from ``grid.round`` of the layer's weight.

    Brevitas rounds half to even in float32, ptqtheory rounds half up in float64, so only entries within
    float32 rounding of a tie may differ.

    Parameters
    ----------
    layer : brevitas.nn.QuantLinear
    grid : ptqtheory.Grid

    Returns
    -------
    int
        Number of mismatching entries.
    """
    with torch.no_grad():
        Qb = layer.quant_weight().value.detach().to(torch.float64).cpu().numpy()
        W = layer.weight.detach().to(torch.float64).cpu().numpy()
    Qp, _ = grid.round(W)
    return int(np.sum(codes(Qb, grid) != codes(Qp, grid)))


def codes(Q, grid: pt.Grid) -> np.ndarray:
    """Integer codes ``round(Q / delta + zero)`` of grid points ``Q`` (per-row grid).

    Parameters
    ----------
    Q : array_like or torch.Tensor, shape (n, N)
    grid : ptqtheory.Grid

    Returns
    -------
    numpy.ndarray of int64
    """
    if isinstance(Q, torch.Tensor):
        Q = Q.detach().to(torch.float64).cpu().numpy()
    Q = np.asarray(Q, dtype=np.float64)
    delta = grid.delta.reshape(-1, 1)
    zero = grid.zero.reshape(-1, 1)
    return np.rint(Q / delta + zero).astype(np.int64)


# -- driving Brevitas' GPxQ modes --------------------------------------------------------------------


def blocks_for(N: int, block_size: int) -> int:
    """Brevitas' ``num_blocks`` that gives its ``blocksize = ceil(N / num_blocks)`` equal to ``block_size``.

    Parameters
    ----------
    N : int
        Columns of the layer.
    block_size : int
        Wanted block width (clipped to ``N``).

    Returns
    -------
    int

    Raises
    ------
    ValueError
        If no ``num_blocks`` gives exactly that block width.
    """
    target = min(block_size, N)
    for num_blocks in range(math.ceil(N / target), N + 1):
        width = math.ceil(N / num_blocks)
        if width == target:
            return num_blocks
        if width < target:
            break
    raise ValueError(f"no num_blocks gives Brevitas blocksize {target} for N={N}")


class _OneLayer(nn.Module):
    """A model around one quantized layer that feeds ``Xt`` to the quantized pass and ``X`` to the float one.

    Brevitas' mismatch algorithms (``gpfq_mode``) run every batch twice: first with weight quantization
    enabled (the input is taken as the quantized model's, :math:`\\tilde X`), then with it disabled
    (the float model's, :math:`X`). For a single layer both passes would see the same model input, so
    this wrapper takes both and routes by the layer's quantization state. With ``xt=None`` (GPTQ) it
    always feeds ``x``.
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor, xt: torch.Tensor | None = None) -> torch.Tensor:
        if xt is not None and self.layer.weight_quant.is_quant_enabled:
            return self.layer(xt)
        return self.layer(x)


def _batches(m: int, batch_rows: int) -> Iterator[slice]:
    for start in range(0, m, batch_rows):
        yield slice(start, min(start + batch_rows, m))


def _as_f32(a) -> torch.Tensor:
    return torch.as_tensor(a).detach().to(torch.float32)


def _result(layer: nn.Module) -> torch.Tensor:
    """The dequantized weights of ``layer`` with its (updated) float weights, shape (n, N)."""
    with torch.no_grad():
        return layer.quant_weight().value.detach().clone()


def gptq(
    layer: nn.Module,
    X: torch.Tensor,
    percdamp: float = 0.01,
    block_size: int = 128,
    batch_rows: int = 2048,
    *,
    dtype: torch.dtype = torch.float32,
    inplace: bool = False,
) -> torch.Tensor:
    r"""Brevitas' GPTQ (``gptq_mode``) on one layer; the quantized weights.

    Brevitas accumulates :math:`H_B = \frac{2}{m} X^TX` (in ``dtype``) from forward pre-hooks, adds
    ``percdamp * mean(diag H_B)`` to its diagonal and runs the blocked GPTQ sweep in natural order.
    That is the problem of ``pt.optq(W, X, lam=pt.Damping.percdamp(percdamp), ...)`` scaled by
    :math:`2/m`, to which GPTQ is invariant.

    Parameters
    ----------
    layer : brevitas.nn.QuantLinear
        From :func:`frozen_minmax_layer`.
    X : torch.Tensor, shape (m, N)
        Calibration inputs, fed in batches of ``batch_rows`` rows (as float32).
    percdamp : float
        Brevitas' (and GPTQ's) relative damping.
    block_size : int
        Lazy-update block width; Brevitas' ``num_blocks`` is chosen by :func:`blocks_for`.
    batch_rows : int
        Rows per forward pass.
    dtype : torch.dtype
        Brevitas' buffer dtype for :math:`H` (its default is float32).
    inplace : bool
        Update ``layer`` itself; by default a deep copy is quantized and ``layer`` is left unchanged.

    Returns
    -------
    torch.Tensor, shape (n, N)
        Dequantized weights (float32 grid points).
    """
    _require()
    layer = layer if inplace else copy.deepcopy(layer)
    X = _as_f32(X)
    model = _OneLayer(layer).eval()
    num_blocks = blocks_for(layer.in_features, block_size)
    with torch.no_grad():
        mode = gptq_mode(model, use_quant_activations=False, act_order=False,
                         num_blocks=num_blocks, dtype=dtype)
        with mode:
            for rows in _batches(X.shape[0], batch_rows):
                mode.model(X[rows])
            _update(mode, percdamp=percdamp)
    return _result(layer)


def _update(mode, **kwargs) -> None:
    """``mode.update()`` with keyword arguments for ``single_layer_update`` (Brevitas passes none)."""
    for name in list(mode.current_layer.layer_names):
        mode.gpxq_layers[name].single_layer_update(**kwargs)
        mode.hook_dict[name].remove()
    mode.current_layer.layer_names.clear()


class _DampedQronos(Qronos):
    """Brevitas' ``Qronos`` with its damping chosen (and recorded) just before the update.

    Brevitas damps with ``alpha * power_iteration(H, 30)``; with ``percdamp`` given, ``alpha`` is set to
    ``percdamp * mean(diag H) / power_iteration(H, 30)`` so that the damping is GPTQ-style. The
    absolute damping in ptqtheory's units (``m`` times Brevitas') is written to ``record["lam"]``.
    """

    def __init__(self, *args, percdamp: float | None = None, record: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.percdamp = percdamp
        self.record = {} if record is None else record

    def single_layer_update(self, *args, **kwargs):
        H = self.H[0]
        lam_max = power_iteration(H, POWER_STEPS)
        if self.percdamp is not None:
            self.alpha = float(self.percdamp * torch.mean(torch.diag(H)) / lam_max)
        self.record["damp"] = float(self.alpha * lam_max)
        self.record["lam"] = self.record["damp"] * self.nsamples
        self.record["alpha"] = float(self.alpha)
        self.record["nsamples"] = int(self.nsamples)
        return super().single_layer_update(*args, **kwargs)


def qronos(
    layer: nn.Module,
    X: torch.Tensor,
    Xt: torch.Tensor,
    percdamp: float | None = None,
    block_size: int = 128,
    batch_rows: int = 2048,
    *,
    alpha: float = 1e-6,
    dtype: torch.dtype = torch.float32,
    inplace: bool = False,
    record: dict | None = None,
) -> torch.Tensor:
    r"""Brevitas' Qronos (``gpfq_mode`` with ``Qronos``) on one layer, fed ``X`` and ``Xt`` explicitly.

    What Brevitas computes, in ptqtheory's notation (:math:`w` a row of ``W``, :math:`\tilde H =
    \tilde X^T\tilde X`, :math:`\mu` Brevitas' damping; Brevitas' buffers are these over :math:`m`):

    * Statistics: :math:`H_B = \tilde X^T\tilde X/m` from the quantized pass and
      :math:`G_B = X^T\tilde X/m` from the float pass (``dtype``, default float32). The quantized
      model's inputs are fed by :class:`_OneLayer`: the pass with weight quantization enabled gets
      ``Xt``, the pass with it disabled gets ``X``.
    * Damping: :math:`\mu = \alpha\,\hat\lambda_{max}(H_B)` (30 power-iteration steps, seed 42,
      default :math:`\alpha = 10^{-6}`), i.e. ``lam`` :math:`= m\mu \approx \alpha\lambda_{max}(\tilde X^T
      \tilde X)` in ptqtheory's units -- not ``percdamp``. With ``percdamp`` given, :math:`\alpha` is set
      so that :math:`\mu = \text{percdamp}\cdot\mathrm{mean}\,\mathrm{diag}(H_B)`, i.e.
      ``lam = percdamp * mean(diag(Xt^T Xt))`` (of :math:`\tilde X`, whereas ``pt.Damping.percdamp``
      resolves against :math:`X^TX`; pass the absolute value). The same :math:`\mu` is used for the
      least-squares step and the sweep; Brevitas has no separate damping of :math:`G`.
    * Step 1 (start :math:`w^{(0)} = w`, *undamped*):
      :math:`y_1 = (\tilde x_1^T X w - \tilde H_{1,>1} w_{>1}) / \tilde H_{11}`, :math:`q_1 = Q(y_1)`.
      ptqtheory's A4 (``variant="paper", start="w"``) uses the damped
      :math:`y_1 = (\tilde x_1^T X w + \lambda w_1 - \tilde H_{1,>1}w_{>1})/(\tilde H_{11}+\lambda)`;
      the two agree up to :math:`\lambda(w_1 - y_1)/(\tilde H_{11}+\lambda)`, negligible for Brevitas'
      default :math:`\alpha` but not for ``percdamp=0.01``.
    * Step 2: :math:`w_{>1} = (\tilde H_{>1,>1}+\lambda I)^{-1}(\tilde X_{>1}^T X w + \lambda w_{>1}
      - \tilde H_{>1,1}q_1)`, the damped least-squares fit, exactly A4's (with
      :math:`G = \tilde X^TX + \lambda I`).
    * Steps :math:`t \ge 2`: GPTQ's blocked sweep with the upper Cholesky factor of
      :math:`(\tilde H_{>1,>1}+\lambda I)^{-1}` (from :math:`(\tilde H+\lambda I)^{-1}` by a Schur
      complement), blocks of ``block_size`` starting at column 2 -- A4's OPTQ sweep on :math:`\tilde H`.

    So Brevitas' Qronos is ``pt.qronos(W, X, Xt, lam=record["lam"], grid=g, variant="paper",
    start="w")`` except for the undamped first step.

    Parameters
    ----------
    layer : brevitas.nn.QuantLinear
        From :func:`frozen_minmax_layer`.
    X, Xt : torch.Tensor, shape (m, N)
        Float-model and quantized-model inputs, row for row the same samples (fed as float32).
    percdamp : float, optional
        GPTQ-style damping relative to :math:`\mathrm{mean\,diag}(\tilde X^T\tilde X)`; ``None`` keeps
        Brevitas' ``alpha`` convention.
    block_size, batch_rows, dtype, inplace :
        As for :func:`gptq`.
    alpha : float
        Brevitas' damping relative to the estimated largest eigenvalue (used when ``percdamp`` is None).
    record : dict, optional
        Receives ``lam`` (absolute damping in ptqtheory's units), ``damp``, ``alpha`` and ``nsamples``.

    Returns
    -------
    torch.Tensor, shape (n, N)
        Dequantized weights (float32 grid points).
    """
    _require()
    layer = layer if inplace else copy.deepcopy(layer)
    X, Xt = _as_f32(X), _as_f32(Xt)
    if X.shape != Xt.shape:
        raise ValueError(f"X and Xt must have the same shape; got {tuple(X.shape)} and {tuple(Xt.shape)}")
    record = {} if record is None else record
    model = _OneLayer(layer).eval()
    impl = _qronos_factory(blocks_for(layer.in_features, block_size), alpha, percdamp, record)
    with torch.no_grad():
        mode = gpfq_mode(model, use_quant_activations=False, act_order=False, algorithm_impl=impl,
                         dtype=dtype)
        with mode:
            for rows in _batches(X.shape[0], batch_rows):
                mode.model(X[rows], Xt[rows])
            mode.update()
    return _result(layer)


def _qronos_factory(num_blocks: int, alpha: float, percdamp: float | None, record: dict):
    """The ``algorithm_impl`` for ``gpfq_mode``: :class:`_DampedQronos` with our settings bound."""

    def make(**kwargs):
        return _DampedQronos(num_blocks=num_blocks, alpha=alpha, percdamp=percdamp, record=record, **kwargs)

    return make


def qronos_lam(Xt, alpha: float = 1e-6, percdamp: float | None = None) -> float:
    r"""The absolute damping ``lam`` (ptqtheory's units) that :func:`qronos` will use, from ``Xt``.

    ``percdamp * mean(diag(Xt^T Xt))`` when ``percdamp`` is given, else
    ``alpha * m * power_iteration(Xt^T Xt / m, 30)`` as Brevitas estimates it (float64 here; Brevitas'
    own float32 value is in ``record["lam"]`` of :func:`qronos`).

    Parameters
    ----------
    Xt : array_like or torch.Tensor, shape (m, N)
    alpha : float
    percdamp : float, optional

    Returns
    -------
    float
    """
    Xt = torch.as_tensor(Xt).detach().to(torch.float64)
    m = Xt.shape[0]
    H = Xt.T @ Xt
    if percdamp is not None:
        return float(percdamp * torch.mean(torch.diag(H)))
    _require()
    return float(alpha * m * power_iteration(H / m, POWER_STEPS))
