"""The few linear-algebra primitives the reference algorithms need, for float64 and exact rationals.

The reference algorithms (A2 paper iteration, A3, A4, certificates) are written once, on numpy
arrays. Float64 arrays go to LAPACK through scipy; object arrays of ``sympy.Rational`` go to sympy's
exact solvers, so that the THEORY.md T6 tests run *the same code* in exact arithmetic.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import sympy

from ._validate import is_exact
from .backend import NUMPY

__all__ = ["augment", "dot", "lstsq", "sq_norms", "udu", "zeros_like"]


def _from_sympy(M: sympy.Matrix, ndim: int) -> np.ndarray:
    out = np.array(M.tolist(), dtype=object).reshape(M.rows, M.cols)
    return out if ndim == 2 else out[:, 0]


# The product operations are the numpy backend's (one implementation).
dot = NUMPY.dot
zeros_like = NUMPY.zeros_like


def sq_norms(A: np.ndarray, axis: int) -> np.ndarray:
    """Squared Euclidean norms along ``axis`` (no square root, so exact inputs stay exact)."""
    return np.sum(A * A, axis=axis)


def lstsq(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    r"""Least-squares solution :math:`\arg\min_C \|A C - B\|_F` (minimum norm if ``A`` is rank deficient).

    Exact inputs need ``A`` of full column rank: solved exactly from :math:`A^TAC = A^TB` (no minimum norm)."""
    if A.shape[1] == 0:
        return zeros_like(A, (0, *B.shape[1:]))
    if is_exact(A) or is_exact(B):
        M = sympy.Matrix(A.tolist())
        rhs = sympy.Matrix((B if B.ndim == 2 else B[:, None]).tolist())
        sol = (M.T * M).LUsolve(M.T * rhs)
        return _from_sympy(sol, B.ndim)
    # QR with column pivoting (LAPACK gelsy): minimum-norm like the SVD route, several times faster.
    return scipy.linalg.lstsq(A, B, lapack_driver="gelsy", check_finite=False)[0]


def udu(H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Factor :math:`H = U_1 \operatorname{diag}(D) U_1^T` with :math:`U_1` unit upper triangular: QuIP's
    :math:`H = (\mathring U + I) D (\mathring U + I)^T` (THEORY.md A3), the OPTQ pivots :math:`D_t` (I1).

    Float64 goes through LAPACK's Cholesky of the reversed matrix: :math:`J H J = L' L'^T` gives
    :math:`H = U_H U_H^T` with :math:`U_H = J L' J`, then :math:`D = \operatorname{diag}(U_H)^2` and
    :math:`U_1 = U_H \operatorname{diag}(U_H)^{-1}`. GPTQ's :math:`U` (:math:`H^{-1} = U^T U`) is
    :math:`U_H^{-1}` (:math:`C = U_H^{-T}`, :mod:`ptqtheory.factor`); no inverse of ``H`` is formed.
    Raises ``numpy.linalg.LinAlgError`` when ``H`` is not positive definite.
    """
    if is_exact(H):
        L, Dm = sympy.Matrix(H[::-1, ::-1].tolist()).LDLdecomposition(hermitian=False)
        D = np.array([Dm[i, i] for i in range(Dm.rows)][::-1], dtype=object)
        # sympy divides by a zero pivot without raising (nan/zoo): is_positive is then not True.
        if not all(d.is_positive is True for d in D):
            raise np.linalg.LinAlgError("H is not positive definite")
        U1 = _from_sympy(L, 2)[::-1, ::-1].copy()
        return U1, D
    Lr = scipy.linalg.cholesky(H[::-1, ::-1], lower=True, check_finite=False)
    UH = np.ascontiguousarray(Lr[::-1, ::-1])
    d = np.diag(UH)
    return UH / d[None, :], d * d


def augment(Xp: np.ndarray, lam) -> np.ndarray:
    r""":math:`\hat X = [X; \sqrt\lambda I]`; exact inputs need :math:`\lambda` a rational square."""
    N = Xp.shape[1]
    if is_exact(Xp):
        root = sympy.sqrt(lam)
        if not root.is_rational:
            raise ValueError("exact arithmetic needs lam to be the square of a rational")
        eye = zeros_like(Xp, (N, N))
        for i in range(N):
            eye[i, i] = root
        return np.vstack([Xp, eye])
    return np.vstack([Xp, np.sqrt(lam) * np.eye(N)])
