r"""OWQ: outlier-aware weight quantization (Lee et al., AAAI 2024), as OPTQ with kept columns.

OWQ keeps the :math:`k` most *sensitive* input columns of a layer ("weak columns") in full precision
and quantizes the others with OPTQ, the kept columns placed **last** in the processing order so that
the error feedback of every quantized column flows into them:

.. math::
    \pi = (\text{the other columns, in the given order},\ \text{the kept columns, most sensitive first}),
    \qquad q_t = \begin{cases} Q(x_t) & t \notin K \\ x_t & t \in K\end{cases},\quad
    \eta_t = x_t - q_t,\quad w_{>t} \mathrel{-}= \eta_t L_{>t,t},

so :math:`\eta_t = 0` on the kept set :math:`K` and the kept weights are the *updated* weights
:math:`x_t = w_t - \sum_{s \notin K} \eta_s L_{ts}`, not the original ones. I2 then reads
:math:`\|X(w-q)\|^2 + \lambda\|w-q\|^2 = \sum_{t\notin K}\eta_t^2 D_t` and B1 becomes
:math:`\|X(w-q)\|^2 \le \frac14\sum_{t\notin K}\delta_t^2D_t - \lambda\|w-q\|^2`, where the pivots
:math:`D_t` of the quantized columns are at most those of :math:`H_{SS}` (:math:`S` the quantized
columns): the kept columns, placed after them, enlarge the span each pivot projects out. Statements
and proofs: docs/theory.md section 7 (OWQ), algebra checked by ``proofs_check/owq.py``.

**Sensitivity** (the authors' code, ``xvyaward/owq``, read, not copied): column :math:`j` scores

.. math:: s_j = H_{jj}\,\sum_i \big(W_{ij} - \mathrm{RTN}(W)_{ij}\big)^2,

with :math:`H_{jj} = \|X_j\|^2` (their :math:`H = \frac2m X^TX` undamped: the scale does not change the
ranking) and RTN on a per-row grid fitted to the whole of :math:`W`. ``sensitivity="diag"`` ranks by
:math:`H_{jj}` alone (their ``--no_frob_norm``).

**Grid.** A min-max grid (``pt.Grid.minmax(W, bits)``) is refitted per row to the columns that are
quantized (as the authors' code fits its quantizer to ``W[:, :n_nonout]`` after moving the weak columns
last); an explicit grid is used as given. With groups, groups are contiguous in processing order over
the quantized columns and refitted from the current weights (as for OPTQ); the last group ends where
the kept columns begin. The grid entries of kept columns in ``run.grid`` are not used.

**Effective bits.** :func:`effective_bits` counts what the authors' code budgets: a kept column costs
``fp_bits`` (16) instead of ``bits`` per weight, so :math:`b_{\mathrm{eff}} = b + k(16 - b)/N`; the
column indices and the grid's scales are not counted (pass ``index_bits`` to count the indices).
:func:`keep_for_bits` inverts it (rounded to the nearest integer, then up to even, as their code does).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._validate import as_matrix, as_weights, check_choice, is_exact, is_torch
from .engine import Method, Order, Rounder, Trace, check_method, optq_blocked
from .grids import Grid, MinMax, quantize_nearest
from .orders import resolve_order
from .random import SeedLike
from .records import Run

__all__ = ["DEFAULT_EXTRA_BITS", "OWQRun", "default_keep", "effective_bits", "keep_for_bits", "owq",
           "owq_sensitivity"]

DEFAULT_EXTRA_BITS = 0.1
"""Extra bits per weight the pipeline's ``owq`` method spends on kept columns (:func:`default_keep`).

The paper's setting is 0.01 (``--target_bit 3.01`` / ``4.01``) on LLaMA and OPT layers with
:math:`N \\ge 4096`, a handful of columns per layer; on MiniLM (:math:`N = 384`) 0.01 keeps none, so the
default here is 0.1 (at 4 bits 4 of 384 columns, 14 of 1536)."""

Sensitivity = Literal["owq", "diag"]
SENSITIVITIES: tuple[str, ...] = ("owq", "diag")


@dataclass(frozen=True, eq=False)
class OWQRun(Run):
    """A :class:`~ptqtheory.Run` of OWQ (``algorithm="owq"``) with the kept columns.

    Attributes
    ----------
    kept : ndarray of bool, shape (N,)
        Columns kept in full precision (original order): there ``Q`` is the updated weight ``x`` and
        ``eta`` is 0.
    sensitivity : ndarray, shape (N,)
        The score each column was ranked by (:func:`owq_sensitivity`).
    bits : int or None
        Bit width of the grid (``None`` for an explicit grid without a finite range).
    """

    kept: Any = None
    sensitivity: Any = None
    bits: int | None = None

    @property
    def keep(self) -> int:
        """Number of kept columns."""
        return int(np.count_nonzero(np.asarray(self.kept)))

    @property
    def effective_bits(self) -> float | None:
        """Bits per weight with the kept columns in fp16 (:func:`effective_bits`; ``None`` without ``bits``)."""
        if self.bits is None:
            return None
        return effective_bits(int(np.asarray(self.kept).shape[0]), self.keep, self.bits)


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f"{lo} <= {name} <= {hi}" if hi is not None else f"{name} >= {lo}"
        raise ValueError(f"{name} must satisfy {rng}; got {value}")
    return int(value)


def _check_bits_value(name: str, value) -> float:
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not number or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def effective_bits(N: int, keep: int, bits: int, *, fp_bits: int = 16, index_bits: int = 0) -> float:
    r"""Bits per weight of a layer with ``N`` input columns, ``keep`` of them in ``fp_bits``:

    .. math:: b_{\mathrm{eff}} = \frac{(N - k)\,b + k\,(b_{fp} + b_{idx}/n_{\text{rows}})}{N}
       \approx b + \frac{k\,(b_{fp} - b)}{N},

    the authors' convention (their ``--target_bit``) with ``index_bits=0``: a kept column replaces a
    quantized one, and neither the grid's scales nor the kept columns' indices are counted.
    ``index_bits`` adds that many bits per kept column *per weight of the column*, i.e. pass
    ``index_bits = 32 / n`` to count one 32-bit index per kept column of an ``n``-row layer.
    """
    N = _check_int("N", N, 1)
    keep = _check_int("keep", keep, 0, N)
    bits = _check_int("bits", bits, 1)
    fp_bits = _check_int("fp_bits", fp_bits, bits)
    idx = _check_bits_value("index_bits", index_bits)
    if idx < 0:
        raise ValueError(f"index_bits must be >= 0; got {idx}")
    return bits + keep * (fp_bits - bits + idx) / N


def keep_for_bits(N: int, bits: int, target_bits: float, *, fp_bits: int = 16, even: bool = True) -> int:
    r"""Kept columns for a target effective bit width: :math:`k = \mathrm{round}(N(b_t - b)/(b_{fp} - b))`,
    raised to the next even number when ``even`` (the authors' code does both), at most ``N``.

    The authors' ``--target_bit`` spreads the model-wide budget over layer types with fixed ratios; this is
    the per-layer form of the same rule (every layer at the target).
    """
    N = _check_int("N", N, 1)
    bits = _check_int("bits", bits, 1)
    fp_bits = _check_int("fp_bits", fp_bits, bits + 1)
    t = _check_bits_value("target_bits", target_bits)
    if not bits <= t <= fp_bits:
        raise ValueError(f"target_bits must lie in [bits, fp_bits] = [{bits}, {fp_bits}]; got {t}")
    if not isinstance(even, bool):
        raise TypeError(f"even must be a bool; got {even!r}")
    k = round(N * (t - bits) / (fp_bits - bits))
    if even and k % 2 == 1:
        k += 1
    return min(k, N)


def default_keep(N: int, bits: int) -> int:
    """The pipeline's kept columns for a layer with ``N`` inputs: :func:`keep_for_bits` at
    ``bits + DEFAULT_EXTRA_BITS``."""
    return keep_for_bits(N, bits, bits + DEFAULT_EXTRA_BITS)


def _host(a) -> np.ndarray:
    if is_torch(a):
        return a.detach().to("cpu").double().numpy()
    return np.asarray(a, dtype=float)


def _column_energy(X, N: int) -> np.ndarray:
    r""":math:`\|X_j\|^2` per column, float64 on the host (data or a torch accumulator's statistics)."""
    if is_torch(X):
        import torch

        if isinstance(X, torch.Tensor):
            if X.ndim != 2 or X.shape[1] != N:
                raise ValueError(f"X must have shape (m, {N}) (the layer computes X @ W.T); "
                                 f"got {tuple(X.shape)}")
            return _host((X.double() ** 2).sum(0))
        return _host(torch.diagonal(X.gram_X))  # TorchAccumulator: the diagonal of X^T X
    Xa = as_matrix("X", X, N)
    return np.einsum("ij,ij->j", Xa, Xa)


def _rtn_grid(grid: Grid, W: np.ndarray) -> tuple:
    """``(delta, zero, lo, hi)`` of the per-row RTN that ranks the columns (the authors fit a per-row
    quantizer to all of W, with no groups, whatever the run's grid); an explicit grid as given."""
    n, N = W.shape
    if grid.rule is not None:
        rule = MinMax(grid.rule.bits, grid.rule.sym, None)
        d, z = rule.fit(W)
        return (np.broadcast_to(d[:, None], (n, N)), np.broadcast_to(z[:, None], (n, N)), 0.0,
                float(2**rule.bits - 1))
    delta, zero, lo, hi = grid.views(n, N)
    return (np.asarray(delta, float), np.asarray(zero, float), np.asarray(lo, float), np.asarray(hi, float))


def owq_sensitivity(W, X, grid: Grid, sensitivity: Sensitivity = "owq") -> np.ndarray:
    r"""OWQ's column scores (float64, shape ``(N,)``): :math:`s_j = \|X_j\|^2\sum_i(W_{ij} -
    \mathrm{RTN}(W)_{ij})^2` (``"owq"``, the authors' default) or :math:`\|X_j\|^2` (``"diag"``).

    ``RTN`` rounds to nearest on a per-row min-max grid fitted to all of ``W`` with ``grid``'s bits and
    symmetry (no groups, as the authors' code), or on ``grid`` itself when it is an explicit grid.
    ``W`` and ``X`` may be numpy arrays or torch tensors (``X`` also a ``TorchAccumulator``).
    """
    check_choice("sensitivity", sensitivity, SENSITIVITIES)
    if not isinstance(grid, Grid):
        raise TypeError(f"grid must be a pt.Grid (e.g. pt.Grid.minmax(W, bits=4)); got {type(grid).__name__}")
    Wh = _host(W) if is_torch(W) else as_weights(W)[0]
    if is_exact(Wh):
        raise ValueError("OWQ runs in floating point: pass float arrays, not rationals")
    Wh = np.atleast_2d(np.asarray(Wh, dtype=float))
    energy = _column_energy(X, Wh.shape[1])
    if sensitivity == "diag":
        return energy
    delta, zero, lo, hi = _rtn_grid(grid, Wh)
    q, _ = quantize_nearest(Wh, delta, zero, lo, hi)
    return energy * np.sum((Wh - q) ** 2, axis=0)


def _choose(sens: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` columns of largest score, largest first (ties: the lower index first)."""
    return np.argsort(-sens, kind="stable")[:keep].astype(np.int64)


class _KeepRounder(Rounder):
    """The run's :class:`~ptqtheory.engine.Rounder` for steps ``t < nq``; steps ``t >= nq`` (the kept
    columns, last in processing order) return ``x_t`` itself, so :math:`\\eta_t = 0` there. Groups end
    at ``nq``: no group straddles the kept columns."""

    nq: int

    @classmethod
    def around(cls, inner: Rounder, nq: int) -> _KeepRounder:
        r = cls.__new__(cls)
        r.__dict__.update(inner.__dict__)  # the same arrays: refits and clip records are shared
        r.nq = nq
        return r

    def group_start(self, t: int) -> bool:
        return t < self.nq and super().group_start(t)

    def group_end(self, t: int) -> int:
        return min(super().group_end(t), self.nq)

    def __call__(self, t, x):
        if isinstance(t, int) and t >= self.nq:
            self.clipped[:, t] = False
            return x
        return super().__call__(t, x)


def _refit(grid: Grid, W, quantized: np.ndarray, torch_w: bool) -> Grid:
    """A per-row min-max grid refitted to the quantized columns (explicit or grouped grids: as given)."""
    if grid.rule is None or grid.rule.group_size is not None or quantized.size == 0:
        return grid
    if torch_w:
        import torch

        from .torch_backend import minmax_grid

        W2 = W if W.ndim == 2 else W[None, :]
        idx = torch.as_tensor(quantized, dtype=torch.int64, device=W2.device)
        return minmax_grid(W2.index_select(1, idx), bits=grid.rule.bits, sym=grid.rule.sym)
    W2 = np.atleast_2d(np.asarray(W, dtype=float))
    return Grid.minmax(W2[:, quantized], bits=grid.rule.bits, sym=grid.rule.sym)


def _grid_bits(grid: Grid) -> int | None:
    if grid.rule is not None:
        return grid.rule.bits
    lo, hi = np.asarray(grid.lo, float), np.asarray(grid.hi, float)
    if lo.size and hi.size and np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        return math.ceil(math.log2(float(np.max(hi - lo)) + 1))
    return None


def owq(
    W, X, lam=0.0, grid: Grid | None = None, keep: int = 0, order: Order = "natural", seed: SeedLike = None,
    block_size: int = 128, method: Method = "blocked", sensitivity: Sensitivity = "owq", *,
    factor_dtype=None, allow_tf32: bool = False,
) -> OWQRun:
    r"""OWQ (Lee et al., AAAI 2024): OPTQ with the ``keep`` most sensitive columns kept in full precision.

    With :math:`K` the ``keep`` columns of largest score :math:`s_j` (:func:`owq_sensitivity`) and the
    processing order :math:`\pi` = (the other columns in ``order``, then :math:`K`, largest score first),
    OPTQ (A2') runs over :math:`\pi` with :math:`H = X^TX + \lambda I`:

    .. math::
        x_t = w^{(t-1)}_t,\quad q_t = \begin{cases}Q(x_t) & t\notin K\\ x_t & t\in K\end{cases},\quad
        \eta_t = x_t - q_t,\quad w_{>t} \mathrel{-}= \eta_t L_{>t,t}.

    The kept weights absorb the feedback of every quantized column and are stored unrounded. Identity I2
    holds with :math:`\eta_t = 0` on :math:`K`; B1, B2 and B7 hold restricted to the quantized columns
    (docs/theory.md section 7, OWQ). :func:`ptqtheory.certify` checks both on every row.

    Parameters
    ----------
    W : array_like or torch.Tensor, shape (n, N) or (N,)
    X : array_like (m, N), torch.Tensor (m, N) or TorchAccumulator
    lam : float or Damping
        As for :func:`ptqtheory.optq` (the authors' code: ``Damping.percdamp(0.01)``).
    grid : Grid
        Required. A min-max grid without groups is refitted per row to the quantized columns (the
        authors' choice); with groups, the groups are refitted during the sweep (contiguous in
        processing order over the quantized columns); an explicit grid is used as given.
    keep : int
        Number of kept columns, ``0 <= keep <= N`` (:func:`keep_for_bits` for a target bit width).
        ``keep=0`` is OPTQ (the same bits); ``keep=N`` returns ``Q = W``.
    order : {"natural", "decreasing_norm", "increasing_norm", "random"} or array_like
        Order of the *quantized* columns (resolved on all columns, the kept ones then moved last);
        ``"decreasing_norm"`` is the authors' act-order. ``"min_pivot"`` is refused (it would order by
        pivots of columns that are not quantized).
    seed : int or numpy Generator, optional
        For ``order="random"`` only.
    block_size, method, factor_dtype, allow_tf32
        As for :func:`ptqtheory.optq` (the torch backend runs ``method="blocked"`` only).
    sensitivity : {"owq", "diag"}
        Column score (:func:`owq_sensitivity`).

    Returns
    -------
    OWQRun
        A :class:`~ptqtheory.Run` with ``algorithm="owq"``, ``kept``, ``sensitivity``, ``bits`` and
        ``effective_bits``. Rounding is to nearest (the paper's).

    References
    ----------
    Lee, Jin, Kim, Kim & Park, "OWQ: Outlier-Aware Weight Quantization for Efficient Fine-Tuning and
    Inference of Large Language Models", AAAI 2024 (arXiv 2306.02272); code ``xvyaward/owq``.
    """
    # -- every argument before any work
    if not isinstance(grid, Grid):
        raise TypeError("grid must be a pt.Grid, e.g. pt.Grid.minmax(W, bits=4); got "
                        f"{type(grid).__name__}")
    if isinstance(keep, bool) or not isinstance(keep, int | np.integer):
        raise TypeError(f"keep must be an int (the number of columns kept in full precision); got "
                        f"{type(keep).__name__} {keep!r}")
    check_choice("sensitivity", sensitivity, SENSITIVITIES)
    if isinstance(order, str) and order == "min_pivot":
        raise ValueError("order='min_pivot' is not available for OWQ (the pivots of the kept columns would "
                         "steer the order of the quantized ones); use 'natural', 'decreasing_norm', "
                         "'increasing_norm', 'random' or a permutation")
    torch_w = is_torch(W, X)
    bs = check_method(method, block_size, ("blocked",) if torch_w else ("blocked", "iteration"))
    if torch_w:
        from .torch_backend.device import as_weights as device_weights

        Wt, _ = device_weights(W)
        N = int(Wt.shape[1])
    else:
        if factor_dtype is not None or allow_tf32:
            raise ValueError("factor_dtype and allow_tf32 are options of the torch backend (torch tensor "
                             "inputs); the numpy backend computes in float64")
        Wn, _ = as_weights(W)
        if is_exact(Wn):
            raise ValueError("OWQ runs in floating point: pass float arrays, not rationals")
        N = Wn.shape[1]
    keep = int(keep)
    if not 0 <= keep <= N:
        raise ValueError(f"keep must satisfy 0 <= keep <= N = {N} (the number of input columns); got {keep}")
    # -- the kept columns and the processing order
    sens = owq_sensitivity(W, X, grid, sensitivity)
    kept_ids = _choose(sens, keep)
    kept = np.zeros(N, dtype=bool)
    kept[kept_ids] = True
    base = resolve_order(order, N, gram_diag=_column_energy(X, N), seed=seed)
    quantized = base[~kept[base]]
    perm = np.concatenate([quantized, kept_ids]).astype(np.int64)
    run_grid = _refit(grid, W, np.sort(quantized), torch_w)
    nq = N - keep
    if torch_w:
        run = _sweep_torch(W, X, lam, run_grid, perm, seed, bs, nq, factor_dtype, allow_tf32)
    else:
        run = _sweep_numpy(W, X, lam, run_grid, perm, seed, bs, method, nq)
    fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(Run)}
    fields["notes"] = (*run.notes, f"OWQ: {keep} of {N} columns kept in full precision ({sensitivity} score)")
    return OWQRun(**fields, kept=kept, sensitivity=sens, bits=_grid_bits(grid))


def _sweep_numpy(W, X, lam, grid, perm, seed, bs, method, nq) -> Run:
    from .algorithms._engine import finish, optq_iteration, setup

    s = setup(W, X, lam, grid, "nearest", perm, seed)
    rounder = _KeepRounder.around(s.rounder(), nq)
    trace = Trace.empty(s.Wp)
    Wp = s.Wp.copy()
    if method == "iteration":
        assert s.Xp is not None  # setup factored H from it
        optq_iteration(Wp, s.augmented(s.Xp), rounder, trace)
    else:
        optq_blocked(Wp, s.piv.L_T, rounder, trace, bs)
    return finish(s, trace, rounder, "owq", method, block_size=bs, method=method)


def _sweep_torch(W, X, lam, grid, perm, seed, bs, nq, factor_dtype, allow_tf32) -> Run:
    import torch

    from .torch_backend.device import tf32_guard, weights_device
    from .torch_backend.engine import finish, setup

    with tf32_guard(weights_device(W, X=X), allow_tf32) as tf32:
        s = setup(W, X, lam, grid, "nearest", perm, seed, factor="H",
                  factor_dtype=factor_dtype or torch.float64, tf32=tf32, algorithm="owq")
        rounder = _KeepRounder.around(s.rounder(), nq)
        trace = Trace.empty(s.Wp)
        optq_blocked(s.Wp.clone(), s.L_T(), rounder, trace, bs)
        run = finish(s, trace, rounder, "owq", "blocked", block_size=bs)
    return dataclasses.replace(run, method="blocked")
