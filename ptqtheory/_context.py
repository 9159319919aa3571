"""What certificates and bounds read from a run and its data, computed once, in processing order."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import _linalg
from ._validate import as_matrix, is_exact
from .calibration import gram
from .factor import Pivots, pivots, pivots_from_data
from .records import Run


@dataclass(eq=False)
class RunContext:
    r"""A run and its data in processing order.

    ``Xf`` is the matrix whose pivots carry the error feedback: :math:`X` for OPTQ/LDLQ/RTN,
    :math:`\tilde X` for Qronos and GPFQ. ``piv`` (its pivots :math:`D` and factor :math:`L`) is
    computed from the data by QR (see :func:`ptqtheory.factor.pivots_from_data`).
    """

    run: Run
    exact: bool
    order: np.ndarray
    lam: object
    X: np.ndarray  # original column order
    Xt: np.ndarray  # original column order (= X when the run used no quantized inputs)
    uses_xt: bool
    W: np.ndarray  # (n, N) original order
    Q: np.ndarray
    eta_p: np.ndarray  # processing order from here on
    x_p: np.ndarray
    delta_p: np.ndarray
    zero_p: np.ndarray
    clipped_p: np.ndarray
    Xf_p: np.ndarray
    Hf_p: np.ndarray
    Gram_p: np.ndarray
    piv: Pivots | None

    @classmethod
    def build(cls, run: Run, X, Xt=None, factor: bool = True) -> RunContext:
        W = np.atleast_2d(run.W)
        n, N = W.shape
        Xa = as_matrix("X", X, N)
        exact = is_exact(W)
        if is_exact(Xa) != exact:
            raise ValueError("X must be exact (rationals) exactly when the run was")
        uses_xt = run.algorithm in ("qronos", "gpfq")
        if uses_xt:
            if Xt is None:
                raise ValueError(f"Xt is required to certify a {run.algorithm} run")
            Xta = as_matrix("Xt", Xt, N, m=Xa.shape[0])
        else:
            Xta = Xa
        order = np.asarray(run.order)
        delta, zero, _, _ = run.grid.expand(n, N)
        Xf_p = Xta[:, order]
        G0 = gram(Xf_p)
        Hf_p = G0 + run.lam * np.eye(N, dtype=G0.dtype)
        piv = None
        if factor and run.algorithm not in ("rtn", "gpfq"):
            what = "Ht" if uses_xt else "H"
            piv = (pivots(Hf_p, run.lam, what) if exact
                   else pivots_from_data(_linalg.augment(Xf_p, run.lam), run.lam, what))
        return cls(
            run=run, exact=exact, order=order, lam=run.lam, X=Xa, Xt=Xta, uses_xt=uses_xt,
            W=W, Q=np.atleast_2d(run.Q), eta_p=np.atleast_2d(run.eta)[:, order],
            x_p=np.atleast_2d(run.x)[:, order], delta_p=delta[:, order], zero_p=zero[:, order],
            clipped_p=np.atleast_2d(run.clipped)[:, order], Xf_p=Xf_p, Hf_p=Hf_p, Gram_p=G0,
            piv=piv,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.W.shape

    @cached_property
    def E(self) -> np.ndarray:
        """:math:`w - q` per row, original order."""
        return self.W - self.Q

    @cached_property
    def out(self) -> np.ndarray:
        r"""Rows of :math:`Xw - \tilde Xq = X(w - q) + (X - \tilde X)q` (no cancellation)."""
        out = _linalg.dot(self.E, self.X.T)
        if self.uses_xt:
            out = out + _linalg.dot(self.Q, (self.X - self.Xt).T)
        return out

    @cached_property
    def err_sq(self) -> np.ndarray:
        return np.sum(self.out * self.out, axis=1)

    @cached_property
    def lhs_sq(self) -> np.ndarray:
        r""":math:`\|Xw - \tilde Xq\|^2 + \lambda\|w - q\|^2` per row."""
        return self.err_sq + self.lam * np.sum(self.E * self.E, axis=1)

    @cached_property
    def Xh(self) -> np.ndarray:
        """:math:`[X; \\sqrt\\lambda I]` in processing order."""
        return _linalg.augment(self.X[:, self.order], self.lam)

    @cached_property
    def Xfh(self) -> np.ndarray:
        """The feedback matrix, augmented, in processing order."""
        return _linalg.augment(self.Xf_p, self.lam)

    @cached_property
    def W_ls(self) -> np.ndarray:
        r""":math:`w_{LS} = \hat{\tilde X}^+ \hat X w` per row (processing order), fitted from the data."""
        targets = _linalg.dot(self.W[:, self.order], self.Xh.T)
        return _linalg.lstsq(self.Xfh, targets.T).T

    @cached_property
    def r0(self) -> np.ndarray:
        r"""Rows of :math:`r_0 = \hat Xw - \hat{\tilde X} w_{LS}` (length m + N)."""
        return _linalg.dot(self.W[:, self.order], self.Xh.T) - _linalg.dot(self.W_ls, self.Xfh.T)

    @cached_property
    def weighted(self) -> np.ndarray:
        r""":math:`\sum_t \eta_t^2 D_t` per row."""
        return _linalg.dot(self.eta_p * self.eta_p, self.piv.D)

    @cached_property
    def clipped_rows(self) -> np.ndarray:
        return np.any(self.clipped_p, axis=1)
