r"""The pivots :math:`D_t` and the unit triangular factor :math:`L` of :math:`H` (THEORY.md I1, A2', A3).

With :math:`H^{-1} = C C^T` (:math:`C` lower), THEORY.md defines :math:`D_t = C_{tt}^{-2}` and
:math:`L = C \operatorname{diag}(C)^{-1}`. We never form :math:`H^{-1}`: the "UL" factorization
:math:`H = U_1 \operatorname{diag}(D) U_1^T` (:math:`U_1` unit upper, QuIP's
:math:`\mathring U + I`) gives both, since :math:`C = U_1^{-T}\operatorname{diag}(D)^{-1/2}` and so
:math:`L = U_1^{-T}` and :math:`L^T = U_1^{-1}`.

The OPTQ update (A2') reads :math:`w_{>t} \mathrel{-}= \eta_t L_{>t,t}`, i.e. row ``t`` of
:math:`L^T`; GPTQ writes the same row as :math:`U_{t,>t}/U_{tt}` with :math:`H^{-1} = U^T U`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.linalg
import sympy

from . import _linalg
from ._validate import _as_array, check_choice, check_lam, check_permutation, is_exact, largest
from .tolerances import allowance_unit, check_magnitude, lam_range, singular_threshold

__all__ = ["DataQR", "Pivots", "SingularHessianError", "pivots", "pivots_from_data"]


class SingularHessianError(ValueError):
    """``H = X^T X + lam I`` is singular (or numerically singular) for the ``lam`` given."""


@dataclass(frozen=True, eq=False)
class Pivots:
    r"""The factorization :math:`H = U_1 \operatorname{diag}(D) U_1^T` in processing order.

    Attributes
    ----------
    U1 : ndarray, shape (N, N)
        Unit upper triangular; :math:`U_1 - I` is LDLQ's :math:`\mathring U`.
    D : ndarray, shape (N,)
        The pivots :math:`D_t` of THEORY.md I1.
    """

    U1: np.ndarray
    D: np.ndarray

    @classmethod
    def from_factors(cls, U1: np.ndarray, D: np.ndarray, L_T: np.ndarray) -> Pivots:
        r"""Pivots whose :math:`L^T = U_1^{-1}` was already computed (e.g. on a device): no second
        inversion on the host."""
        piv = cls(U1=U1, D=D)
        piv.__dict__["L_T"] = L_T  # the cached_property's slot (frozen dataclass: no setattr)
        return piv

    @classmethod
    def from_ul(cls, UH: np.ndarray, diag_H: np.ndarray, lam=0.0, what: str = "H", columns=None) -> Pivots:
        r"""Pivots from the "UL" factor :math:`U_H` (:math:`H = U_HU_H^T`; :math:`D`, :math:`U_1` as in
        :func:`ptqtheory._linalg.udu`); raises :class:`SingularHessianError` as :func:`check_definite` does
        (``diag_H``: the diagonal of :math:`H`)."""
        d = np.diag(UH).copy()
        D = d * d
        check_definite(D, diag_H, lam, what, columns)
        with np.errstate(divide="ignore", invalid="ignore"):
            U1 = UH / d[None, :]
        return cls(U1=np.ascontiguousarray(U1), D=D)

    @cached_property
    def L_T(self) -> np.ndarray:
        r""":math:`L^T = U_1^{-1}` (unit upper); row ``t`` right of the diagonal is OPTQ's update."""
        if is_exact(self.U1):
            inv = sympy.Matrix(self.U1.tolist()).inv()
            return np.array(inv.tolist(), dtype=object)
        return unit_upper_inverse(self.U1)

    @cached_property
    def L(self) -> np.ndarray:
        """The unit lower triangular :math:`L` of THEORY.md I2 (``w - q = L eta``)."""
        return self.L_T.T.copy()


def unit_upper_inverse(U1: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """:math:`U_1^{-1}` of a unit upper triangular float64 ``U1`` by LAPACK trtri: :math:`N^3/3` flops, a
    third of a triangular solve against the identity. The row-major ``U1`` read column-major is the
    lower triangle :math:`U_1^T`: inverting it (in place when ``overwrite``) gives :math:`U_1^{-1}`
    row-major with no copy; trtri leaves the other triangle as it was: zero."""
    inv, info = scipy.linalg.lapack.dtrtri(U1.T, lower=1, unitdiag=1, overwrite_c=int(overwrite))
    if info != 0:
        raise np.linalg.LinAlgError(f"LAPACK dtrtri failed (info={info})")
    return inv.T


def singular_message(H: np.ndarray, lam, what: str, detail: str, columns=None) -> str:
    Hf = np.asarray(H, dtype=float)
    N = Hf.shape[0]
    # A 1-D H is its diagonal: the torch backend reports from diag(H) without copying H to the host.
    gram_diag = (Hf if Hf.ndim == 1 else np.diag(Hf)) - float(lam)
    dead = np.flatnonzero(gram_diag <= 0)
    if columns is not None:  # H is in processing order: report the caller's column indices
        dead = np.sort(np.asarray(columns)[dead])
    mean_diag = float(np.mean(gram_diag)) if N else 0.0
    parts = [f"{what} = {'Xt^T Xt' if what == 'Ht' else 'X^T X'} + lam*I is singular or numerically singular "
             f"with lam = {float(lam):g} ({detail})."]
    if dead.size:
        shown = ", ".join(str(int(j)) for j in dead[:10])
        more = "" if dead.size <= 10 else f" (+{dead.size - 10} more)"
        parts.append(f"Columns with no activation (dead columns): {shown}{more}.")
    parts.append(
        "Set lam > 0: an absolute value (lam=...), or GPTQ's convention "
        f"lam=pt.Damping.percdamp(0.01), which here gives lam = {0.01 * mean_diag:g}; "
        "the damping used is recorded in the run."
    )
    return " ".join(parts)


def check_definite(D: np.ndarray, H: np.ndarray, lam, what: str, columns=None, precision="float64") -> None:
    """Raise if a pivot is below ``N eps max(diag H)`` (``eps`` of the factorization's ``precision``),
    where the algorithms would divide by rounding noise; ``H`` may be given as its diagonal."""
    N = D.shape[0]
    diag = H if np.ndim(H) == 1 else np.diag(H)
    scale = float(np.max(diag)) if N else 0.0
    tiny = singular_threshold(N, scale, precision)
    t = int(np.argmin(D))
    if not D[t] > tiny:
        raise SingularHessianError(singular_message(
            H, lam, what, f"pivot D_t = {D[t]:.3g} at step {t} is below N*eps*max(diag) = {tiny:.3g}", columns))


@dataclass(frozen=True, eq=False)
class DataQR:
    r"""Economic QR of :math:`\hat X` with its columns reversed: :math:`\hat X J = Q R'`.

    It yields the pivots (:attr:`UH`) and least-squares fits on any *trailing* columns
    :math:`\hat X_{\ge s}` (:meth:`lstsq_trailing`; the leading ones after the reversal): Qronos's
    :math:`w_{LS}` (:math:`s = 0`) and its first step (:math:`s = 1`) share one factorization.
    """

    Q: np.ndarray
    R: np.ndarray

    @classmethod
    def of(cls, Xh: np.ndarray) -> DataQR:
        N = Xh.shape[1]
        if Xh.shape[0] < N:
            raise ValueError("the QR route needs the augmented data [X; sqrt(lam) I] with >= N rows")
        Q, R = scipy.linalg.qr(Xh[:, ::-1], mode="economic", check_finite=False)
        return cls(Q=Q, R=R)

    @property
    def UH(self) -> np.ndarray:
        r""":math:`U_H = JR'^TJ` (:math:`H = U_HU_H^T`), in processing order."""
        return self.R.T[::-1, ::-1]

    def lstsq_trailing(self, B: np.ndarray, s: int = 0) -> np.ndarray:
        r""":math:`\arg\min_V \|\hat X_{\ge s} V - B\|` for ``B`` of shape (m + N, k); rows of the
        result follow the processing order of columns ``s..N-1``."""
        k = self.R.shape[0] - s
        y = scipy.linalg.solve_triangular(self.R[:k, :k], self.Q[:, :k].T @ B, check_finite=False)
        return y[::-1]


def pivots_from_data(Xp: np.ndarray, lam=0.0, what: str = "H", columns=None) -> Pivots:
    r"""The factorization of :math:`H = X^TX + \lambda I` computed from the data by QR, not from :math:`H`.

    :math:`U_H` as in :class:`DataQR`, for :math:`\hat X = [X; \sqrt\lambda I]`. Householder QR works on
    the data, so small pivots carry a relative error of about :math:`\epsilon\sqrt{\kappa(H)}` instead of the
    :math:`\epsilon\,\kappa(H)` of a Cholesky of the formed :math:`H`: the identities hold to ~1e-12 even at
    :math:`\kappa(H) = 10^8`. Used with the data at hand (numpy reference); :func:`pivots` takes statistics.

    :math:`R'` is computed in two Householder stages, which is the QR of :math:`\hat X` without
    forming it: :math:`XJ = Q_0R_0` (LAPACK ``geqrt``, blocked with block size 128, on one column-major
    copy of :math:`XJ` that it overwrites: on the machines measured about half the time of
    ``scipy.linalg.qr``, ``geqrf`` with LAPACK's default block size 32), then
    :math:`[R_0; \sqrt\lambda I] = Q_1R'` (LAPACK ``tpqrt``, which exploits the two triangles:
    :math:`O(N^3)` instead of the :math:`O(mN^2)` of the first stage). A row permutation of
    :math:`\sqrt\lambda J` gives :math:`\sqrt\lambda I`, so the reversal of the damping block costs nothing.

    Parameters
    ----------
    Xp : ndarray, shape (m, N)
        Calibration data in processing order (not augmented).
    lam : float
        Damping :math:`\lambda \ge 0`.
    what, columns
        For the error message, as in :func:`pivots`.
    """
    m, N = Xp.shape
    k = min(m, N)
    R = np.zeros((N, N), order="F")
    if k:
        A = np.array(Xp[:, ::-1], order="F")  # always a copy: geqrt overwrites it
        A, _, info = scipy.linalg.lapack.dgeqrt(min(128, k), A, overwrite_a=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"LAPACK dgeqrt failed (info={info})")
        R[:k] = A[:k]
        for j in range(k):  # below the diagonal geqrt stores its reflectors: clear them, column by column
            R[j + 1 :, j] = 0.0
    if lam != 0:
        B = np.asfortranarray(np.sqrt(lam) * np.eye(N))
        R, *_, info = scipy.linalg.lapack.dtpqrt(N, min(N, 64), R, B, overwrite_a=1, overwrite_b=1)
        if info != 0:
            raise np.linalg.LinAlgError(f"LAPACK dtpqrt failed (info={info})")
        # tpqrt writes R' over the upper triangle and leaves the (zero) rest as it was.
    return Pivots.from_ul(R.T[::-1, ::-1], np.sum(Xp * Xp, axis=0) + lam, lam, what, columns)


def pivots(H: np.ndarray, lam=0.0, what: str = "H", columns=None) -> Pivots:
    r"""Factor a positive definite ``H`` and return its pivots; raise if ``H`` is singular.

    Parameters
    ----------
    H : ndarray, shape (N, N)
        :math:`X^T X + \lambda I` in processing order (float64 or exact rationals).
    lam : float
        The damping already inside ``H``; used only for the error message.
    what : str
        Name of the matrix in the error message (``"H"`` or ``"Ht"``).
    columns : array_like of int, optional
        ``columns[t]`` is the caller's index of processing column ``t`` (the order); dead
        columns are reported with these indices.

    Raises
    ------
    ValueError
        Unless ``H`` is a square, symmetric, finite real (or exact) matrix inside the range R1 (it
        scales like ``X^T X``), ``lam >= 0``, ``what`` in ("H", "Ht") and ``columns`` a permutation.
    SingularHessianError
        If the Cholesky factorization fails or a pivot is below ``N * eps * max(diag(H))``: the
        algorithms would then divide by rounding noise. The message says how to set ``lam``.
    """
    H = _as_array("H", H)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or H.shape[0] == 0:
        raise ValueError(f"H must be a square (N, N) matrix with N >= 1; got shape {H.shape}")
    exact = is_exact(H)
    if not exact:
        check_magnitude("H", largest(H), lam_range(),
                        fix="H scales like X^T X: rescale X by a power of two, 2.0**k (H by 4.0**k)")
        # Cholesky reads one triangle only: an H not symmetric to rounding would silently be another matrix.
        if np.max(np.abs(H - H.T)) > allowance_unit() * largest(H):
            raise ValueError("H must be symmetric (H = X^T X + lam I); got max |H - H^T| = "
                             f"{float(np.max(np.abs(H - H.T))):.3g}. Symmetrize it: (H + H.T) / 2")
    lam = check_lam(lam, exact)
    check_choice("what", what, ("H", "Ht"))
    if columns is not None:
        check_permutation(columns, H.shape[0])
    try:
        U1, D = _linalg.udu(H)
    except np.linalg.LinAlgError as exc:
        message = singular_message(H, lam, what, "Cholesky factorization failed", columns)
        raise SingularHessianError(message) from exc
    if not exact:
        check_definite(D, H, lam, what, columns)
    return Pivots(U1=U1, D=D)
