r"""What certificates and bounds read from a run and its data, computed once, in processing order.

:class:`RunContext` is the one interface the identities (:mod:`ptqtheory.identities`) and the bounds
(:mod:`ptqtheory.bounds`) read; its cached properties compute each quantity from the data held whole
(float64 or exact). The torch certificate's subclass (:class:`ptqtheory.torch_backend.certify.DeviceContext`)
computes the same quantities on its device from streamed float64 statistics: only how a quantity is
obtained differs, what is done with it is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Self, cast

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from . import _linalg
from ._validate import as_matrix, is_exact
from .alphabets import Alphabet
from .calibration import _gram
from .factor import DataQR, Pivots, pivots, pivots_from_data
from .orders import columns_in
from .records import Run
from .registry import Entry, entry
from .tolerances import allowance_unit, qr_refit_allowance


@dataclass(eq=False)
class RunContext:
    r"""A run and its data in processing order.

    ``Xf`` is the matrix whose pivots carry the error feedback: :math:`X`, or :math:`\tilde X` when
    the run reads both inputs (``uses_xt``; the registry's ``data`` column). ``piv`` (its pivots
    :math:`D` and factor :math:`L`) is computed by QR of the data (:func:`ptqtheory.factor.pivots_from_data`)
    unless the caller passes one it has (the run's own, or the torch backend's on the host).

    A :meth:`from_statistics` context has no per-sample data (``X``, ``Xt``, ``Xf_p`` are ``None``), only
    statistics and per-row quantities computed elsewhere (``given``). The properties bounds read (``x_col_sq``,
    ``xh_norm``, ``r0_sq``, ...) work in both kinds; ``has_data`` tells the per-sample bounds apart.
    """

    run: Run
    exact: bool
    order: np.ndarray
    lam: float
    X: np.ndarray | None  # original column order
    Xt: np.ndarray | None  # original column order (= X when the run used no quantized inputs)
    uses_xt: bool
    W: np.ndarray  # (n, N) original order
    Q: np.ndarray
    eta_p: np.ndarray  # processing order from here on
    x_p: np.ndarray
    delta_p: np.ndarray
    zero_p: np.ndarray
    clipped_p: np.ndarray
    Xf_p: np.ndarray | None
    Hf_p: np.ndarray
    gram_p: np.ndarray  # Xf^T Xf, processing order (Hf_p without the damping)
    piv: Pivots | None
    # Statistics-only contexts: see from_statistics (Qronos' w_LS, ||r_0||^2: a subclass's _least_squares).
    x_gram_p: np.ndarray | None = None
    n_samples: int | None = None
    given: dict = field(default_factory=dict)
    qr: DataQR | None = None  # the QR behind piv, kept when w_LS is needed (Qronos)
    # An alphabet run: delta_p is each row's largest gap (every bound holds with it), zero_p 0.
    alphabet: Alphabet | None = None
    # (rel, abs) of the pivots' statistics when formed by float32 chunk products (E4,
    # ptqtheory.tolerances.gram_rounding); None for float64 statistics and for build() (QR of the data).
    gram_rounding: tuple[float, float] | None = None

    @classmethod
    def build(cls, run: Run, X, Xt=None, factor: bool = True, piv: Pivots | None = None) -> Self:
        """The context of ``run`` on its data; ``piv`` reuses a factorization already computed."""
        W = np.atleast_2d(run.W)
        N = W.shape[1]
        Xa = as_matrix("X", X, N)
        exact = is_exact(W)
        if is_exact(Xa) != exact:
            raise ValueError("X must be exact (rationals) exactly when the run was")
        row = entry(run.algorithm)
        if row.uses_xt:
            if Xt is None:
                raise ValueError(f"Xt is required to certify a {run.algorithm} run")
            Xta = as_matrix("Xt", Xt, N, m=Xa.shape[0])
        else:
            Xta = Xa
        Xf_p = columns_in(Xta, np.asarray(run.order))
        gram = _gram(Xf_p)
        Hf_p = _damped(gram, run.lam)
        qr = None
        if piv is None and factor and row.factor is not None:
            what = row.factor
            if exact:
                piv = pivots(Hf_p, run.lam, what)
            elif row.least_squares:
                # w_LS is needed too: one QR of the data serves both (independent of the run's own).
                qr = DataQR.of(_linalg.augment(Xf_p, run.lam))
                piv = Pivots.from_ul(qr.UH, np.diag(Hf_p), run.lam, what)
            else:
                piv = pivots_from_data(Xf_p, run.lam, what)
        return cls(exact=exact, X=Xa, Xt=Xta, Xf_p=Xf_p, Hf_p=Hf_p, gram_p=gram, piv=piv, qr=qr,
                   **_run_fields(run, W, np.atleast_2d(run.Q)))

    @classmethod
    def from_statistics(cls, run: Run, *, gram_p: np.ndarray, x_gram_p: np.ndarray, m: int,
                        piv: Pivots | None, err_sq: np.ndarray, err_inf: np.ndarray | None = None,
                        **fields) -> Self:
        r"""A context without per-sample data (a run certified from streamed statistics).

        Parameters (processing order, float64 host arrays)
        ----------
        gram_p : the feedback Gram matrix (:math:`X^TX`, or :math:`\tilde X^T\tilde X` for Qronos).
        x_gram_p : :math:`X^TX` of the float-model inputs.
        m : number of samples.
        piv : the factorization of ``gram_p + lam I`` (``None`` for RTN).
        err_sq : :math:`\|Xw - \tilde Xq\|^2` per row; ``err_inf`` its sup norm if it was measured.
        fields : further dataclass fields of a subclass (e.g. device tensors).
        """
        W, Q = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (run.W, run.Q))
        return cls(
            exact=False, X=None, Xt=None, Xf_p=None, Hf_p=_damped(gram_p, float(run.lam)), gram_p=gram_p,
            piv=piv, x_gram_p=x_gram_p, n_samples=int(m),
            given={"err_sq": np.asarray(err_sq, float), "err_inf": err_inf}, **_run_fields(run, W, Q), **fields,
        )

    @cached_property
    def neighbours(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Per entry (processing order) ``(r, g)``: :math:`g_t` the length of the interval between
        consecutive rounding points that holds :math:`x_t`, and :math:`r_t` the distance from its lower
        end up to :math:`x_t`. A grid:
        :math:`g_t = \delta_t`, :math:`r_t = \delta_t(s_t - \lfloor s_t\rfloor)`,
        :math:`s_t = x_t/\delta_t + z_t` (the unbounded grid's interval); an alphabet: the local gap of
        :meth:`ptqtheory.Alphabet.neighbours`. Unbiased stochastic rounding inside the range has
        :math:`E[\eta_t^2\mid\text{past}] = r_t(g_t - r_t) \le g_t^2/4` (B3's per-run form)."""
        if self.alphabet is not None:
            return self.alphabet.neighbours(np.asarray(self.x_p, float))
        s = self.x_p / self.delta_p + self.zero_p
        return self.delta_p * (s - np.floor(s)), self.delta_p

    @property
    def entry(self) -> Entry:
        """The run's row of the registry (:mod:`ptqtheory.registry`)."""
        return entry(self.run.algorithm)

    @property
    def factorization(self) -> Pivots:
        """``piv``, where only runs with a factorization read it (the registry's ``factor``)."""
        assert self.piv is not None
        return self.piv

    @property
    def shape(self) -> tuple[int, int]:
        return self.W.shape

    @property
    def has_data(self) -> bool:
        """The per-sample data are at hand (False for :meth:`from_statistics` contexts)."""
        return self.X is not None

    @property
    def eps(self) -> float:
        """Unit of the allowances: ``GAMMA eps`` of the run's working precision
        (:func:`ptqtheory.tolerances.allowance_unit`; float64 for the reference, 0 for exact runs)."""
        return allowance_unit(self.run.precision)

    @cached_property
    def code_norm(self) -> np.ndarray:
        r"""Per row :math:`\|\delta\odot(|k| + |z| + 1)\|`: the size of the codes used, which scales the
        rounding slack of the grid (R2 of :mod:`ptqtheory.tolerances`)."""
        d, z, Q = (np.asarray(a, float) for a in (self.delta_p, self.zero_p, self.Q_p))
        out = np.empty(Q.shape[0])
        for i0 in range(0, Q.shape[0], 32):  # 32 rows at a time: the temporaries stay in cache
            i = slice(i0, i0 + 32)
            out[i] = np.linalg.norm(d[i] * (np.abs(Q[i] / d[i] + z[i]) + np.abs(z[i]) + 1.0), axis=1)
        return out

    @property
    def m(self) -> int:
        """Number of samples (rows of ``X``)."""
        if self.X is not None:  # has_data
            return self.X.shape[0]
        assert self.n_samples is not None  # from_statistics sets it
        return self.n_samples

    def _data(self, what: str) -> tuple[np.ndarray, np.ndarray]:
        """``(X, Xt)``; a context of statistics only (no ``X``, no ``Xt``) says that ``what`` needs them."""
        if self.X is None or self.Xt is None:
            raise ValueError(f"{what} needs the per-sample data; this context holds statistics only")
        return self.X, self.Xt

    @cached_property
    def half_delta_absL(self) -> tuple[np.ndarray, np.ndarray]:
        r"""Per row and column :math:`\frac12\sum_{s<j}|L_{js}|\delta_s` and
        :math:`\frac12\sum_{s\le j}|L_{js}|\delta_s` (processing order): B7's drift and error bounds,
        whose row maximum is B8's :math:`B`. One BLAS ``trmm`` (half the flops of a full product) with
        the strictly lower :math:`|L|`; the diagonal term :math:`\delta_j/2` (:math:`L_{jj} = 1`) is then
        added, never subtracted, so neither sum cancels."""
        A = np.abs(np.asarray(self.factorization.L, float))
        np.fill_diagonal(A, 0.0)
        d = np.asfortranarray(np.asarray(self.delta_p, float))
        if d.size == 0:
            drift = np.zeros_like(d)
        else:
            # 0.5 d A^T; the row-major A read column-major is A^T (upper): no copy of it.
            drift = scipy.linalg.blas.dtrmm(0.5, A.T, d, side=1, lower=0, trans_a=0)
        return drift, drift + 0.5 * d

    @cached_property
    def x_col_sq(self) -> np.ndarray:
        r""":math:`\|X_t\|^2` per column, processing order."""
        if self.has_data:
            X = np.asarray(self.X, float)
            return np.einsum("ij,ij->j", X, X)[self.order]
        assert self.x_gram_p is not None  # from_statistics sets it
        return np.diag(self.x_gram_p).copy()

    @cached_property
    def xf_col_sq(self) -> np.ndarray:
        """Squared column norms of the feedback matrix, processing order."""
        if self.has_data:
            Xf = np.asarray(self.Xf_p, float)
            return np.einsum("ij,ij->j", Xf, Xf)
        return np.diag(self.gram_p).copy()

    @cached_property
    def x_norm(self) -> float:
        r""":math:`\|X\|_F`."""
        if self.X is not None:  # has_data
            return float(np.linalg.norm(np.asarray(self.X[:, self.order], float)))
        return float(np.sqrt(max(float(np.sum(self.x_col_sq)), 0.0)))

    @cached_property
    def x_op_sq(self) -> float:
        r""":math:`\|X\|_2^2` (0 for empty data)."""
        if self.X is not None:  # has_data
            X = np.asarray(self.X[:, self.order], float)
            return float(np.linalg.norm(X, 2)) ** 2 if X.size else 0.0
        assert self.x_gram_p is not None  # from_statistics sets it
        return max(float(np.linalg.eigvalsh(self.x_gram_p)[-1]), 0.0)

    @cached_property
    def xh_norm(self) -> float:
        r""":math:`\|\hat X\|_F = (\sum_t\|X_t\|^2 + N\lambda)^{1/2}` (without forming :math:`\hat X`)."""
        return float(np.sqrt(max(float(np.sum(self.x_col_sq)), 0.0) + self.W.shape[1] * float(self.lam)))

    @cached_property
    def xfh_norm(self) -> float:
        """Frobenius norm of the augmented feedback matrix (without forming it)."""
        return float(np.sqrt(max(float(np.sum(self.xf_col_sq)), 0.0) + self.W.shape[1] * float(self.lam)))

    @cached_property
    def err_inf(self) -> np.ndarray | None:
        r""":math:`\|Xw - \tilde Xq\|_\infty` per row, or ``None`` when it was not measured."""
        if self.has_data:
            return np.max(np.abs(np.asarray(self.out, float)), axis=1)
        return self.given.get("err_inf")

    @cached_property
    def r0_sq(self) -> np.ndarray:
        r""":math:`\|r_0\|^2` per row (Qronos)."""
        return self._least_squares["r0_sq"]

    @cached_property
    def E(self) -> np.ndarray:
        """:math:`w - q` per row, original order."""
        return self.W - self.Q

    @cached_property
    def out(self) -> np.ndarray:
        r"""Rows of :math:`Xw - \tilde Xq`, formed without cancellation: :math:`X(w - q)`, or with quantized
        inputs :math:`\tilde X(w - q) + (X - \tilde X)w` (two small terms; the second is :attr:`mismatch_w`)."""
        X, Xt = self._data("Xw - Xt q per sample")
        if not self.uses_xt:
            return _linalg.dot(self.E, X.T)
        return _linalg.dot(self.E, Xt.T) + self.mismatch_w

    @cached_property
    def mismatch_w(self) -> np.ndarray:
        r"""Rows of :math:`(X - \tilde X)w` (n x m, original column order): the part of the target that
        the quantized inputs miss (zero without them), read by :attr:`out` and :attr:`_least_squares`."""
        X, Xt = self._data("X - Xt")
        return _linalg.dot(self.W, (X - Xt).T)

    @cached_property
    def err_sq(self) -> np.ndarray:
        return self.given["err_sq"] if "err_sq" in self.given else np.sum(self.out * self.out, axis=1)

    @cached_property
    def lhs_sq(self) -> np.ndarray:
        r""":math:`\|Xw - \tilde Xq\|^2 + \lambda\|w - q\|^2` per row."""
        return self.err_sq + self.lam * np.sum(self.E * self.E, axis=1)

    @cached_property
    def Xfh(self) -> np.ndarray:
        """The feedback matrix, augmented, in processing order (read by data contexts only)."""
        return _linalg.augment(cast(np.ndarray, self.Xf_p), self.lam)

    @cached_property
    def _least_squares(self) -> dict:
        r"""Qronos' least-squares fit from the data (the certificate's own QR, not the run's).

        Since :math:`\hat Xw = \hat{\tilde X}w + [(X - \tilde X)w; 0]` (the damping rows agree),
        :math:`w_{LS} = w + y` with :math:`y = \arg\min_y\|\hat{\tilde X}y - [\Delta w; 0]\|` and
        :math:`r_0 = [\Delta w - \tilde Xy;\ -\sqrt\lambda\,y]`, :math:`\Delta w = (X - \tilde X)w`
        (:attr:`mismatch_w`). Fitting this small residual, not :math:`\hat Xw`, forms no n x (m + N)
        target, takes two products (:math:`Q^T[\Delta w; 0]`, reading only the first m rows of :math:`Q`,
        and :math:`\tilde Xy`) instead of three, and cancels nothing large in :math:`r_0`.

        ``fitted_norm`` bounds :math:`\|\hat Xw\| \le \|\hat{\tilde X}w\| + \|\Delta w\|`, with
        :math:`\|\hat{\tilde X}w\|^2 = w^T\tilde Hw`: the size of the run's own fit, which sizes
        the refit allowance (:attr:`ls_refit`).
        """
        m = self.m
        dw = self.mismatch_w
        Xf_p = self.Xf_p
        assert Xf_p is not None  # mismatch_w needed the data (_data); build sets Xf_p with them
        if self.qr is not None:
            # DataQR factors the reversed columns: solve with R, then undo the reversal.
            rhs = self.qr.Q[:m].T @ dw.T
            y = scipy.linalg.solve_triangular(self.qr.R, rhs, check_finite=False)[::-1].T
        else:
            zeros = _linalg.zeros_like(dw, (self.shape[1], self.shape[0]))
            y = _linalg.lstsq(self.Xfh, np.concatenate([dw.T, zeros], axis=0)).T
        top = dw - _linalg.dot(y, Xf_p.T)
        r0_sq = _linalg.sq_norms(top, 1) + self.lam * _linalg.sq_norms(y, 1)
        fitted = None
        if not self.exact:  # only the float64 allowance reads it
            wHw = np.sum((self.W_p @ self.Hf_p) * self.W_p, axis=1)
            fitted = np.sqrt(np.maximum(wHw, 0.0)) + np.linalg.norm(dw, axis=1)
        return {"W_ls": self.W_p + y, "r0_sq": r0_sq, "fitted_norm": fitted}

    @cached_property
    def W_ls(self) -> np.ndarray:
        r""":math:`w_{LS} = \hat{\tilde X}^+ \hat X w` per row (processing order), fitted from the data."""
        return self._least_squares["W_ls"]

    @cached_property
    def ls_refit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""``(weights, fitted, r0)``: rounding sizes of the certificate's own :math:`w_{LS}` and
        :math:`\|r_0\|^2` (Qronos), for :func:`ptqtheory.identities.i4` / ``i5``. ``weights`` and ``fitted``
        in units of :attr:`eps` (:func:`ptqtheory.tolerances.qr_refit_allowance`: the QR of the data); ``r0``
        an absolute allowance of :math:`\|r_0\|^2` beyond them (0 here: :math:`r_0` is a difference of
        vectors, not of squared norms)."""
        n = self.shape[0]
        if self.exact:
            return np.zeros(n), np.zeros(n), np.zeros(n)
        w_ls = np.linalg.norm(np.asarray(self.W_ls, float), axis=1)
        r0 = np.sqrt(np.abs(np.asarray(self.r0_sq, float)))
        weights, fitted = qr_refit_allowance(self.cond_H, w_ls, r0, self.xfh_norm / np.sqrt(self.shape[1]),
                                             self._least_squares["fitted_norm"])
        return weights, fitted, np.zeros(n)

    # -- what the identities read (processing order) ------------------------------------------------

    @cached_property
    def W_p(self) -> np.ndarray:
        return columns_in(self.W, self.order)

    @cached_property
    def Q_p(self) -> np.ndarray:
        return columns_in(self.Q, self.order)

    @cached_property
    def E_p(self) -> np.ndarray:
        """:math:`w - q` per row, processing order."""
        return columns_in(self.E, self.order)

    @cached_property
    def w_q_norm(self) -> np.ndarray:
        r""":math:`\|w\| + \|q\|` per row (the size of the rounding of :math:`w - q`)."""
        return (np.linalg.norm(np.asarray(self.W, float), axis=1)
                + np.linalg.norm(np.asarray(self.Q, float), axis=1))

    @cached_property
    def L_fro(self) -> float:
        r""":math:`\|L\|_F` of the factorization."""
        return float(np.linalg.norm(np.asarray(self.factorization.L, float)))

    @cached_property
    def eta_norm(self) -> np.ndarray:
        return np.linalg.norm(np.asarray(self.eta_p, float), axis=1)

    def structure(self, which: str = "E") -> tuple[np.ndarray, np.ndarray]:
        r"""Per row :math:`\|a - L\eta\|` and :math:`\|a\|` with :math:`a = w - q` (``"E"``) or
        :math:`a = w_{LS} - q` (``"ls"``); squared for exact inputs (no square roots of rationals)."""
        A = self.E_p if which == "E" else self.W_ls - self.Q_p
        if self.exact or self.eta_p.size == 0:
            resid = A - _linalg.dot(self.eta_p, self.factorization.L.T)  # rows: a - L eta
        else:
            # eta L^T by BLAS trmm (L triangular: half a full product's flops); eta read column-major is eta^T.
            L = np.asarray(self.factorization.L, float)
            eta = np.ascontiguousarray(self.eta_p, dtype=float)
            resid = A - scipy.linalg.blas.dtrmm(1.0, np.asfortranarray(L), eta.T, side=0, lower=1).T
        num = np.asarray(_linalg.sq_norms(resid, 1))
        den = np.asarray(_linalg.sq_norms(A, 1))
        if num.dtype == object:
            return num, den
        return np.sqrt(num), np.sqrt(den)

    @cached_property
    def h_quadratic(self) -> np.ndarray:
        r""":math:`(w - q)^TH(w - q)` per row, through the formed :math:`H` (I3's left side)."""
        return np.sum(_linalg.dot(self.E_p, self.Hf_p) * self.E_p, axis=1)

    @cached_property
    def abs_h_quadratic(self) -> np.ndarray:
        r""":math:`|w - q|^T|H|\,|w - q|` per row (the size of I3's rounding)."""
        A = np.abs(np.asarray(self.E_p, float))
        return np.sum((A @ np.abs(np.asarray(self.Hf_p, float))) * A, axis=1)

    @cached_property
    def cond_H(self) -> float:
        r""":math:`\kappa(H)` of the feedback matrix: exact 2-norm value (SVD) up to N = 128, else
        LAPACK's 1-norm estimate from the factor in hand (within a small factor of :math:`\kappa_2`;
        it only scales tolerances). Infinite for exact inputs, where no tolerance is needed."""
        if self.exact:
            return float("inf")
        Hp = np.asarray(self.Hf_p, float)
        N = Hp.shape[0]
        if N <= 128:
            return float(np.linalg.cond(Hp))
        F = self.factorization
        Lrev = (F.U1 * np.sqrt(F.D)[None, :])[::-1, ::-1]  # J H J = Lrev Lrev^T
        rcond, info = scipy.linalg.lapack.dpocon(np.asfortranarray(Lrev), float(np.abs(Hp).sum(0).max()),
                                                 uplo="L")
        return float("inf") if info != 0 or rcond == 0 else float(1.0 / rcond)

    def pivot_forms(self, full: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        """I1's other forms of every pivot, ``(PivotCheck.D_projection, PivotCheck.D_inverse)`` (``O(N^4)``;
        ``None`` unless ``full``)."""
        if not full:
            return None, None
        D = self.factorization.D
        N = D.shape[0]
        Xhp, Hp = self.Xfh, self.Hf_p
        D_proj, D_inv = _linalg.zeros_like(D), _linalg.zeros_like(D)
        for t in range(N):
            c = _linalg.lstsq(Xhp[:, t + 1 :], Xhp[:, t])
            r = Xhp[:, t] - (_linalg.dot(Xhp[:, t + 1 :], c) if t + 1 < N else 0)
            D_proj[t] = np.sum(r * r)
            e1 = _linalg.zeros_like(D, (N - t, 1))
            e1[0, 0] = 1
            sol = _linalg.lstsq(Hp[t:, t:], e1) if self.exact else np.linalg.solve(Hp[t:, t:], e1)
            D_inv[t] = 1 / sol[0, 0]
        return D_proj, D_inv

    @cached_property
    def logdet_gap(self) -> float:
        r""":math:`|\sum_t\log D_t - \log\det H|` (exact: :math:`|\prod_t D_t - \det H|`)."""
        D = self.factorization.D
        if self.exact:
            import sympy

            return float(abs(np.prod(D) - sympy.Matrix(self.Hf_p.tolist()).det()))
        # log det H by an independent Cholesky of the formed H (LAPACK potrf: N^3/3 flops, half of slogdet's LU)
        Hp = np.asarray(self.Hf_p, float)
        if Hp.size == 0:
            return float(abs(np.sum(np.log(D))))
        C, info = scipy.linalg.lapack.dpotrf(Hp, lower=1, clean=0)
        if info != 0:
            return float("inf")
        logdet = 2.0 * float(np.sum(np.log(np.diag(C))))
        return float(abs(np.sum(np.log(D)) - logdet))

    @cached_property
    def gpfq_sides(self) -> tuple[np.ndarray, np.ndarray]:
        r"""``(||u_N||, ||u_N - (Xw - Xt q)||)`` per row: I6's state and its distance to the data's value."""
        u = np.atleast_2d(cast(np.ndarray, self.run.residual))  # GPFQ's runs record u_N
        return (np.sqrt(np.asarray(_linalg.sq_norms(u, 1), float)),
                np.sqrt(np.asarray(_linalg.sq_norms(u - self.out, 1), float)))

    @cached_property
    def weighted(self) -> np.ndarray:
        r""":math:`\sum_t \eta_t^2 D_t` per row."""
        return _linalg.dot(self.eta_p * self.eta_p, self.factorization.D)

    @cached_property
    def clipped_rows(self) -> np.ndarray:
        return np.any(self.clipped_p, axis=1)


def _run_fields(run: Run, W: np.ndarray, Q: np.ndarray) -> dict:
    """The fields both constructors read off ``run`` (and its weights ``W``, ``Q``): the order, the
    damping and the per-entry arrays in processing order (``delta_p``, ``zero_p``: see ``alphabet``)."""
    order = np.asarray(run.order)
    if isinstance(run.grid, Alphabet):
        delta, zero, alphabet = run.grid.step_bound(*W.shape), np.zeros(W.shape), run.grid
    else:
        (delta, zero, _, _), alphabet = run.grid.views(*W.shape), None
    per_entry = {"eta_p": run.eta, "x_p": run.x, "delta_p": delta, "zero_p": zero, "clipped_p": run.clipped}
    return {"run": run, "order": order, "lam": run.lam, "uses_xt": entry(run.algorithm).uses_xt, "W": W, "Q": Q,
            "alphabet": alphabet, **{k: columns_in(np.atleast_2d(a), order) for k, a in per_entry.items()}}


def _damped(G: np.ndarray, lam) -> np.ndarray:
    """``G + lam I`` as a new array (exact or float)."""
    H = G.copy()
    idx = np.arange(G.shape[0])
    H[idx, idx] = H[idx, idx] + lam
    return H
