r"""Certificates of torch runs, computed on the device from the statistics (THEORY.md I1-I6).

The identities, their allowances and the bounds are the numpy reference's functions
(:mod:`ptqtheory.identities`, :mod:`ptqtheory.bounds`); :class:`DeviceContext` only obtains the
quantities they read, on the device, from float64 statistics. The left sides are quadratic forms in
the statistics, with :math:`e = w - q` formed first so that nothing large cancels:

* I2/I3: :math:`\|X e\|^2 + \lambda\|e\|^2 = e^T H e`;
* I4/I5: :math:`\|Xw - \tilde Xq\|^2 + \lambda\|e\|^2 = e^T\tilde He + 2e^T\tilde X^T\Delta w
  + w^T\Delta^T\Delta w` (:math:`\Delta = X - \tilde X`; this equals
  :math:`w^THw - 2w^TG^Tq + q^T\tilde Hq`), and
  :math:`\|r_0\|^2 = \|\Delta w\|^2 - \|U_{\tilde H}^{-1}\tilde X^T\Delta w\|^2` (Pythagoras:
  :math:`\Delta w = \hat{\tilde X}(w_{LS} - w) + r_0` with :math:`r_0 \perp \operatorname{range}\hat{\tilde X}`;
  the same value as :math:`w^THw - w^TG^T\tilde H^{-1}Gw` without its cancellation; its rounding is
  :attr:`DeviceContext.ls_refit`, the rest of the allowance the numpy reference's).

The right sides read the run's :math:`\eta` and the pivots :math:`D_t` of a float64 Cholesky
factorization of :math:`H` (or :math:`\tilde H`) on the device: the run's own (``Run.pivots``, with
its statistics ``Run.stats``) when the data given are the data behind them, else one computed here;
I1 checks it either way. Data (a tensor, or batches streamed once, one at a time) also give the
empirical errors :math:`\|Xw - \tilde Xq\|_2`, :math:`\|\cdot\|_\infty` and GPFQ's I6.

The a-priori bounds B1-B12 are evaluated on the host by :mod:`ptqtheory.bounds` (float64 numpy) from
the run's per-entry arrays and the :math:`D` and :math:`L` of the factorization computed here (no
second factorization): with data tensors every bound of the numpy reference, with the same values up
to the run's rounding; with statistics or streamed batches all but B5 and B10.sup (``samples``).

This module never imports :mod:`ptqtheory.certificates` (which imports it lazily for torch runs).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import cast

import numpy as np
import torch

from .. import bounds as _bounds
from .._context import RunContext
from ..factor import Pivots
from ..identities import Certificate, assemble, check_options
from ..records import Run
from ..registry import entry, unwrap
from ..tolerances import STATS_MATCH_RTOL, evaluation_allowance, normal_equations_refit_allowance
from .device import as_data, mixed_error, tf32_guard
from .factor import pivots
from .stats import TorchAccumulator, batches_of, is_identity, sym_perm

__all__ = ["DeviceContext", "certify"]

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
    p, bounds
        As for :func:`ptqtheory.certify` (the bounds on the host, in float64: module notes, ``samples``).
    full_pivot_check : bool, optional
        As for :func:`ptqtheory.certify`, the inverse form :math:`1/[(H_{\ge t,\ge t})^{-1}]_{11}` only
        (the projection form needs a QR of the data: numpy only; ``PivotCheck.D_projection`` is ``None``).
    allow_tf32 : bool
        Allow TF32 products on CUDA during this call (default off).
    samples : callable, optional
        As for :func:`ptqtheory.certify` (batches as for ``X``; :func:`ptqtheory.bounds.per_sample`);
        without it B5 and B10.sup are listed in ``skipped_bounds``.

    Returns
    -------
    Certificate
        Per-row results as CPU numpy float64 arrays. ``identity_atol`` is the numpy reference's
        first-order allowance with the machine epsilon of the run's working dtype, so
        ``holds(rtol)`` can be used with an rtol suited to that dtype (e.g. 1e-4 for float32).
    """
    if not isinstance(run, Run) or run.backend != "torch":
        raise TypeError("run must be a Run of the torch backend (run.backend == 'torch')")
    p, full_pivot_check, bounds = check_options(p, full_pivot_check, bounds)
    if X is None:
        raise ValueError("X is required: the calibration data (a tensor, a TorchAccumulator or batches)")
    inner, transform = unwrap(run)
    V = None if transform is None else transform.V
    with tf32_guard(run.Q.device, allow_tf32):
        ctx = _device_context(inner, X, Xt, V)
        checks, skipped = _bound_checks(ctx, X, Xt, p, V, samples) if bounds else ([], [])
        cert = assemble(ctx, full_pivot_check=full_pivot_check, checks=checks, skipped=tuple(skipped))
    return Certificate(**{**cert.__dict__, "transformed": True}) if transform is not None else cert


@dataclass(eq=False)
class DeviceContext(RunContext):
    r"""A statistics-only :class:`~ptqtheory._context.RunContext` computing the base class's quantities
    on the run's device, in float64, from ``dev``: in processing order unless said, ``W``, ``Q``, ``E``
    (original order, float64, rows), ``W_p``, ``Q_p``, ``E_p``, ``eta_p``, ``order``, ``acc`` (the
    statistics, in the run's input basis), ``Hp`` (the damped feedback Gram matrix), ``piv`` (its
    :class:`~ptqtheory.torch_backend.factor.TorchPivots`), and for GPFQ the streamed ``u`` and ``diffsq``."""

    dev: dict = field(default_factory=dict)

    def structure(self, which: str = "E") -> tuple[np.ndarray, np.ndarray]:
        d = self.dev
        A = d["E_p"] if which == "E" else self._device_ls["W_ls"] - d["Q_p"]
        resid = A - lower_matmul_t(d["eta_p"], d["piv"].L)
        return _host(torch.linalg.vector_norm(resid, dim=1)), _host(torch.linalg.vector_norm(A, dim=1))

    @cached_property
    def h_quadratic(self) -> np.ndarray:
        E_p = self.dev["E_p"]
        return _host(((E_p @ self.dev["Hp"]) * E_p).sum(1))

    @cached_property
    def abs_h_quadratic(self) -> np.ndarray:
        A = self.dev["E_p"].abs()
        return _host(((A @ self.dev["Hp"].abs()) * A).sum(1))

    @cached_property
    def _device_ls(self) -> dict:
        r""":math:`w_{LS} = w + y`, :math:`\tilde Hy = b = \tilde X^T\Delta w`, and
        :math:`\|r_0\|^2 = \|\Delta w\|^2 - \|z\|^2`, :math:`z = U_{\tilde H}^{-1}b` (normal equations)."""
        d = self.dev
        acc, piv, W = d["acc"], d["piv"], d["W"]
        b = sym_perm(acc.cross_Xt_mismatch, d["order"]) @ d["W_p"].T
        y = piv.solve(b).T
        z = piv.whiten(b)
        dw_sq = ((W @ acc.gram_mismatch) * W).sum(1)  # ||Delta w||^2
        return {"W_ls": d["W_p"] + y, "y": y, "z": z, "r0_sq": (dw_sq - (z * z).sum(0)).clamp(min=0)}

    @cached_property
    def _least_squares(self) -> dict:
        """``W_ls`` and ``r0_sq`` as the host reads them (:attr:`W_ls`, :attr:`r0_sq`)."""
        return {key: _host(self._device_ls[key]) for key in ("W_ls", "r0_sq")}

    @cached_property
    def ls_refit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""The refit's sizes (normal equations: :func:`ptqtheory.tolerances.normal_equations_refit_allowance`)
        and the rounding of :math:`\|r_0\|^2 = \|\Delta w\|^2 - \|z\|^2`: both terms read through statistics
        rounded relative to their traces, then subtracted (:func:`ptqtheory.tolerances.evaluation_allowance`),
        plus the fitted values' error met twice in :math:`\|z\|^2`."""
        d = self.dev
        acc, ls = d["acc"], self._device_ls
        N = self.shape[1]
        w_norm = _host(torch.linalg.vector_norm(d["W"], dim=1))
        z_norm = _host(torch.linalg.vector_norm(ls["z"], dim=0))
        y_norm = _host(torch.linalg.vector_norm(ls["y"], dim=1))
        tr_H, tr_D = float(torch.trace(d["Hp"])), float(torch.trace(acc.gram_mismatch))
        # The statistic Xt^T Delta cancels: its rounding is relative to |Xt|^T |Delta|, whose Frobenius
        # norm is at most sqrt(tr(Xt^T Xt) tr(Delta^T Delta)).
        b_terms = np.sqrt(float(torch.trace(acc.gram_Xt)) * tr_D) * w_norm
        weights, fitted = normal_equations_refit_allowance(self.cond_H, N, tr_H, b_terms, y_norm, z_norm)
        r0 = evaluation_allowance(self.eps, tr_D * w_norm**2 + z_norm**2 + tr_H * y_norm**2) \
            + 2 * z_norm * self.eps * fitted
        return weights, fitted, r0

    def pivot_forms(self, full: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The inverse form on the device (the projection form needs the data: ``None``)."""
        if not full:
            return None, None
        Hp, D = self.dev["Hp"], self.dev["piv"].D
        N = D.shape[0]
        vals = torch.empty(N, dtype=F64, device=D.device)
        for t in range(N):
            e1 = torch.eye(N - t, 1, dtype=F64, device=D.device)
            vals[t] = 1.0 / torch.linalg.solve(Hp[t:, t:], e1)[0, 0]
        return None, _host(vals)

    @cached_property
    def logdet_gap(self) -> float:
        # as RunContext.logdet_gap (independent Cholesky of H; not positive definite: infinite gap)
        D = self.dev["piv"].D
        C, info = torch.linalg.cholesky_ex(self.dev["Hp"])
        if int(info) != 0:
            return float("inf")
        logdet = 2.0 * torch.log(torch.diagonal(C)).sum()
        return float(abs(torch.log(D).sum() - logdet))

    @cached_property
    def gpfq_sides(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.dev
        return _host(torch.linalg.vector_norm(d["u"], dim=1)), _host(d["diffsq"].sqrt())


def _device_context(run: Run, X, Xt, V) -> DeviceContext:
    """The context of ``run`` (the inner run under incoherence, ``V`` its input basis) on the device."""
    W, Q, eta = _rows2(run.W), _rows2(run.Q), _rows2(run.eta)
    N = W.shape[1]
    row = entry(run.algorithm)
    uses_xt = row.uses_xt
    acc, items = _items(X, Xt, N, W.device, uses_xt, run.algorithm)
    E = W - Q  # exact in float64 for float32 runs
    # GPFQ's runs record their residual u_N (a hand-made Run without one fails in _rows2).
    u = _rows2(cast(torch.Tensor, run.residual)) if row.identity_reads_samples else None
    reuse = _reusable_stats(run, X, Xt, V, uses_xt)
    err_inf = diffsq = None
    if items is None:
        if row.identity_reads_samples:
            raise ValueError(
                f"certifying a {run.algorithm.upper()} run (I6: u_N = Xw - Xt q, a vector in R^m) needs the "
                "data: pass the tensors X and Xt, or an iterable of (X_b, Xt_b) batches, not statistics"
            )
        if V is not None:
            acc = acc.transformed(V)
        err_sq = _err_sq_from_stats(acc, W, E, uses_xt)
    else:
        acc, err_sq, err_inf, diffsq = _stream(items, reuse, N, E, Q, V, u, uses_xt)
    order = run.order
    x_gram = sym_perm(acc.gram_X, order)
    gram = sym_perm(acc.gram_Xt, order) if uses_xt else x_gram
    lam = float(run.lam)
    Hp = piv = host_piv = None
    if row.factor is not None:
        Hp = gram.clone()
        Hp.diagonal().add_(lam)
        if reuse is not None and run.pivots is not None:
            piv = run.pivots  # the run's float64 factorization of these statistics; I1 checks it
        else:
            piv = pivots(Hp, lam, row.factor, columns=order.tolist(), factor_dtype=F64)
        d = torch.diagonal(piv.UH)
        host_piv = Pivots.from_factors(_host(piv.UH / d[None, :]), _host(piv.D), _host(piv.L_T))
    # E4: float32-chunk statistics, the run's own (its eta and pivots read them) or the ones used here.
    stats_err = acc.gram_rounding if isinstance(acc, TorchAccumulator) else None
    if stats_err is None and isinstance(run.stats, TorchAccumulator):
        stats_err = run.stats.gram_rounding
    def p(a: torch.Tensor) -> torch.Tensor:  # processing order (no copy for the natural order)
        return a if natural else a[:, order]

    natural = is_identity(order)
    dev = {"W": W, "Q": Q, "E": E, "W_p": p(W), "Q_p": p(Q), "E_p": p(E), "eta_p": p(eta), "order": order,
           "acc": acc, "Hp": Hp, "piv": piv, "u": u, "diffsq": diffsq}
    gram_h = _host(gram)  # one host copy when the feedback Gram matrix is X^T X itself
    x_gram_h = gram_h if x_gram is gram else _host(x_gram)
    return DeviceContext.from_statistics(
        _host_run(run), gram_p=gram_h, x_gram_p=x_gram_h, m=acc.m, piv=host_piv,
        err_sq=_host(err_sq), err_inf=err_inf, dev=dev, gram_rounding=stats_err,
    )


def _bound_checks(ctx: DeviceContext, X, Xt, p: float, V, samples=None) -> tuple[list, list[str]]:
    """``(bound checks, skipped labels)`` of the run of ``ctx`` (the inner run under incoherence)."""
    run = ctx.run
    if not ctx.entry.bound_names(run.rounding):
        return [], []
    uses_xt = ctx.uses_xt
    bctx: RunContext = ctx
    # Only B5 and B10.sup (stochastic) read the samples: data tensors on the host; the rest, statistics.
    if isinstance(X, torch.Tensor) and run.rounding == "stochastic":
        ((Xh, Xth),) = _host_pairs([(X, Xt)], V, uses_xt, run.algorithm)
        bctx = RunContext.build(run, Xh, Xth, piv=ctx.piv)
    checks, skipped = _bounds.evaluate(bctx, p), _bounds.unavailable(bctx)
    if samples is not None and skipped:
        if not callable(samples):
            raise TypeError("samples must be a callable returning a fresh iterable of batches")
        found = _bounds.per_sample(bctx, _host_pairs(samples(), V, uses_xt, run.algorithm), p)
        checks += found
        skipped = [lab for lab in skipped if lab not in {c.label for c in found}]
    return checks, skipped


def _host_run(run: Run) -> Run:
    """The record with host numpy arrays (float64 copies of the working-precision values)."""
    def h(a):
        return None if a is None else _host(a)

    # type(run): a subclass's fields (pt.owq's kept columns) travel with the record
    return type(run)(**{**run.__dict__, "W": h(run.W), "Q": h(run.Q), "eta": h(run.eta), "x": h(run.x),
                  "clipped": run.clipped.detach().cpu().numpy(),
                  "order": run.order.detach().cpu().numpy(), "w_ls": h(run.w_ls),
                  "residual": h(run.residual)})


def _host_pairs(batches, V, uses_xt: bool, algorithm: str):
    """``(X_b, Xt_b)`` host float64 pairs of a stream of batches, in the run's input basis (``V``)."""
    Vh = None if V is None else _host(V)
    for xb, xtb in _pairs(batches, uses_xt, f"the per-sample bounds of a {algorithm} run need"):
        xb, xtb = _host(xb), None if xtb is None else _host(xtb)
        if Vh is not None:
            xb = xb @ Vh.T
            xtb = None if xtb is None else xtb @ Vh.T
        yield xb, xtb


def _pairs(batches, uses_xt: bool, who_needs: str):
    """``(X_b, Xt_b)`` of a stream of batches (``Xt_b`` is ``None`` unless ``uses_xt``, when every item
    must be a pair; the error names ``who_needs`` them)."""
    for item in batches:
        pair = isinstance(item, tuple | list)
        if uses_xt and not (pair and len(item) == 2):
            raise ValueError(f"{who_needs} (X_b, Xt_b) pairs")
        yield (item[0], item[1]) if uses_xt else ((item[0] if pair else item), None)


def lower_matmul_t(A: torch.Tensor, L: torch.Tensor, panels: int = 8) -> torch.Tensor:
    r""":math:`AL^T` for lower triangular ``L``: the full product's sums less the zero upper triangle's
    terms. Column panel :math:`[j_0, j_1)` is :math:`A_{:, <j_1}L_{j_0:j_1, <j_1}^T` (``panels`` of them:
    a fraction :math:`(k+1)/2k` of a full product's flops; torch has no BLAS ``trmm``)."""
    N = L.shape[0]
    width = max(256, -(-N // panels))
    if width >= N:
        return A @ L.T
    out = torch.empty(A.shape[0], N, dtype=A.dtype, device=A.device)
    for j0 in range(0, N, width):
        j1 = min(j0 + width, N)
        out[:, j0:j1] = A[:, :j1] @ L[j0:j1, :j1].T
    return out


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
        if uses_xt:
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
    return None, _pairs(X, uses_xt, f"certifying a {algorithm} run from batches needs")


def _reusable_stats(run: Run, X, Xt, V, uses_xt: bool) -> TorchAccumulator | None:
    r"""The run's own statistics when the data given are the data it was computed from, else ``None``.

    Recomputing :math:`X^TX` costs as much as the quantization's own statistics; the check is cheap: the
    squared column norms (:math:`O(mN)`) must equal ``diag(run.stats)`` to ``STATS_MATCH_RTOL`` relative,
    plus, for float32 chunk products (E4), their bound :func:`ptqtheory.tolerances.gram_rounding` (the
    diagonal of :math:`|X|^T|X|` is the squared column norms). Other data (e.g. float64 inputs certifying
    a run computed on their float32 copies) and streamed batches (read only once) get their own statistics.
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
    pairs = [(Xd, stats.gram_X)] + ([(Xt.reshape(-1, Xt.shape[-1]), stats.gram_Xt)] if uses_xt else [])
    rel, abs_ = stats.gram_rounding or (0.0, 0.0)
    for data, S in pairs:
        col_sq = sum(((b.to(F64) ** 2).sum(0) for b, _ in batches_of(data, None)),
                     torch.zeros(data.shape[1], dtype=F64, device=data.device))
        if not torch.allclose(col_sq, torch.diagonal(S), rtol=STATS_MATCH_RTOL + rel, atol=abs_):
            return None
    return stats


def _stream(items, stats: TorchAccumulator | None, N: int, E, Q, V, u, uses_xt: bool):
    r"""One pass over the batches: the statistics (accumulated here unless ``stats`` is given) and, per
    row, :math:`\|Xw - \tilde Xq\|^2`, its sup norm (on the host) and :math:`\|u_N - (Xw - \tilde Xq)\|^2`."""
    acc = stats if stats is not None else TorchAccumulator(N, E.device, with_mismatch=uses_xt)
    sumsq, maxabs, diffsq = (torch.zeros(E.shape[0], dtype=F64, device=E.device) for _ in range(3))
    rows = 0
    for index, (Xb, Xtb) in enumerate(items):
        Xb = acc.rows("X batch", Xb, index)
        Xtb = None if Xtb is None else acc.rows("Xt batch", Xtb, index)
        if V is not None:
            Xb = Xb @ V.T
            Xtb = None if Xtb is None else Xtb @ V.T
        if stats is None:
            acc.add_rows(Xb, Xtb)
        # Xw - Xt q = X(w - q) + (X - Xt) q: no cancellation when w - q is small.
        out = E @ Xb.T
        if Xtb is not None:
            out += Q @ (Xb - Xtb).T
        sumsq += (out * out).sum(1)
        maxabs = torch.maximum(maxabs, out.abs().amax(1))
        if u is not None:
            b = Xb.shape[0]
            if rows + b > u.shape[1]:
                raise ValueError(f"the data have more rows than the GPFQ run's residual ({u.shape[1]})")
            diff = u[:, rows : rows + b].to(F64) - out
            diffsq += (diff * diff).sum(1)
        rows += Xb.shape[0]
    if rows == 0:
        raise ValueError("no calibration rows were given (X yielded no batches)")
    if u is not None and rows != u.shape[1]:
        raise ValueError(f"the data have {rows} rows but the GPFQ run's residual has {u.shape[1]}")
    return acc, sumsq, _host(maxabs), diffsq


def _err_sq_from_stats(acc: TorchAccumulator, W, E, uses_xt: bool) -> torch.Tensor:
    r""":math:`\|Xe\|^2`, or :math:`\|\tilde Xe + \Delta w\|^2 = \|Xw - \tilde Xq\|^2`, per row."""
    if not uses_xt:
        return ((E @ acc.gram_X) * E).sum(1)
    return (((E @ acc.gram_Xt) * E).sum(1) + 2 * ((E @ acc.cross_Xt_mismatch) * W).sum(1)
            + ((W @ acc.gram_mismatch) * W).sum(1))
