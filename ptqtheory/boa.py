r"""BoA: attention-aware quantization of the query, key and value projections, with its exact identity.

**Objective.** For one projection of one attention head (``W``: ``n x N``, its ``n = d_h`` rows are the
head's output channels) BoA minimizes a Kronecker-factored quadratic form of the error
:math:`E = W - Q`,

.. math:: \mathcal L(Q) = \operatorname{tr}\big(H_{out}\,E\,H_{in}\,E^T\big)
          = \operatorname{vec}(E)^T (H_{out}\otimes H_{in})\operatorname{vec}(E),

(``vec`` row-major), with :math:`H_{out} = X_{out}^TX_{out} + \lambda_{out}I` (``n x n``, couples the
head's output channels) and :math:`H_{in} = X_{in}^TX_{in} + \lambda_{in}I` (``N x N``). For an
attention block with input :math:`X` (tokens by features), head :math:`h`, probabilities
:math:`A_h` and projected queries and keys :math:`Q_h = XW_{q,h}^T + b`, :math:`K_h = XW_{k,h}^T + b`
(docs/theory.md section 7, "BoA"):

* value: :math:`\|A_hX\,E^T\|_F^2` is the error of the head's attention output, so
  :math:`X_{in} = A_hX` (per sequence) and :math:`H_{out} = I`;
* query: the error of the logits :math:`X E^T K_h^T` gives :math:`X_{in} = X`, :math:`X_{out} = K_h`;
* key: symmetrically :math:`X_{in} = X`, :math:`X_{out} = Q_h`.

Decoders (:func:`boa_attention` with ``n_kv_heads``, ``cos``, ``sin``, ``causal``): a key/value head
serving several query heads (grouped-query attention) sums their objectives (stacked :math:`Q_h`,
stacked :math:`A_hX`); with rotary embeddings the row factor is the Gram matrix of the rotated
keys/queries averaged over the positions, :math:`\frac1T\sum_tR_t^TGR_t` (:func:`rope_average`), a
Kronecker surrogate of the position-dependent logit error (docs/theory.md section 7, I7, "Decoders").

**Sweep.** Rows in the order ``order_out``; each row is swept as OPTQ does, column by column with
:math:`H_{in}` (error fed forward to the row's remaining columns, :math:`w_{>t} \mathrel{-}=
\eta_t L^{in}_{>t,t}`); when row :math:`r` is done, its whole error :math:`e_r = \eta_r L_{in}^T`
(:math:`= w_r^{start} - q_r`) is fed to every later row :math:`s` through :math:`H_{out}`:

.. math:: w_s \mathrel{-}= L^{out}_{sr}\, e_r \qquad (s > r),

with :math:`H = U_1DU_1^T`, :math:`L = U_1^{-T}` the factorization of docs/theory.md I1 for each
factor. This is the authors' order of operations (row sweep with the column factor, then one
rank-one row update with the row factor). It is OPTQ on :math:`\operatorname{vec}(W)` for
:math:`H_{out}\otimes H_{in}` in row-major order, so (**I7**, docs/theory.md)

.. math:: W - Q = L_{out}\,N\,L_{in}^T, \qquad
          \operatorname{tr}(H_{out}EH_{in}E^T) = \sum_{r,c}\eta_{rc}^2\,D^{out}_r D^{in}_c,

:math:`N` the matrix of the rounding errors :math:`\eta_{rc} = x_{rc} - q_{rc}` in processing order.
:func:`certify_boa` checks both from the data, independently of the sweep.

Choices where the paper's text was not available, following the authors' code (``SamsungLabs/BoA``,
``quantizers/boa.py`` and ``quantize.py``; read, not copied): the query's row factor is the key
outputs' Gram matrix and the key's is the queries' (after RoPE, averaged over positions, in RoPE
models); the column factor of query and key is the block input's Gram matrix; the value's column
factor is :math:`\sum (A_hX)^T(A_hX)` per head with no row factor (their ``block_v``); both factors
are damped by 1% of their mean diagonal; the grid is fitted once from the original weights (per
channel, min-max); the column and row orders are optional (their ``act_order_col``,
``act_order_row``: decreasing diagonal of the factor). See docs/methods.md, "BoA".

References
----------
Kim, Kim, Lee, Lee, Kwon, Kim & Kwon, "BoA: Attention-aware Post-training Quantization without
Backpropagation", ICML 2025 (arXiv 2406.13474).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validate import as_matrix, as_weights, check_choice
from .algorithms._engine import setup
from .calibration import Damping, _gram, resolve_lam
from .engine import Rounder, Trace, check_finite_run, check_method, check_options, optq_blocked
from .factor import SingularHessianError, pivots_from_data
from .grids import Grid
from .orders import columns_in, resolve_order
from .tolerances import RTOL_IDENTITY, allowance_unit, evaluation_allowance, identity_allowance

__all__ = ["AttentionBoA", "BoACertificate", "BoARun", "apply_rope", "attention_heads", "boa", "boa_attention",
           "certify_boa", "rope_average"]

ROW_ORDERS = ("natural", "decreasing_norm")


@dataclass(frozen=True, eq=False)
class BoARun:
    r"""One BoA sweep (one projection of one head): the quantized weights and what I7 reads.

    Attributes
    ----------
    W, Q : ndarray, shape (n, N)
        The weights and their quantized values, original order.
    eta, x : ndarray, shape (n, N)
        :math:`\eta_{rc} = x_{rc} - q_{rc}` and the value rounded at each step, original order.
    clipped : ndarray of bool, shape (n, N)
    order_in, order_out : ndarray of int
        Processing order of the columns (``order_in[t]`` is column ``t``'s original index) and rows.
    lam_in, lam_out : float
        Absolute damping inside :math:`H_{in}`, :math:`H_{out}` (``lam_out = 0`` when
        :math:`H_{out} = I`).
    L_in, D_in, L_out, D_out : ndarray
        The factors of I1 (:math:`H = L^{-T}\operatorname{diag}(D)L^{-1}` with ``L`` unit lower) of
        :math:`H_{in}` and :math:`H_{out}`, in processing order.
    identity_out : bool
        :math:`H_{out} = I` (no ``X_out``): the rows are independent and the sweep is OPTQ row by row.
    grid : Grid
    """

    W: np.ndarray
    Q: np.ndarray
    eta: np.ndarray
    x: np.ndarray
    clipped: np.ndarray
    order_in: np.ndarray
    order_out: np.ndarray
    lam_in: float
    lam_out: float
    L_in: np.ndarray
    D_in: np.ndarray
    L_out: np.ndarray
    D_out: np.ndarray
    identity_out: bool
    grid: Grid
    notes: tuple = field(default=())

    def certify(self, X_in, X_out=None) -> BoACertificate:
        """:func:`certify_boa` of this run."""
        return certify_boa(self, X_in, X_out)


@dataclass(frozen=True)
class BoACertificate:
    r"""I7 for one BoA run (one head's projection): both sides, their gap and its allowance.

    Attributes
    ----------
    lhs : float
        :math:`\operatorname{tr}(H_{out}EH_{in}E^T)` evaluated from the data,
        :math:`\|X_{out}EX_{in}^T\|_F^2 + \lambda_{in}\|X_{out}E\|_F^2 + \lambda_{out}\|EX_{in}^T\|_F^2
        + \lambda_{out}\lambda_{in}\|E\|_F^2` (:math:`X_{out} = I`, :math:`\lambda_{out} = 0` when
        :math:`H_{out} = I`).
    rhs : float
        :math:`\sum_{r,c}\eta_{rc}^2D^{out}_rD^{in}_c` from the run's :math:`\eta` and pivots.
    gap : float
        ``lhs - rhs``.
    atol : float
        Rounding allowance of the gap (:mod:`ptqtheory.tolerances`, E1-E2, as I2's): the structure
        allowance read through :math:`\|\hat X_{out}\|_F\|\hat X_{in}\|_F`, plus the evaluation of the
        two sums.
    structure_residual, structure_atol : float
        :math:`\|E - L_{out}NL_{in}^T\|_F` (processing order) and its allowance
        :math:`\epsilon(\|W\|_F + \|Q\|_F + \|L_{out}\|_F\|L_{in}\|_F\|N\|_F)`.
    err_out : float
        :math:`\|X_{out}EX_{in}^T\|_F` (the undamped objective's square root; for the value, the head's
        attention-output error on the calibration tokens).
    """

    lhs: float
    rhs: float
    gap: float
    atol: float
    structure_residual: float
    structure_atol: float
    err_out: float

    def holds(self, rtol: float = RTOL_IDENTITY) -> bool:
        r""":math:`|lhs - rhs| \le rtol\max(|lhs|,|rhs|) + atol` and the structure relation holds."""
        if isinstance(rtol, bool) or not isinstance(rtol, int | float) or not rtol >= 0:
            raise ValueError(f"rtol must be a real number >= 0; got {rtol!r}")
        ok = abs(self.gap) <= rtol * max(abs(self.lhs), abs(self.rhs)) + self.atol
        return bool(ok and self.structure_residual <= self.structure_atol * (1 + rtol))


def _row_order(order_out, n: int, diag) -> np.ndarray:
    if isinstance(order_out, str):
        check_choice("order_out", order_out, ROW_ORDERS)
    return resolve_order(order_out, n, gram_diag=diag)


def boa(W, X_in, X_out=None, lam_in=0.0, lam_out=0.0, grid: Grid | None = None, order_in="natural",
        order_out="natural", block_size: int = 128) -> BoARun:
    r"""BoA's sweep for :math:`H_{out}\otimes H_{in}` (see the module docstring; I7).

    Parameters
    ----------
    W : array_like, shape (n, N)
        One head's projection weights (rows: the head's output channels).
    X_in : array_like, shape (m, N)
        Data of the column factor, :math:`H_{in} = X_{in}^TX_{in} + \lambda_{in}I`.
    X_out : array_like, shape (p, n), optional
        Data of the row factor, :math:`H_{out} = X_{out}^TX_{out} + \lambda_{out}I`; ``None`` means
        :math:`H_{out} = I` (then ``lam_out`` must be 0 and the sweep is OPTQ row by row).
    lam_in, lam_out : float or Damping
        Damping of each factor (absolute, or a :class:`~ptqtheory.Damping` convention applied to that
        factor's Gram matrix; the authors use ``Damping.percdamp(0.01)`` for both).
    grid : Grid
        Required; the grid of ``W`` (e.g. ``pt.Grid.minmax(W, bits=4)``).
    order_in : {"natural", "decreasing_norm", "increasing_norm", "min_pivot"} or array_like
        Column order, as :func:`ptqtheory.optq`'s ``order`` (``"random"`` is not offered here).
    order_out : {"natural", "decreasing_norm"} or array_like
        Row order (``"decreasing_norm"``: decreasing diagonal of :math:`X_{out}^TX_{out}`, the
        authors' ``act_order_row``).
    block_size : int
        Lazy-update width of each row's sweep (as :func:`ptqtheory.optq`; any value gives A2 up to
        rounding, T4).

    Rounding is to the nearest grid point (the authors'); I7 holds for any rounding, so stochastic
    rounding would only need a seeded :class:`~ptqtheory.engine.Rounder`.

    Returns
    -------
    BoARun
        Certify it with :func:`certify_boa` (identity I7).

    Raises
    ------
    SingularHessianError
        If a factor is singular for its damping.
    """
    return _boa_heads([W], X_in, [X_out], lam_in, [lam_out], [grid], order_in, order_out, block_size)[0]


def _row_factor(X_out, lam_out, order_out, n: int):
    """``(order, L_out, D_out, lam_out)`` of one row factor (``X_out`` None: the identity)."""
    if X_out is None:
        if isinstance(lam_out, Damping) or lam_out != 0:
            raise ValueError("lam_out must be 0 when X_out is None (H_out = I); pass X_out to damp a row "
                             "factor")
        return _row_order(order_out, n, np.ones(n)), np.eye(n), np.ones(n), 0.0
    Xo = as_matrix("X_out", X_out, n)
    diag_o = np.einsum("ij,ij->j", Xo, Xo)
    gram_o = _gram(Xo) if isinstance(lam_out, Damping) and lam_out.needs_gram else diag_o
    lam_o, _ = resolve_lam(lam_out, gram_o)
    perm = _row_order(order_out, n, diag_o)
    piv = pivots_from_data(np.ascontiguousarray(Xo[:, perm]), lam_o, "H_out", perm)
    return perm, piv.L, np.asarray(piv.D, float), float(lam_o)


def _boa_heads(Ws: list, X_in, X_outs: list, lam_in, lam_outs: list, grids: list, order_in, order_out,
               block_size: int) -> list[BoARun]:
    r"""BoA on ``G`` weight matrices (heads) that share the column factor :math:`H_{in}` (the query's or
    key's heads share :math:`X^TX`), each with its own row factor. The heads are independent; they are
    swept together, step ``r`` of every head at once (as the authors' code does across heads), with the
    rows laid out as ``r * G + g`` so that the rows of one step are contiguous."""
    bs = check_method("blocked", block_size)
    assert bs is not None
    if isinstance(order_in, str) and order_in == "random":
        raise ValueError("order_in='random' is not offered by boa (no seed); pass a permutation instead")
    if X_in is None:
        raise ValueError("X_in is required: the data of the column factor H_in = X_in^T X_in + lam_in I")
    G = len(Ws)
    Wa = [as_weights(W)[0] for W in Ws]
    n, N = Wa[0].shape
    if any(W.shape != (n, N) for W in Wa):
        raise ValueError("the heads' weight matrices must have the same shape")
    rows = []
    for g in grids:
        check_options(g, "nearest", None, " or pt.Grid.minmax(W, bits=4)")
        rows.append(g.views(n, N))
    rules = {repr(g.rule) for g in grids}
    if len(rules) != 1:
        raise ValueError("the heads' grids must share one refit rule (e.g. all pt.Grid.minmax(..., bits=b))")
    factors = [_row_factor(Xo, lo, order_out, n) for Xo, lo in zip(X_outs, lam_outs, strict=True)]
    # row r * G + g of the stacked problem is row perm_g[r] of head g
    src = np.array([[g, int(factors[g][0][r])] for r in range(n) for g in range(G)])
    W_st = np.stack([Wa[g][i] for g, i in src])
    parts = [np.stack([np.broadcast_to(rows[g][k], (n, N))[i] for g, i in src]) for k in range(4)]
    grid_st = Grid.trusted(parts[0], parts[1], parts[2], parts[3], rule=grids[0].rule)
    s = setup(W_st, X_in, lam_in, grid_st, "nearest", order_in, None)
    if s.exact:
        raise ValueError("boa runs in float64; exact (rational) inputs are not supported")
    rounder = s.rounder()
    trace = Trace.empty(s.Wp)
    Wp = s.Wp.copy(order="F")
    L_T = s.piv.L_T
    if all(Xo is None for Xo in X_outs):  # H_out = I everywhere: the rows are independent, one OPTQ sweep
        optq_blocked(Wp, L_T, rounder, trace, bs)
    else:
        for r in range(n):
            step = slice(r * G, (r + 1) * G)
            # This step's views of the grid and the clip record (writes, e.g. group refits, reach the whole).
            one = Rounder(rounder.delta[step], rounder.zero[step], rounder.lo[step], rounder.hi[step],
                          rounder.rule, rounder.group_size is not None, "nearest", None, rounder.clipped[step])
            optq_blocked(Wp[step], L_T, one, Trace(trace.x[step], trace.q[step], trace.eta[step]), bs)
            if r + 1 < n:
                # each row's whole error w_r^start - q_r = L_in eta_r (the authors' Err @ U_col) ...
                E = trace.eta[step] @ L_T
                for g in range(G):  # ... fed to the head's later rows: w_s -= L_out[s, r] e_r
                    Wp[(r + 1) * G + g::G] -= np.outer(factors[g][1][r + 1:, r], E[g])
    check_finite_run(trace.x, trace.q, trace.eta, rounder.delta, rounder.zero, s.order, "boa")
    inv = np.argsort(s.order)
    out = []
    for g in range(G):
        perm, L_out, D_out, lam_o = factors[g]
        take = np.empty(n, dtype=np.int64)
        take[perm] = np.arange(n) * G + g  # original row i of head g <- stacked row

        def back(a, take=take):
            return np.array(columns_in(np.asarray(a)[take], inv))

        final = Grid.trusted(back(rounder.delta), back(rounder.zero), back(rounder.lo), back(rounder.hi),
                             rule=s.grid.rule)
        out.append(BoARun(W=Wa[g], Q=back(trace.q), eta=back(trace.eta), x=back(trace.x),
                          clipped=back(rounder.clipped), order_in=s.order, order_out=np.asarray(perm, np.int64),
                          lam_in=float(s.lam), lam_out=lam_o, L_in=s.piv.L, D_in=np.asarray(s.piv.D, float),
                          L_out=L_out, D_out=D_out, identity_out=X_outs[g] is None, grid=final,
                          notes=tuple(s.notes)))
    return out


def certify_boa(run: BoARun, X_in, X_out=None) -> BoACertificate:
    r"""Identity I7 for ``run``, from the data (independent of the sweep).

    Parameters
    ----------
    run : BoARun
    X_in, X_out : array_like
        The data the run was given (``X_out`` ``None`` exactly when the run had :math:`H_{out} = I`).
    """
    if not isinstance(run, BoARun):
        raise TypeError(f"run must be a BoARun (from pt.boa); got {type(run).__name__}")
    n, N = run.W.shape
    Xi = as_matrix("X_in", X_in, N)
    if (X_out is None) != run.identity_out:
        raise ValueError("X_out must be given exactly when the run was given one (None means H_out = I)")
    E = run.W - run.Q
    A = E @ Xi.T
    e_sq = float(np.sum(E * E))
    if X_out is None:
        out_sq = float(np.sum(A * A))
        lhs = out_sq + run.lam_in * e_sq
        xo_fro_sq = float(n)
    else:
        Xo = as_matrix("X_out", X_out, n)
        B = Xo @ A
        out_sq = float(np.sum(B * B))
        XoE = Xo @ E
        lhs = (out_sq + run.lam_in * float(np.sum(XoE * XoE)) + run.lam_out * float(np.sum(A * A))
               + run.lam_out * run.lam_in * e_sq)
        xo_fro_sq = float(np.sum(Xo * Xo)) + n * run.lam_out
    Np = run.eta[run.order_out][:, run.order_in]
    rhs = float(np.sum(Np * Np * run.D_out[:, None] * run.D_in[None, :]))
    Ep = E[run.order_out][:, run.order_in]
    structure = float(np.linalg.norm(Ep - run.L_out @ Np @ run.L_in.T))
    eps = allowance_unit()
    s_atol = eps * (np.linalg.norm(run.W) + np.linalg.norm(run.Q)
                    + np.linalg.norm(run.L_out) * np.linalg.norm(run.L_in) * np.linalg.norm(Np))
    scale = np.sqrt(xo_fro_sq) * np.sqrt(float(np.sum(Xi * Xi)) + N * run.lam_in)
    atol = float(identity_allowance(scale, s_atol, lhs, rhs)) + float(evaluation_allowance(eps, lhs + rhs))
    return BoACertificate(lhs=lhs, rhs=rhs, gap=lhs - rhs, atol=atol, structure_residual=structure,
                          structure_atol=float(s_atol), err_out=float(np.sqrt(out_sq)))


# -- the attention block ---------------------------------------------------------------------------


def _check_lengths(lengths, T: int) -> list[int]:
    if lengths is None:
        return [T]
    out = []
    for v in lengths:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"lengths must hold integers >= 1 (tokens per sequence); got {v!r}")
        out.append(int(v))
    if sum(out) != T:
        raise ValueError(f"lengths must sum to the number of rows of X ({T}); they sum to {sum(out)}")
    return out


def _bias(name: str, b, d: int) -> np.ndarray:
    if b is None:
        return np.zeros(d)
    arr = np.asarray(b, dtype=float)
    if arr.shape != (d,) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a finite vector of length {d} (one per output channel) or None")
    return arr


def _check_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    return int(v)


def _check_heads(W_q, W_k, W_v, d: int, n_heads,
                 n_kv_heads=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """``(W_q, W_k, W_v, head_dim, n_kv_heads)`` checked (grouped-query layout: ``W_k``, ``W_v`` have
    ``n_kv_heads * head_dim`` rows), or ``ValueError``."""
    n_heads = _check_int("n_heads", n_heads)
    n_kv = n_heads if n_kv_heads is None else _check_int("n_kv_heads", n_kv_heads)
    if n_heads % n_kv:
        raise ValueError(f"n_kv_heads={n_kv} must divide n_heads={n_heads} (each key/value head serves "
                         "n_heads // n_kv_heads query heads)")
    mats = []
    for name, M, heads in (("W_q", W_q, n_heads), ("W_k", W_k, n_kv), ("W_v", W_v, n_kv)):
        Ma = np.asarray(M, dtype=float)
        rows = "n_heads" if name == "W_q" else "n_kv_heads"
        if Ma.ndim != 2 or Ma.shape[1] != d:
            raise ValueError(f"{name} must have shape ({rows} * head_dim, {d}) (nn.Linear.weight layout); "
                             f"got {Ma.shape}")
        if Ma.shape[0] % heads:
            raise ValueError(f"{name} has {Ma.shape[0]} rows, not a multiple of {rows}={heads}")
        if not np.all(np.isfinite(Ma)):
            raise ValueError(f"{name} holds NaN or Inf")
        mats.append(Ma)
    dh = mats[0].shape[0] // n_heads
    if mats[1].shape != (n_kv * dh, d) or mats[2].shape != (n_kv * dh, d):
        raise ValueError(f"W_k and W_v must have shape (n_kv_heads * head_dim, d) = ({n_kv * dh}, {d}) with "
                         f"head_dim={dh} from W_q; got {mats[1].shape}, {mats[2].shape} (pass n_kv_heads for "
                         "grouped-query attention)")
    return mats[0], mats[1], mats[2], dh, n_kv


def _check_rope(cos, sin, T: int, dh: int) -> tuple[np.ndarray, np.ndarray] | None:
    if cos is None and sin is None:
        return None
    if cos is None or sin is None:
        raise ValueError("cos and sin go together (rotary position embeddings): pass both or neither")
    out = []
    for name, a in (("cos", cos), ("sin", sin)):
        arr = np.asarray(a, dtype=float)
        if arr.shape != (T, dh) or not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must be a finite (tokens, head_dim) = ({T}, {dh}) array, one row per row "
                             f"of X (the model's position_embeddings for each token); got shape {arr.shape}")
        out.append(arr)
    if dh % 2:
        raise ValueError(f"rotary position embeddings need an even head_dim; got {dh}")
    return out[0], out[1]


def _check_attention(X, W_q, W_k, W_v, n_heads, lengths, n_kv_heads=None, cos=None, sin=None):
    """``(X, W_q, W_k, W_v, head_dim, lengths, n_kv_heads, rope)`` checked and as float64 arrays
    (``rope``: ``(cos, sin)`` or ``None``), or ``ValueError``."""
    Xa = np.asarray(X, dtype=float)
    if Xa.ndim != 2 or not np.all(np.isfinite(Xa)):
        raise ValueError("X must be a finite (tokens, features) matrix")
    T, d = Xa.shape
    Wq, Wk, Wv, dh, n_kv = _check_heads(W_q, W_k, W_v, d, n_heads, n_kv_heads)
    return Xa, Wq, Wk, Wv, dh, _check_lengths(lengths, T), n_kv, _check_rope(cos, sin, T, dh)


def _rotate_half(Y: np.ndarray) -> np.ndarray:
    """:math:`JY` row-wise, :math:`J = [[0, -I], [I, 0]]` (Hugging Face's ``rotate_half``)."""
    half = Y.shape[-1] // 2
    return np.concatenate([-Y[..., half:], Y[..., :half]], axis=-1)


def apply_rope(Y, cos, sin) -> np.ndarray:
    r"""Rotary position embedding of the rows of ``Y`` (tokens by ``head_dim``), Hugging Face's convention:
    :math:`\tilde y_t = R_ty_t`, :math:`R_t = \operatorname{diag}(c_t) + \operatorname{diag}(s_t)J`,
    :math:`J = \begin{pmatrix}0&-I\\I&0\end{pmatrix}` (``y * cos + rotate_half(y) * sin``)."""
    Ya = np.asarray(Y, dtype=float)
    if Ya.ndim != 2 or not np.all(np.isfinite(Ya)):
        raise ValueError(f"Y must be a finite (tokens, head_dim) matrix; got shape {Ya.shape}")
    rope = _check_rope(cos, sin, *Ya.shape)
    if rope is None:
        raise ValueError("apply_rope needs cos and sin (the tokens' rotary embeddings)")
    return Ya * rope[0] + _rotate_half(Ya) * rope[1]


def rope_average(G, cos, sin) -> np.ndarray:
    r""":math:`\bar M = \frac1T\sum_{t=1}^T R_t^TGR_t`, the row factor's average over the tokens' positions.

    With :math:`R_t = C_t + S_tJ` (:func:`apply_rope`), :math:`C_t = \operatorname{diag}(c_t)`,
    :math:`S_t = \operatorname{diag}(s_t)`, the mean of :math:`C_tGS_t` is
    :math:`G\circ\overline{cs^T}` (Hadamard product with the mean outer product), so

    .. math:: \bar M = G\circ M_{cc} + (G\circ M_{cs})J + J^T(G\circ M_{cs})^T + J^T(G\circ M_{ss})J,

    :math:`M_{cc} = \frac1T\sum_tc_tc_t^T` etc.: :math:`O(Td^2 + d^3)`, never a matrix per token.

    Parameters
    ----------
    G : array_like, shape (head_dim, head_dim)
        Symmetric (a Gram matrix of rotated projections).
    cos, sin : array_like, shape (T, head_dim)
        The tokens' rotary embeddings (:func:`apply_rope`).
    """
    Ga = np.asarray(G, dtype=float)
    if Ga.ndim != 2 or Ga.shape[0] != Ga.shape[1] or not np.all(np.isfinite(Ga)):
        raise ValueError(f"G must be a finite square (head_dim, head_dim) matrix; got shape {Ga.shape}")
    if cos is not None and np.ndim(cos) != 2:
        raise ValueError(f"cos must be a (tokens, head_dim) array; got shape {np.shape(cos)}")
    rope = _check_rope(cos, sin, np.shape(cos)[0] if cos is not None else 0, Ga.shape[0])
    if rope is None:
        raise ValueError("rope_average needs cos and sin (the tokens' rotary embeddings)")
    c, s = rope
    T, d = c.shape
    if T == 0:
        raise ValueError("cos and sin have no rows: the average over positions needs at least one token")
    half = d // 2
    J = np.zeros((d, d))
    J[:half, half:], J[half:, :half] = -np.eye(half), np.eye(half)
    Mcc, Mcs, Mss = c.T @ c / T, c.T @ s / T, s.T @ s / T
    A = (Ga * Mcs) @ J  # the mean of C_t G S_t J; its transpose is the mean of J^T S_t G C_t
    return Ga * Mcc + A + A.T + J.T @ (Ga * Mss) @ J


def attention_heads(X, W_q, W_k, W_v, n_heads: int, lengths=None, b_q=None, b_k=None, b_v=None,
                    causal: bool = False, *, n_kv_heads: int | None = None, cos=None,
                    sin=None) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    r"""Multi-head attention outputs before the output projection, per head (the reference forward pass).

    Returns ``(O, A)``: ``O`` of shape ``(T, n_heads * head_dim)`` with query head ``h`` in columns
    ``h*head_dim:(h+1)*head_dim``, :math:`O_h = A_h(XW_{v,j}^T + b_{v,j})` per sequence with
    :math:`j = \lfloor h/(n_{heads}/n_{kv})\rfloor` its key/value head (grouped-query attention, Hugging
    Face's ``repeat_kv``), and ``A[h][b]`` the probabilities
    :math:`\operatorname{softmax}(\tilde Q_h\tilde K_j^T/\sqrt{d_h})` of sequence ``b`` (``causal``: each
    token sees itself and earlier tokens of its sequence), :math:`\tilde Q_h = R(XW_{q,h}^T + b_{q,h})`
    row by row with each token's rotary embedding (:func:`apply_rope`; none when ``cos``, ``sin`` are
    ``None``), likewise :math:`\tilde K_j`.
    """
    Xa, Wq, Wk, Wv, dh, L, n_kv, rope = _check_attention(X, W_q, W_k, W_v, n_heads, lengths, n_kv_heads,
                                                          cos, sin)
    bq = _bias("b_q", b_q, Wq.shape[0])
    bk, bv = (_bias(nm, b, Wk.shape[0]) for nm, b in (("b_k", b_k), ("b_v", b_v)))
    Qa, Ka = _projections(Xa, Wq, Wk, bq, bk, dh, rope)
    Va = Xa @ Wv.T + bv
    group = int(n_heads) // n_kv
    O = np.empty((Xa.shape[0], int(n_heads) * dh))
    A: list[list[np.ndarray]] = [[] for _ in range(int(n_heads))]
    starts = np.concatenate([[0], np.cumsum(L)])
    for b in range(len(L)):
        t0, t1 = int(starts[b]), int(starts[b + 1])
        for h in range(int(n_heads)):
            c, ckv = slice(h * dh, (h + 1) * dh), slice((h // group) * dh, (h // group + 1) * dh)
            S = Qa[t0:t1, c] @ Ka[t0:t1, ckv].T / np.sqrt(dh)
            if causal:
                S = np.where(np.tril(np.ones(S.shape, dtype=bool)), S, -np.inf)
            S = np.exp(S - S.max(axis=1, keepdims=True))
            P = S / S.sum(axis=1, keepdims=True)
            A[h].append(P)
            O[t0:t1, c] = P @ Va[t0:t1, ckv]
    return O, A


def _projections(Xa, Wq, Wk, bq, bk, dh: int, rope) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, K)``: the queries and keys as the logits read them (rotated per head with ``rope``)."""
    Qa, Ka = Xa @ Wq.T + bq, Xa @ Wk.T + bk
    if rope is not None:
        c, s = rope
        Qa = np.concatenate([apply_rope(Qa[:, i:i + dh], c, s) for i in range(0, Qa.shape[1], dh)], axis=1)
        Ka = np.concatenate([apply_rope(Ka[:, i:i + dh], c, s) for i in range(0, Ka.shape[1], dh)], axis=1)
    return Qa, Ka


def _gram_root(G: np.ndarray, what: str) -> np.ndarray:
    """An upper ``U`` with :math:`U^TU = G` (Cholesky), the row factor's data; ``SingularHessianError`` if
    ``G`` is not numerically positive definite."""
    try:
        return np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        raise SingularHessianError(
            f"{what} is not positive definite (fewer independent calibration tokens than head_dim, or a "
            "degenerate head); calibrate on more tokens") from None


@dataclass(frozen=True, eq=False)
class AttentionBoA:
    r"""BoA on the query, key and value projections of one attention block.

    Attributes
    ----------
    Q : dict
        ``"q"``, ``"k"``, ``"v"`` -> the quantized projection, shape (heads * head_dim, d) (``n_kv_heads``
        heads for ``"k"``, ``"v"``).
    runs : dict
        ``"q"``, ``"k"``, ``"v"`` -> one :class:`BoARun` per head (query heads for ``"q"``, key/value
        heads for ``"k"``, ``"v"``).
    certificates : dict
        ``"q"``, ``"k"``, ``"v"`` -> one :class:`BoACertificate` per head (empty lists when
        ``certify=False``).
    """

    Q: dict
    runs: dict
    certificates: dict

    def holds(self, rtol: float = RTOL_IDENTITY) -> bool:
        """Every certified head's I7 holds."""
        return all(c.holds(rtol) for cs in self.certificates.values() for c in cs)


def boa_attention(X, W_q, W_k, W_v, n_heads: int, *, bits: int = 4, sym: bool = False, lengths=None,
                  b_q=None, b_k=None, causal: bool = False, lam=None, order_in="natural",
                  order_out="natural", certify: bool = True, n_kv_heads: int | None = None, cos=None,
                  sin=None) -> AttentionBoA:
    r"""BoA on an attention block's ``q``, ``k``, ``v`` projections from the block input ``X``.

    Query head :math:`h` reads key/value head :math:`j(h) = \lfloor h/g\rfloor`, :math:`g =
    n_{heads}/n_{kv}` (grouped-query attention; :math:`g = 1` without it). Per head (see the module
    docstring and docs/theory.md section 7, "BoA", for the objectives):

    * query head :math:`h`: :math:`X_{in} = X`, row factor the Gram matrix of its key head's keys,
      :math:`K_j^TK_j`;
    * key head :math:`j`: :math:`X_{in} = X`, row factor :math:`\sum_{h: j(h)=j}Q_h^TQ_h` (the logit
      errors of the query heads it serves add up): the data :math:`X_{out}` stacks those :math:`Q_h`;
    * value head :math:`j`: :math:`X_{in}` stacks :math:`A_hX` (per sequence) over the query heads
      :math:`h` it serves (their output errors add up), :math:`H_{out} = I`.

    With rotary embeddings (``cos``, ``sin``) the logits read rotated queries and keys,
    :math:`\tilde q_t = R_tq_t`; the row factor of the query (key) is then the Gram matrix of the
    rotated keys (queries) of its group, :math:`G`, averaged over the tokens' positions,
    :math:`\frac1T\sum_tR_t^TGR_t` (:func:`rope_average`; the authors' choice), handed to the sweep as its
    Cholesky factor (a ``head_dim x head_dim`` ``X_out``). The factors are formed from the float
    weights, as in the authors' code; each is damped by ``lam``.

    Parameters
    ----------
    X : array_like, shape (T, d)
        The block's attention input (all tokens of all sequences, stacked; no padding).
    W_q : array_like, shape (n_heads * head_dim, d)
    W_k, W_v : array_like, shape (n_kv_heads * head_dim, d)
    n_heads : int
    bits, sym
        Per-channel min-max grid of each projection (:meth:`ptqtheory.Grid.minmax`).
    lengths : list of int, optional
        Tokens per sequence (attention stays within a sequence); default one sequence.
    b_q, b_k : array_like, optional
        Biases of query and key (they enter :math:`Q_h`, :math:`K_j` and :math:`A_h`; the value's bias
        does not enter the objective).
    causal : bool
        Causal attention (decoders).
    lam : float or Damping, optional
        Damping of every factor; default ``Damping.percdamp(0.01)`` (the authors').
    order_in, order_out
        As in :func:`boa`.
    certify : bool
        Compute each head's :class:`BoACertificate`.
    n_kv_heads : int, optional
        Key/value heads (default ``n_heads``); must divide ``n_heads``.
    cos, sin : array_like, shape (T, head_dim), optional
        Each token's rotary position embedding (Hugging Face's ``position_embeddings``, ``rotate_half``
        convention, :func:`apply_rope`), at the position the model gives that token.

    Raises
    ------
    SingularHessianError
        If a factor is singular for its damping, or a rotary-averaged Gram matrix is not positive
        definite (too few calibration tokens).
    """
    if lam is None:
        lam = Damping.percdamp(0.01)
    Xa, Wq, Wk, Wv, dh, L, n_kv, rope = _check_attention(X, W_q, W_k, W_v, n_heads, lengths, n_kv_heads,
                                                          cos, sin)
    n_heads = int(n_heads)
    bq, bk = _bias("b_q", b_q, Wq.shape[0]), _bias("b_k", b_k, Wk.shape[0])
    _, A = attention_heads(Xa, Wq, Wk, Wv, n_heads, L, bq, bk, None, causal, n_kv_heads=n_kv,
                           cos=None if rope is None else rope[0], sin=None if rope is None else rope[1])
    Qa, Ka = _projections(Xa, Wq, Wk, bq, bk, dh, rope)
    starts = np.concatenate([[0], np.cumsum(L)]).astype(int)
    g = n_heads // n_kv
    qh = [slice(h * dh, (h + 1) * dh) for h in range(n_heads)]
    kh = [slice(j * dh, (j + 1) * dh) for j in range(n_kv)]
    served = [range(j * g, (j + 1) * g) for j in range(n_kv)]  # the query heads of key/value head j
    heads = {"q": qh, "k": kh, "v": kh}
    # The row factors' data: keys for the query heads, the stacked queries of the group for a key head.
    if rope is None:
        k_out = [Ka[:, c] for c in kh]
        q_out = [np.concatenate([Qa[:, qh[h]] for h in served[j]]) for j in range(n_kv)]
    else:
        k_out = [_gram_root(rope_average(_gram(Ka[:, kh[j]]), *rope), f"key head {j}'s rotary-averaged Gram")
                 for j in range(n_kv)]
        q_out = [_gram_root(rope_average(sum(_gram(Qa[:, qh[h]]) for h in served[j]), *rope),
                            f"the rotary-averaged Gram of the queries of key head {j}") for j in range(n_kv)]
    x_out = {"q": [k_out[h // g] for h in range(n_heads)], "k": q_out}
    out = {k: np.empty_like(M) for k, M in (("q", Wq), ("k", Wk), ("v", Wv))}
    runs: dict = {"q": [], "k": [], "v": []}
    certs: dict = {"q": [], "k": [], "v": []}
    grids = {k: [Grid.minmax(M[c], bits=bits, sym=sym) for c in heads[k]]
             for k, M in (("q", Wq), ("k", Wk), ("v", Wv))}
    # query and key: the heads share H_in = X^T X and are swept together; value: H_in per head, H_out = I
    for name, M in (("q", Wq), ("k", Wk)):
        runs[name] = _boa_heads([M[c] for c in heads[name]], Xa, x_out[name], lam, [lam] * len(heads[name]),
                                grids[name], order_in, order_out, 128)
        if certify:
            certs[name] = [certify_boa(r, Xa, xo) for r, xo in zip(runs[name], x_out[name], strict=True)]
    for j, c in enumerate(kh):
        AX = np.concatenate([A[h][b] @ Xa[starts[b]:starts[b + 1]] for h in served[j] for b in range(len(L))])
        run = boa(Wv[c], AX, None, lam_in=lam, grid=grids["v"][j], order_in=order_in, order_out=order_out)
        runs["v"].append(run)
        if certify:
            certs["v"].append(certify_boa(run, AX, None))
    for name in ("q", "k", "v"):
        for r, c in zip(runs[name], heads[name], strict=True):
            out[name][c] = r.Q
    return AttentionBoA(Q=out, runs=runs, certificates=certs)
