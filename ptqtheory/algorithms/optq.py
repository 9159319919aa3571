r"""A2 / A2' / A2s: OPTQ (= GPTQ), its paper iteration, its fast blocked form, stochastic variant."""

from __future__ import annotations

from ..alphabets import Alphabet
from ..engine import Method, Order, Rounding, Trace, check_method, optq_blocked
from ..grids import Grid
from ..random import SeedLike
from ..records import Run
from ._engine import finish, optq_iteration, setup


def optq(
    W, X, lam=0.0, grid: Grid | Alphabet | None = None, rounding: Rounding = "nearest",
    order: Order = "natural",
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
        Required. A min-max grid's groups are refitted as the run reaches them (:meth:`Grid.minmax`).
    rounding : {"nearest", "stochastic"}
        ``"stochastic"`` is A2s and needs ``seed``.
    order : {"natural", "decreasing_norm", "increasing_norm", "min_pivot", "random"} or array_like
        ``"random"`` needs ``seed``; or a permutation.
    seed : int or numpy Generator, optional
    block_size : int
        Lazy-update width of the blocked form (any value >= 1).
    method : {"blocked", "iteration"}
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
    bs = check_method(method, block_size)
    s = setup(W, X, lam, grid, rounding, order, seed)
    rounder, trace = s.rounder(), Trace.empty(s.Wp)
    Wp = s.Wp.copy()
    if method == "iteration":
        assert s.Xp is not None  # setup factored H from it (it fails without X)
        optq_iteration(Wp, s.augmented(s.Xp), rounder, trace)
    else:
        assert bs is not None  # check_method gives the block size for method="blocked"
        optq_blocked(Wp, s.piv.L_T, rounder, trace, bs)
    return finish(s, trace, rounder, "optq", method, block_size=bs, method=method)


__all__ = ["optq"]
