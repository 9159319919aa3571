r"""Certificates of torch runs, computed on the device from the statistics (THEORY.md I1-I6).

The left sides are quadratic forms in the statistics (float64), with :math:`e = w - q` formed first
so that nothing large cancels:

* I2/I3: :math:`\|X e\|^2 + \lambda\|e\|^2 = e^T H e`;
* I4/I5: :math:`\|Xw - \tilde Xq\|^2 + \lambda\|e\|^2 = e^T\tilde He + 2e^T\tilde X^T\Delta w
  + w^T\Delta^T\Delta w` (:math:`\Delta = X - \tilde X`; this equals
  :math:`w^THw - 2w^TG^Tq + q^T\tilde Hq`), and
  :math:`\|r_0\|^2 = \|\Delta w\|^2 - \|U_{\tilde H}^{-1}\tilde X^T\Delta w\|^2` (Pythagoras:
  :math:`\Delta w = \hat{\tilde X}(w_{LS} - w) + r_0` with :math:`r_0 \perp \operatorname{range}\hat{\tilde X}`;
  the same value as :math:`w^THw - w^TG^T\tilde H^{-1}Gw` without its cancellation).

The right sides read the run's :math:`\eta` and the pivots :math:`D_t` of a float64 Cholesky
factorization of :math:`H` (or :math:`\tilde H`) on the device: the run's own (``Run.pivots``, with
its statistics ``Run.stats``) when the data given are the data behind them, else one computed here.
I1 checks it either way. When data are given (a tensor, or an
iterable of batches streamed once, one batch at a time) the empirical errors
:math:`\|Xw - \tilde Xq\|_2`, :math:`\|\cdot\|_\infty` and GPFQ's I6 are computed from them;
with statistics only, ``err_inf`` is NaN and GPFQ cannot be certified.

The rounding allowances are the numpy reference's, with :math:`\epsilon` of the run's working dtype.

The a-priori bounds B1-B12 are evaluated on the host by :mod:`ptqtheory.bounds` (float64 numpy),
from the run's per-entry arrays and the pivots :math:`D` and factor :math:`L` of the factorization
computed here (no second factorization). With data tensors every bound of the numpy reference is
evaluated, with the same values up to the run's rounding; with statistics (or streamed batches) the
per-sample forms B5 and B10.sup are skipped and listed in ``Certificate.skipped_bounds``
(:func:`ptqtheory.bounds.unavailable`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..certificates import (
    IDENTITY,
    STATEMENT,
    Certificate,
    PivotCheck,
    _check_options,
    _cond,
    _ratio,
    relative_gap,
)
from ..factor import Pivots
from ..records import Run
from ..tolerances import (
    STATS_MATCH_RTOL,
    allowance_unit,
    evaluation_allowance,
    gpfq_allowance,
    identity_allowance,
    normal_equations_refit_allowance,
    pivot_bounds_slack,
    qronos_first_allowance,
    structure_allowance,
)
from .device import as_data, mixed_error, tf32_guard
from .factor import TorchPivots, pivots
from .stats import TorchAccumulator, batches_of, sym_perm

__all__ = ["certify"]

F64 = torch.float64


def certify(run: Run, X, Xt=None, p: float = 1e-3, full_pivot_check: bool | None = None,
            bounds: bool = True, *, allow_tf32: bool = False, samples=None) -> Certificate:
    r"""Certificate of a torch ``run`` (THEORY.md I1-I6), computed on the run's device.

    Parameters
    ----------
    run : Run
        A record of the torch backend (``run.backend == "torch"``).
    X : torch.Tensor (m, N), TorchAccumulator, or iterable of batches
        The float-model inputs the run was computed with: the data, their statistics, or batches
        streamed once (tensors ``(b, N)``; pairs ``(X_b, Xt_b)`` for Qronos and GPFQ). With
        statistics only, ``err_inf`` is NaN (it needs the data) and GPFQ is refused.
    Xt : torch.Tensor (m, N), optional
        Quantized-model inputs when ``X`` is a tensor (Qronos, GPFQ).
    p : float
        Failure probability of the high-probability bounds (as for :func:`ptqtheory.certify`).
    bounds : bool
        Evaluate the a-priori bounds B1-B12 (on the host, float64; see the module notes). With
        statistics or streamed batches the per-sample forms are listed in ``skipped_bounds``.
    full_pivot_check : bool, optional
        Also compute I1's inverse form :math:`1/[(H_{\ge t,\ge t})^{-1}]_{11}` of every pivot
        (``O(N^4)``; default when ``N <= 128``). The projection form, which needs a QR of the data,
        is left to the numpy reference (``PivotCheck.D_projection`` is ``None``).
    allow_tf32 : bool
        Allow TF32 products on CUDA during this call (default off).
    samples : callable, optional
        With statistics or streamed batches: ``samples()`` returns a fresh iterable over the same
        calibration data (batches as for ``X``), read once more, one batch at a time, for the
        per-sample bounds (B5, B10.sup; :func:`ptqtheory.bounds.per_sample`) that statistics alone
        cannot give. Without it those bounds are listed in ``skipped_bounds``.

    Returns
    -------
    Certificate
        Per-row results as CPU numpy float64 arrays. ``identity_atol`` is the numpy reference's
        first-order allowance with the machine epsilon of the run's working dtype, so
        ``holds(rtol)`` can be used with an rtol suited to that dtype (e.g. 1e-4 for float32).
    """
    if not isinstance(run, Run) or run.backend != "torch":
        raise TypeError("run must be a Run of the torch backend (run.backend == 'torch')")
    p, full_pivot_check, bounds = _check_options(p, full_pivot_check, bounds)
    if X is None:
        raise ValueError("X is required: the calibration data (a tensor, a TorchAccumulator or batches)")
    device = run.Q.device
    parts: dict = {}
    with tf32_guard(device, allow_tf32):
        if run.transform is not None:
            V = run.transform.V
            inner = _certify(run.inner, X, Xt, full_pivot_check, V=V, parts=parts)
            cert = Certificate(**{**inner.__dict__, "transformed": True})
            brun = run.inner
        else:
            V = None
            cert = _certify(run, X, Xt, full_pivot_check, parts=parts)
            brun = run
        if not bounds:
            return cert
        checks, skipped = _bounds(brun, X, Xt, p, parts, V, samples)
    return Certificate(**{**cert.__dict__, "bounds": checks, "skipped_bounds": tuple(skipped)})


def _host_run(run: Run) -> Run:
    """The record with host numpy arrays (float64 copies of the working-precision values)."""
    def h(a):
        return None if a is None else _host(a)

    return Run(**{**run.__dict__, "W": h(run.W), "Q": h(run.Q), "eta": h(run.eta), "x": h(run.x),
                  "clipped": run.clipped.detach().cpu().numpy(),
                  "order": run.order.detach().cpu().numpy(), "w_ls": h(run.w_ls),
                  "residual": h(run.residual)})


def _bounds(run: Run, X, Xt, p: float, parts: dict, V, samples=None) -> tuple[list, list[str]]:
    """``(bound checks, skipped labels)`` of a torch ``run`` (the inner run under incoherence)."""
    from .. import bounds as _b
    from .._context import RunContext

    if run.algorithm == "gpfq":  # no a-priori bound for GPFQ (as in the numpy reference)
        return [], []
    tpiv = parts.get("piv")
    piv = None
    if tpiv is not None:
        d = torch.diagonal(tpiv.UH)
        piv = Pivots.from_factors(_host(tpiv.UH / d[None, :]), _host(tpiv.D), _host(tpiv.Lt))
    hrun = _host_run(run)
    uses_xt = run.algorithm in ("qronos", "gpfq")
    # Only the per-sample forms of the stochastic bounds (B5, B10.sup) read the samples themselves;
    # every other bound is a function of the statistics, computed above on the device.
    if isinstance(X, torch.Tensor) and run.rounding == "stochastic":
        Xh = _host(X)
        Xth = _host(Xt) if uses_xt else None
        if V is not None:
            Vh = _host(V)
            Xh = Xh @ Vh.T
            Xth = None if Xth is None else Xth @ Vh.T
        ctx = RunContext.build(hrun, Xh, Xth, piv=piv)
    else:  # statistics (given, or accumulated from streamed batches): no per-sample data
        acc = parts["acc"]
        order = run.order
        xtx_p = _host(sym_perm(acc.XtX, order))
        gram_p = _host(sym_perm(acc.XttXt, order)) if uses_xt else xtx_p
        err_inf = parts["err_inf"]
        ctx = RunContext.from_statistics(
            hrun, gram_p=gram_p, xtx_p=xtx_p, m=acc.m, piv=piv, err_sq=_host(parts["err_sq"]),
            err_inf=None if np.all(np.isnan(err_inf)) else err_inf,
            W_ls=None if parts.get("W_ls") is None else _host(parts["W_ls"]),
            r0_sq=None if parts.get("r0_sq") is None else _host(parts["r0_sq"]),
        )
    checks, skipped = _b.evaluate(ctx, p), _b.unavailable(ctx)
    if samples is not None and skipped:
        if not callable(samples):
            raise TypeError("samples must be a callable returning a fresh iterable of batches")
        found = _b.per_sample(ctx, _host_pairs(samples(), V, uses_xt, run.algorithm), p)
        checks += found
        skipped = [lab for lab in skipped if lab not in {c.label for c in found}]
    return checks, skipped


def _host_pairs(batches, V, uses_xt: bool, algorithm: str):
    """``(X_b, Xt_b)`` host float64 pairs of a stream of batches, in the run's input basis (``V``)."""
    Vh = None if V is None else _host(V)
    for item in batches:
        if uses_xt:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ValueError(f"the per-sample bounds of a {algorithm} run need (X_b, Xt_b) pairs")
            xb, xtb = _host(item[0]), _host(item[1])
        else:
            xb, xtb = _host(item[0] if isinstance(item, tuple | list) else item), None
        if Vh is not None:
            xb = xb @ Vh.T
            xtb = None if xtb is None else xtb @ Vh.T
        yield xb, xtb


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", F64).numpy()


def _rows2(a: torch.Tensor) -> torch.Tensor:
    return (a[None, :] if a.ndim == 1 else a).to(F64)


def _items(X, Xt, N: int, device, uses_xt: bool, algorithm: str):
    """``(accumulator, iterable of (X_b, Xt_b) or None)`` for the three kinds of ``X``."""
    if isinstance(X, TorchAccumulator):
        if Xt is not None:
            raise ValueError("Xt was given with statistics for X: put Xt's batches into the accumulator")
        if X.N != N:
            raise ValueError(f"the accumulator has N = {X.N} columns but the run has {N}")
        X._need_data()
        if uses_xt and not X.with_mismatch:
            X._need_mismatch()
        return X, None
    if isinstance(X, torch.Tensor):
        Xd = as_data("X", X, N, device)
        Xtd = None
        if uses_xt:
            if Xt is None:
                raise ValueError(f"Xt is required to certify a {algorithm} run")
            Xtd = as_data("Xt", Xt, N, device, m=Xd.shape[0])
        return None, batches_of(Xd, Xtd)
    if isinstance(X, np.ndarray) or not isinstance(X, Iterable):
        raise mixed_error("X", X)
    if Xt is not None:
        raise ValueError("Xt was given with batches for X: yield (X_b, Xt_b) pairs instead")

    def pairs():
        for item in X:
            if uses_xt:
                if not (isinstance(item, tuple | list) and len(item) == 2):
                    raise ValueError(f"certifying a {algorithm} run from batches needs (X_b, Xt_b) pairs")
                yield item[0], item[1]
            else:
                yield (item[0] if isinstance(item, tuple | list) else item), None

    return None, pairs()


def _reusable_stats(run: Run, X, Xt, V, uses_xt: bool) -> TorchAccumulator | None:
    r"""The run's own statistics when the data given are the data it was computed from, else ``None``.

    Recomputing :math:`X^TX` costs as much as the quantization's own statistics; reusing them is safe
    when ``X`` (and ``Xt``) are the very tensors behind ``run.stats``. That is checked, cheaply, on
    the squared column norms (:math:`O(mN)`, equal to ``diag(run.stats)`` to ``STATS_MATCH_RTOL``
    relative); data that differ (e.g. float64 inputs certifying a run computed on their float32
    copies) get their own statistics, as do streamed batches, which can be read only once.
    """
    stats = run.stats
    if stats is not None and X is stats and V is None:
        return stats
    if stats is None or V is not None or not isinstance(X, torch.Tensor):
        return None
    if stats.with_mismatch != uses_xt or (uses_xt and not isinstance(Xt, torch.Tensor)):
        return None
    Xd = X.reshape(-1, X.shape[-1])
    if Xd.shape[0] != stats.m or Xd.device != stats.device:
        return None
    pairs = [(Xd, stats.XtX)] + ([(Xt.reshape(-1, Xt.shape[-1]), stats.XttXt)] if uses_xt else [])
    for data, S in pairs:
        col_sq = torch.zeros(data.shape[1], dtype=F64, device=data.device)
        for r0 in range(0, data.shape[0], 8192):
            col_sq += (data[r0 : r0 + 8192].to(F64) ** 2).sum(0)
        if not torch.allclose(col_sq, torch.diagonal(S), rtol=STATS_MATCH_RTOL, atol=0):
            return None
    return stats


class _Stream:
    """One pass over the batches: statistics (unless given), and the per-row sums that need the data."""

    def __init__(self, n: int, N: int, device, uses_xt: bool, stats: TorchAccumulator | None = None):
        self.given = stats is not None
        self.acc = stats if self.given else TorchAccumulator(N, device, with_mismatch=uses_xt)
        self.sumsq = torch.zeros(n, dtype=F64, device=device)
        self.maxabs = torch.zeros(n, dtype=F64, device=device)
        self.diffsq = torch.zeros(n, dtype=F64, device=device)
        self.rows = 0

    def run(self, items, E, Q, V, u) -> None:
        acc = self.acc
        for index, (Xb, Xtb) in enumerate(items):
            Xb = acc.rows("X batch", Xb, index)
            Xtb = None if Xtb is None else acc.rows("Xt batch", Xtb, index)
            if V is not None:
                Xb = Xb @ V.T
                Xtb = None if Xtb is None else Xtb @ V.T
            if not self.given:
                acc.add_rows(Xb, Xtb)
            # Xw - Xt q = X(w - q) + (X - Xt) q: no cancellation when w - q is small.
            out = E @ Xb.T
            if Xtb is not None:
                out += Q @ (Xb - Xtb).T
            self.sumsq += (out * out).sum(1)
            self.maxabs = torch.maximum(self.maxabs, out.abs().amax(1))
            if u is not None:
                b = Xb.shape[0]
                if self.rows + b > u.shape[1]:
                    raise ValueError(f"the data have more rows than the GPFQ run's residual ({u.shape[1]})")
                diff = u[:, self.rows : self.rows + b].to(F64) - out
                self.diffsq += (diff * diff).sum(1)
            self.rows += Xb.shape[0]
        if self.rows == 0:
            raise ValueError("no calibration rows were given (X yielded no batches)")
        if u is not None and self.rows != u.shape[1]:
            raise ValueError(f"the data have {self.rows} rows but the GPFQ run's residual has {u.shape[1]}")


def _certify(run: Run, X, Xt, full_pivot_check, V=None, parts: dict | None = None) -> Certificate:
    """The certificate; what the bounds reuse (statistics, factorization, ...) goes into ``parts``."""
    parts = {} if parts is None else parts
    W, Q, eta = _rows2(run.W), _rows2(run.Q), _rows2(run.eta)
    n, N = W.shape
    device = W.device
    dtype = run.W.dtype
    algorithm = run.algorithm
    uses_xt = algorithm in ("qronos", "gpfq")
    acc, items = _items(X, Xt, N, device, uses_xt, algorithm)
    E = W - Q  # exact in float64 for float32 runs
    u = _rows2(run.residual) if algorithm == "gpfq" else None
    reuse = _reusable_stats(run, X, Xt, V, uses_xt)
    if items is None:
        if algorithm == "gpfq":
            raise ValueError(
                "certifying a GPFQ run (I6: u_N = Xw - Xt q, a vector in R^m) needs the data: pass the "
                "tensors X and Xt, or an iterable of (X_b, Xt_b) batches, not statistics"
            )
        if V is not None:
            acc = acc.transformed(V)
        err_sq = _err_sq_from_stats(acc, W, E, uses_xt)
        err_inf = np.full(n, np.nan)
        stream = None
    else:
        stream = _Stream(n, N, device, uses_xt, stats=reuse)
        stream.run(items, E, Q, V, u)
        acc = stream.acc
        err_sq = stream.sumsq
        err_inf = _host(stream.maxabs)
    parts.update(acc=acc, err_sq=err_sq, err_inf=err_inf)
    lam = float(run.lam)
    eps = allowance_unit(dtype)  # 16 eps of the working dtype (ptqtheory.tolerances)
    w_q = _host(torch.linalg.vector_norm(W, dim=1) + torch.linalg.vector_norm(Q, dim=1))
    common = dict(
        err_l2=_host(err_sq.clamp(min=0).sqrt()), err_inf=err_inf,
        weight_err_inf=_host(E.abs().amax(1)),
        n_clipped=_host(_rows2(run.clipped).sum(1)).astype(np.int64),
        algorithm=algorithm, variant=run.variant,
    )
    none = dict(structure_gap=None, structure_scale=None, structure_atol=None, structure_residual=None)
    if algorithm == "rtn":
        return Certificate(identity=None, statement=STATEMENT[None], identity_lhs=None, identity_rhs=None,
                           identity_gap=None, identity_atol=None, pivots=None, **none, **common)
    if algorithm == "gpfq":
        lhs = _host(torch.linalg.vector_norm(u, dim=1))
        rhs = common["err_l2"]
        den = np.maximum(lhs, rhs)
        gap_num = _host(stream.diffsq.sqrt())
        gap = np.where(den > 0, gap_num / np.where(den > 0, den, 1.0), 0.0)
        fro_x = float(torch.trace(acc.XtX).sqrt())
        fro_xt = float(torch.trace(acc.XttXt).sqrt())
        atol = gpfq_allowance(eps, N, fro_x, _host(torch.linalg.vector_norm(W, dim=1)), fro_xt,
                              _host(torch.linalg.vector_norm(Q, dim=1)))
        return Certificate(identity="I6", statement=STATEMENT["I6"], identity_lhs=lhs, identity_rhs=rhs,
                           identity_gap=gap, identity_atol=atol, pivots=None, **none, **common)

    # Pivots of the matrix that carries the feedback: H for OPTQ/LDLQ, Ht for Qronos.
    order = run.order
    G0p = sym_perm(acc.XttXt if uses_xt else acc.XtX, order)
    Hp = G0p.clone()
    Hp.diagonal().add_(lam)
    if reuse is not None and run.pivots is not None:
        piv = run.pivots  # the run's float64 factorization of these statistics; I1 below checks it
    else:
        piv = pivots(Hp, lam, "Ht" if uses_xt else "H", columns=order.tolist(), factor_dtype=F64)
    parts["piv"] = piv
    full = (N <= 128) if full_pivot_check is None else bool(full_pivot_check)
    pcheck = _pivot_check(piv, Hp, G0p, lam, full)
    D = piv.D
    L = piv.L
    eta_p = eta[:, order]
    E_p = E[:, order]
    weighted = (eta_p * eta_p) @ D  # sum_t eta_t^2 D_t per row
    lhs_data = err_sq + lam * (E * E).sum(1)  # ||Xw - Xt q||^2 + lam ||w - q||^2
    L_eta = float(torch.linalg.matrix_norm(L)) * torch.linalg.vector_norm(eta_p, dim=1)
    xh_norm = float(torch.trace(Hp).sqrt())

    if algorithm in ("optq", "ldlq"):
        lhs = ((E_p @ Hp) * E_p).sum(1) if algorithm == "ldlq" else lhs_data
        res, scale = _structure(E_p, L, eta_p)
        s_atol = structure_allowance(eps, w_q, _host(L_eta))  # the blocked form applies L itself
        lhs_h, rhs_h = _host(lhs), _host(weighted)
        # |lhs - rhs| <= ||X_hat nu|| (||X_hat e|| + ||X_hat L eta||), nu the rounding of e - L eta
        atol = identity_allowance(xh_norm, s_atol, lhs_h, rhs_h)
        ident = IDENTITY[algorithm]
        return Certificate(identity=ident, statement=STATEMENT[ident], identity_lhs=lhs_h, identity_rhs=rhs_h,
                           identity_gap=relative_gap(lhs_h, rhs_h), identity_atol=atol,
                           structure_gap=_ratio(res, scale), structure_scale=scale, structure_atol=s_atol,
                           structure_residual=res, pivots=pcheck, **common)

    # Qronos: w_LS and r_0 from the statistics (not read from the run).
    Wp = W[:, order]
    b = sym_perm(acc.XttD, order) @ Wp.T  # Xt^T (X - Xt) w, processing order, (N, n)
    y = piv.solve(b).T
    W_ls = Wp + y
    z = piv.whiten(b)
    dw_sq = ((W @ acc.DtD) * W).sum(1)  # ||Delta w||^2
    r0_sq = (dw_sq - (z * z).sum(0)).clamp(min=0)
    parts.update(W_ls=W_ls, r0_sq=r0_sq)
    # w_LS is refitted here by the normal equations, not read from the run: the two differ by its
    # forward error (E3 of ptqtheory.tolerances); r_0^2 = ||Delta w||^2 - ||z||^2 also cancels.
    w_norm = _host(torch.linalg.vector_norm(W, dim=1))
    z_norm = _host(torch.linalg.vector_norm(z, dim=0))
    y_norm = _host(torch.linalg.vector_norm(y, dim=1))
    tr_H, tr_D = float(torch.trace(Hp)), float(torch.trace(acc.DtD))
    # The statistic Xt^T Delta cancels: its rounding is relative to |Xt|^T |Delta|, whose Frobenius
    # norm is at most sqrt(tr(Xt^T Xt) tr(Delta^T Delta)).
    b_terms = np.sqrt(float(torch.trace(acc.XttXt)) * tr_D) * w_norm
    ls_w, ls_out = normal_equations_refit_allowance(pcheck.cond, N, tr_H, b_terms, y_norm, z_norm)
    # ||Delta w||^2 and ||z||^2 = y^T Ht y are read through statistics rounded relative to their
    # traces, then subtracted.
    r0_err = evaluation_allowance(eps, tr_D * w_norm**2 + z_norm**2 + tr_H * y_norm**2) \
        + 2 * z_norm * eps * ls_out
    wls_norm = _host(torch.linalg.vector_norm(W_ls, dim=1))
    s_base = structure_allowance(eps, w_q, _host(L_eta), wls_norm)
    s_atol = structure_allowance(eps, w_q, _host(L_eta), wls_norm + ls_w)
    Q_p = Q[:, order]
    if run.variant == "ls":
        rhs = r0_sq + weighted
        res, scale = _structure(W_ls - Q_p, L, eta_p)
        ident = "I4"
        structure = dict(structure_gap=_ratio(res, scale), structure_scale=scale, structure_atol=s_atol,
                         structure_residual=res)
    else:
        first = W_ls[:, 0] - Q_p[:, 0]
        rhs = r0_sq + first * first * D[0] + (eta_p[:, 1:] ** 2) @ D[1:]
        ident, structure = "I5", none
    lhs_h, rhs_h = _host(lhs_data), _host(rhs)
    xh_x = float((torch.trace(acc.XtX) + N * lam).sqrt())
    sides = np.sqrt(np.abs(lhs_h)) + np.sqrt(np.abs(rhs_h))
    atol = identity_allowance(xh_x + xh_norm, s_base, lhs_h, rhs_h) + eps * ls_out * sides + r0_err
    if run.variant != "ls":
        atol = atol + qronos_first_allowance(eps, _host(first), ls_w, float(D[0]))
    return Certificate(identity=ident, statement=STATEMENT[ident], identity_lhs=lhs_h, identity_rhs=rhs_h,
                       identity_gap=relative_gap(lhs_h, rhs_h), identity_atol=atol, pivots=pcheck,
                       **structure, **common)


def _err_sq_from_stats(acc: TorchAccumulator, W, E, uses_xt: bool) -> torch.Tensor:
    r""":math:`\|Xe\|^2`, or :math:`\|\tilde Xe + \Delta w\|^2 = \|Xw - \tilde Xq\|^2`, per row."""
    if not uses_xt:
        return ((E @ acc.XtX) * E).sum(1)
    return (((E @ acc.XttXt) * E).sum(1) + 2 * ((E @ acc.XttD) * W).sum(1)
            + ((W @ acc.DtD) * W).sum(1))


def _structure(E_p, L, eta_p) -> tuple[np.ndarray, np.ndarray]:
    r"""Per row :math:`\|(w-q) - L\eta\|` and :math:`\|w - q\|` (I2's :math:`w - q = L\eta`)."""
    resid = E_p - eta_p @ L.T
    return _host(torch.linalg.vector_norm(resid, dim=1)), _host(torch.linalg.vector_norm(E_p, dim=1))


def _pivot_check(piv: TorchPivots, Hp, G0p, lam: float, full: bool) -> PivotCheck:
    """THEORY.md I1 from the statistics: bounds on D_t, log det, and (if ``full``) the inverse form."""
    D = piv.D
    N = D.shape[0]
    D_inv = gap_inv = None
    if full:
        vals = torch.empty(N, dtype=F64, device=D.device)
        for t in range(N):
            e1 = torch.zeros(N - t, 1, dtype=F64, device=D.device)
            e1[0, 0] = 1.0
            vals[t] = 1.0 / torch.linalg.solve(Hp[t:, t:], e1)[0, 0]
        D_inv = _host(vals)
        gap_inv = float(np.max(relative_gap(D_inv, _host(D))))
    col_sq = torch.diagonal(G0p)
    slack = pivot_bounds_slack(N, float(col_sq.max()) + lam)
    bounds = bool((D >= lam - slack).all() and (D <= col_sq + lam + slack).all())
    sign, logdet = torch.linalg.slogdet(Hp)
    logdet_gap = float(abs(torch.log(D).sum() - logdet)) if float(sign) > 0 else float("inf")
    # kappa(H) only scales tolerances: LAPACK's estimate from the factor in hand (O(N^2)) rather
    # than an eigendecomposition (O(N^3), as much as the factorization itself).
    d = torch.diagonal(piv.UH)
    cond = _cond(_host(Hp), Pivots(U1=_host(piv.UH / d[None, :]), D=_host(D)))
    return PivotCheck(_host(D), None, D_inv, None, gap_inv, bounds, logdet_gap, cond)
