r"""The public algorithms: one signature each, the backend picked from the inputs' types.

numpy arrays (float64, or object arrays of rationals for exact runs) go to the numpy reference
(:mod:`ptqtheory.algorithms`); torch tensors or a :class:`~ptqtheory.torch_backend.TorchAccumulator`
go to :mod:`ptqtheory.torch_backend`. Everything is forwarded by keyword; the defaults are the same
for both backends. numpy next to torch in one call is refused with a ``TypeError`` naming the input.

The torch-only options are keyword-only: ``factor_dtype`` (precision of the factorization of
:math:`H`; ``None`` means float64, also for float32 weights) and ``allow_tf32`` (TF32 products on
CUDA during the call). The numpy backend computes in float64 or exactly and refuses them.
"""

from __future__ import annotations

from typing import Any

from ._validate import is_torch
from .engine import DeadColumns, Incoherence, Method, OrderName, Rounding, Start, Variant
from .grids import Grid
from .random import SeedLike
from .records import Run

__all__ = ["gpfq", "incoherence", "ldlq", "optq", "qronos", "random_orthogonal", "rtn"]

Order = OrderName | Any  # a name, or a permutation of range(N) (array_like)


def _forward(name: str, args: dict, inputs: tuple[str, ...], torch_only: tuple[str, ...]) -> Run:
    """Call algorithm ``name`` of the backend of ``args[inputs]`` with ``args`` (the caller's
    parameters, ``locals()``) by keyword; the ``torch_only`` options go to the torch backend alone."""
    if is_torch(*(args[k] for k in inputs)):
        from .torch_backend import algorithms as on_device

        return getattr(on_device, name)(**args)
    if args.get("factor_dtype") is not None or args.get("allow_tf32"):
        raise ValueError(
            "factor_dtype and allow_tf32 are options of the torch backend (torch tensor inputs); the "
            "numpy backend computes in float64 (or exactly, with rational inputs)"
        )
    from .algorithms.gpfq import gpfq as a5
    from .algorithms.ldlq import ldlq as a3
    from .algorithms.optq import optq as a2
    from .algorithms.qronos import qronos as a4
    from .algorithms.rtn import rtn as a1

    reference = {"rtn": a1, "optq": a2, "ldlq": a3, "qronos": a4, "gpfq": a5}[name]
    return reference(**{k: v for k, v in args.items() if k not in torch_only})


def optq(
    W, X, lam=0.0, grid: Grid | None = None, rounding: Rounding = "nearest", order: Order = "natural",
    seed: SeedLike = None, block_size: int = 128, method: Method = "blocked", *,
    factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""OPTQ / GPTQ (THEORY.md A2, A2', A2s).

    With :math:`\hat X = [X; \sqrt\lambda I]`, :math:`H = \hat X^T\hat X = X^TX + \lambda I` and the
    columns already permuted by ``order``, for :math:`t = 1..N`:

    .. math::
        x_t = w^{(t-1)}_t,\quad q_t = Q(x_t),\quad \eta_t = x_t - q_t,\quad
        w^{(t)}_{>t} = \arg\min_v \|\hat X_{\ge t} w^{(t-1)}_{\ge t} - \hat X_t q_t - \hat X_{>t} v\|^2
        = w^{(t-1)}_{>t} + \eta_t \hat X_{>t}^{+}\hat X_t .

    ``method="iteration"`` runs exactly this (one least-squares solve per step: the readable
    reference, numpy only, also in exact rationals). ``method="blocked"`` runs GPTQ's form
    :math:`w_{>t} \mathrel{-}= \eta_t L_{>t,t}` with lazy updates of width ``block_size``; the two
    agree up to float rounding for every block size, with groups too (THEORY.md T4).

    Parameters
    ----------
    W : array_like or torch.Tensor, shape (n, N) or (N,)
        Weights; rows are output channels (``nn.Linear.weight`` layout). For tensors the dtype
        (float32 or float64) is the working precision.
    X : array_like (m, N), torch.Tensor (m, N) or TorchAccumulator
        Calibration inputs (the layer output is ``X @ W.T``), or their statistics (torch).
    lam : float or Damping
        Damping :math:`\lambda \ge 0` (absolute), or a :class:`~ptqtheory.Damping` convention.
    grid : Grid
        Required. A min-max grid with groups is refitted from the current weights at the first
        column of each group (groups contiguous in processing order); see :meth:`Grid.minmax`.
    rounding : {"nearest", "stochastic"}
        ``"stochastic"`` is A2s and needs ``seed``.
    order : {"natural", "decreasing_norm", "increasing_norm", "min_pivot", "random"} or array_like
        ``"random"`` needs ``seed``; or a permutation.
    seed : int or numpy Generator, optional
    block_size : int
        Lazy-update width of the blocked form (any value >= 1).
    method : {"blocked", "iteration"}
        The torch backend runs ``"blocked"`` only.
    factor_dtype : torch.dtype, optional
        Torch only: precision of the Cholesky factorization of :math:`H` (default float64).
    allow_tf32 : bool
        Torch only: TF32 products on CUDA during this call (default off).

    Returns
    -------
    Run
        Certify it with :func:`ptqtheory.certify` (identity I2:
        :math:`\|X(w-q)\|^2 + \lambda\|w-q\|^2 = \sum_t \eta_t^2 D_t`).

    Raises
    ------
    SingularHessianError
        If :math:`H` is singular for this ``lam`` (the message says how to set it).

    References
    ----------
    Frantar et al., "GPTQ", arXiv 2210.17323; Zhang, Zhang, Colbert & Saab, arXiv 2508.04853.
    """
    return _forward("optq", locals(), ("W", "X"), ("factor_dtype", "allow_tf32"))



def ldlq(
    W, X, lam=0.0, grid: Grid | None = None, rounding: Rounding = "nearest", order: Order = "natural",
    seed: SeedLike = None, incoherence: Incoherence | None = None, *, block_size: int = 128,
    factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""LDLQ (THEORY.md A3): adaptive rounding with linear feedback from the LDL factor of ``H``.

    With :math:`H = (\mathring U + I) D (\mathring U + I)^T` (:math:`\mathring U` strictly upper),
    column by column

    .. math:: \hat W_k = Q\big(W_k + (W_{<k} - \hat W_{<k})\,\mathring U_{<k,k}\big).

    Since :math:`\mathring U + I = L^{-T}` and :math:`D_t = C_{tt}^{-2}`, LDLQ is OPTQ (same order
    and grid); identity I3: :math:`\operatorname{tr}((\hat W - W)H(\hat W - W)^T)
    = \sum_{rows}\sum_t \eta_t^2 D_t`. The numpy reference runs this recursion; the torch backend
    runs it as the blocked OPTQ sweep A2' of width ``block_size`` (``variant="blocked"``).

    Parameters
    ----------
    incoherence : {None, "kron", "hadamard"}
        Incoherence processing (A3i): quantize :math:`U W V^T` against :math:`V H V^T` with random
        orthogonal :math:`U, V` (needs ``seed``) and map back.
    block_size : int
        Torch only (the numpy reference has no blocks).

    Other parameters are as for :func:`ptqtheory.optq`.

    References
    ----------
    Chee, Cai, Kuleshov & De Sa, "QuIP", arXiv 2307.13304.
    """
    return _forward("ldlq", locals(), ("W", "X"), ("block_size", "factor_dtype", "allow_tf32"))



def qronos(
    W, X, Xt=None, lam=0.0, grid: Grid | None = None, rounding: Rounding = "nearest",
    order: Order = "natural", seed: SeedLike = None, variant: Variant = "paper", start: Start = "w",
    block_size: int = 128, method: Method = "blocked", *, factor_dtype=None, allow_tf32: bool = False,
) -> Run:
    r"""Qronos (THEORY.md A4 ``variant="paper"``, A4' ``variant="ls"``), which also corrects the error
    that comes from quantized inputs.

    With :math:`\hat X = [X; \sqrt\lambda I]`, :math:`\hat{\tilde X} = [\tilde X; \sqrt\lambda I]`,
    :math:`\tilde H = \tilde X^T\tilde X + \lambda I`, :math:`G = \tilde X^T X + \lambda I` and
    :math:`w_{LS} = \tilde H^{-1} G w` (the least-squares fit of :math:`\hat X w` by
    :math:`\hat{\tilde X}`). A4 (paper iteration), step 1 from the start iterate :math:`w^{(0)}`
    (``start="w"``: the weights; ``start="ls"``: :math:`w_{LS}`):

    .. math::
        y_1 = \frac{\hat{\tilde X}_1^T(\hat X w - \hat{\tilde X}_{>1} w^{(0)}_{>1})}
                   {\|\hat{\tilde X}_1\|^2},\quad q_1 = Q(y_1),\quad
        w^{(1)}_{>1} = \arg\min_v \|\hat X w - \hat{\tilde X}_1 q_1 - \hat{\tilde X}_{>1} v\|^2,

    then OPTQ (A2) on :math:`\tilde H` for :math:`t \ge 2`. Identity I5:
    :math:`\|Xw - \tilde Xq\|^2 + \lambda\|w-q\|^2 = \|r_0\|^2 + ((w_{LS})_1 - q_1)^2\tilde D_1
    + \sum_{t\ge2}\eta_t^2\tilde D_t`, :math:`r_0 = \hat Xw - \hat{\tilde X}w_{LS}`.

    A4' (least squares, then OPTQ): :math:`q = \mathrm{OPTQ}(w_{LS}; \tilde H)`; identity I4 with
    :math:`\sum_t \eta_t^2 \tilde D_t`. A4 from :math:`w_{LS}` equals A4'; both equal OPTQ when
    :math:`\tilde X = X`.

    Parameters
    ----------
    Xt : array_like or torch.Tensor, shape (m, N), optional
        Inputs of this layer in the partly quantized model, row for row the same samples as ``X``.
        Required whenever ``X`` is data (pass ``Xt=X`` when the inputs are not quantized): ``None``
        raises ``ValueError("Xt is required ...")`` on both backends. It is omitted only when ``X``
        is a ``TorchAccumulator(..., with_mismatch=True)``, which holds the statistics of both.
    variant : {"paper", "ls"}
    start : {"w", "ls"}
        Start iterate of the paper iteration (ignored by ``"ls"``).
    method : {"blocked", "iteration"}
        ``"iteration"`` solves every step by least squares on :math:`\hat{\tilde X}` (readable, exact
        in rationals; numpy only); ``"blocked"`` uses the factor of :math:`\tilde H` and GPTQ's lazy
        updates.

    Other parameters are as for :func:`ptqtheory.optq`.

    References
    ----------
    Zhang, Colbert & Saab, "Qronos", arXiv 2505.11695; Zhang, Zhang, Colbert & Saab, arXiv 2508.04853.
    """
    return _forward("qronos", locals(), ("W", "X", "Xt"), ("factor_dtype", "allow_tf32"))



def gpfq(
    W, X, Xt, grid: Grid | None = None, rounding: Rounding = "nearest", seed: SeedLike = None,
    order: Order = "natural", dead_columns: DeadColumns = "raise", *, allow_tf32: bool = False,
) -> Run:
    r"""GPFQ (THEORY.md A5): follow the output path, one column at a time.

    .. math::
        u_0 = 0,\quad q_t = Q\Big(\frac{\tilde X_t^T(u_{t-1} + w_t X_t)}{\|\tilde X_t\|^2}\Big),\quad
        u_t = u_{t-1} + w_t X_t - q_t \tilde X_t,

    so that :math:`u_N = Xw - \tilde X q` (identity I6). All rows run together; the state
    :math:`u` has shape ``(n, m)`` and is returned as ``run.residual``.

    Parameters
    ----------
    X, Xt : array_like or torch.Tensor, shape (m, N)
        Float-model and quantized-model inputs (pass ``Xt=X`` when they agree). GPFQ's state lives in
        :math:`\mathbb R^m`, so it needs the data (a ``TorchAccumulator`` is refused).
    dead_columns : {"raise", "round"}
        A column with :math:`\tilde X_t = 0` leaves the step undefined. ``"raise"`` refuses;
        ``"round"`` rounds :math:`w_t` itself there and records the columns in ``run.notes``.

    Other parameters are as for :func:`ptqtheory.optq`.

    Notes
    -----
    There is no damping in GPFQ (``run.lam`` is 0). The grid is used as fitted: GPFQ moves no
    weights, so min-max groups are not refitted.

    References
    ----------
    Lybrand & Saab, "A greedy algorithm for quantizing neural networks", JMLR 2021;
    Zhang & Saab, "SPFQ", arXiv 2309.10975.
    """
    return _forward("gpfq", locals(), ("W", "X", "Xt"), ("allow_tf32",))



def rtn(W, grid: Grid | None = None, rounding: Rounding = "nearest", seed: SeedLike = None, *,
        allow_tf32: bool = False) -> Run:
    r"""Round every weight independently (THEORY.md A1): :math:`q = Q(w)`.

    Parameters
    ----------
    W : array_like or torch.Tensor, shape (n, N) or (N,)
        Weights (rows are output channels).
    grid : Grid
        Required. Groups are taken as fitted (RTN moves no weights, so nothing is refitted).
    rounding : {"nearest", "stochastic"}
        Stochastic rounding needs ``seed`` (the same per-entry uniforms as the other algorithms).
    seed : int or numpy Generator, optional

    Returns
    -------
    Run
        With ``eta = w - q`` and ``x = w``.

    Notes
    -----
    Comparison bounds (THEORY.md): :math:`E\|X\eta\|^2 \le (\delta^2/4)\|X\|_F^2` (stochastic) and
    :math:`\|X\eta\|^2 \le \|X\|_{op}^2 N \delta^2/4` (nearest).
    """
    return _forward("rtn", locals(), ("W",), ("allow_tf32",))



def random_orthogonal(d: int, kind: Incoherence, rng):
    r"""A random orthogonal ``d x d`` matrix (A3i): ``"kron"`` (:math:`A \otimes B`, Haar factors) or
    ``"hadamard"`` (:math:`\mathrm{Had}_d\operatorname{diag}(\pm 1)/\sqrt d`, ``d`` a power of 2).

    ``rng`` is a numpy ``Generator`` (a numpy array is returned) or a ``torch.Generator`` (a float64
    tensor on the generator's device).
    """
    if is_torch(rng) or type(rng).__module__.startswith("torch"):
        from .torch_backend.incoherence import random_orthogonal as on_device

        return on_device(d, kind, rng, rng.device)
    from .algorithms.incoherence import random_orthogonal as reference

    return reference(d, kind, rng)


def incoherence(H) -> float:
    r""":math:`\mu(H) = \sqrt N \max_{ij} |Q_{ij}|` for the eigenvectors :math:`Q` of ``H`` (B11)."""
    from .algorithms.incoherence import incoherence as reference

    return reference(H)
