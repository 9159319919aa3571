r"""Calibration statistics :math:`H`, :math:`\tilde H`, :math:`G` and the damping conventions.

THEORY.md's :math:`H = X^T X + \lambda I` is *unnormalized*. Tools disagree on how they damp, so
every convention is converted to the absolute :math:`\lambda` explicitly and the value is recorded:

* absolute: :math:`\lambda` as given;
* GPTQ's ``percdamp`` :math:`p`: :math:`\lambda = p \cdot \operatorname{mean}\operatorname{diag}(X^T X)`.
  GPTQ scales its Hessian by :math:`2/m` and adds :math:`p\cdot\operatorname{mean}\operatorname{diag}`
  of the *scaled* matrix; scaling back by :math:`m/2` gives the same :math:`\lambda` here;
* ``alpha * lambda_max``: :math:`\lambda = \alpha\,\lambda_{\max}(X^T X)` (a Brevitas convention).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import SupportsFloat

import numpy as np

from ._validate import as_matrix, check_bool, check_lam, check_positive_int, check_real, is_exact

__all__ = ["Accumulator", "Damping", "gram", "hessian", "resolve_lam"]


KINDS = ("absolute", "percdamp", "lambda_max")
_VALUE_NAME = {"absolute": "lam", "percdamp": "p", "lambda_max": "alpha"}


@dataclass(frozen=True)
class Damping:
    """A damping convention, converted to the absolute ``lam`` of THEORY.md by :meth:`resolve`.

    Build one with :meth:`absolute`, :meth:`percdamp` or :meth:`lambda_max`. With ``auto=True``
    (GPTQ-style automatic damping, only when asked) an algorithm raises ``lam`` (:meth:`raised`)
    until ``H`` is numerically positive definite, at most ``max_tries`` times, and records the value
    used. Every field is checked on construction (``TypeError``/``ValueError`` naming it).
    """

    kind: str
    value: float
    auto: bool = False
    max_tries: int = 8

    def __post_init__(self):
        if not isinstance(self.kind, str) or self.kind not in KINDS:
            raise ValueError(f"Damping kind must be one of {KINDS}; got {self.kind!r}")
        name = f"Damping.{self.kind}: {_VALUE_NAME[self.kind]}"
        v = check_real(name, self.value, ">= 0")
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be finite and >= 0; got {self.value!r}")
        object.__setattr__(self, "value", v)
        object.__setattr__(self, "auto", check_bool("Damping auto", self.auto))
        object.__setattr__(self, "max_tries", check_positive_int(
            "Damping max_tries", self.max_tries, 1,
            why=" (how many times auto=True may raise lam tenfold)"))

    @classmethod
    def absolute(cls, lam: float, auto: bool = False) -> Damping:
        """``lam`` as given (absolute, THEORY.md's lambda)."""
        return cls("absolute", lam, auto)

    @classmethod
    def percdamp(cls, p: float, auto: bool = False) -> Damping:
        """GPTQ's convention: ``lam = p * mean(diag(X^T X))`` (GPTQ's default is ``p = 0.01``)."""
        return cls("percdamp", p, auto)

    @classmethod
    def lambda_max(cls, alpha: float, auto: bool = False) -> Damping:
        """``lam = alpha * lambda_max(X^T X)``."""
        return cls("lambda_max", alpha, auto)

    def resolve_with(self, mean_diag: Callable[[], float], max_eig: Callable[[], float]) -> float:
        """The absolute ``lam`` from ``mean_diag() = mean(diag(X^T X))`` or ``max_eig() = lambda_max(X^T X)``,
        whichever its convention reads, called only then. The one implementation of the conventions:
        :meth:`resolve` passes functions of its ``X^T X``, the torch backend of the statistics on the device.
        """
        if self.kind == "absolute":
            return self.value
        if self.kind == "percdamp":
            return self.value * float(mean_diag())
        return self.value * float(max_eig())

    def resolve(self, gram_X: np.ndarray) -> float:
        """The absolute ``lam`` for the (unnormalized, undamped) Gram matrix ``X^T X``, or for its diagonal
        (1-D) unless the convention is ``lambda_max``."""
        gram_X = np.asarray(gram_X)
        diag = gram_X if gram_X.ndim == 1 else np.diag(gram_X)

        def max_eig() -> float:
            if gram_X.ndim == 1:
                raise ValueError("Damping.lambda_max needs the whole Gram matrix X^T X, not its diagonal")
            return float(np.linalg.eigvalsh(np.asarray(gram_X, float))[-1])

        return self.resolve_with(lambda: float(np.mean(np.asarray(diag, float))), max_eig)

    def raised(self, lam: float, mean_diag: SupportsFloat) -> float:
        """The next ``lam`` of ``auto=True``: ``max(10 lam, 1e-6 mean(diag(G)))`` (``1e-12`` if that is
        0), ``G`` the Gram matrix being factored; the schedule of both backends."""
        return max(10.0 * lam, 1e-6 * float(mean_diag) or 1e-12)

    @property
    def needs_gram(self) -> bool:
        """True when :meth:`resolve` needs more of ``X^T X`` than its diagonal."""
        return self.kind == "lambda_max"

    def describe(self) -> str:
        tail = ", auto-increase" if self.auto else ""
        return f"{self.kind}={self.value:g}{tail}"


def resolve_lam(lam, gram_X: np.ndarray, exact: bool = False):
    """Absolute ``lam`` from a number or a :class:`Damping` (``gram_X`` as in :meth:`Damping.resolve`);
    returns ``(lam, Damping or None)``."""
    if isinstance(lam, Damping):
        if exact:
            raise ValueError("exact arithmetic takes an exact lam (a Rational), not a Damping")
        return check_lam(lam.resolve(gram_X)), lam
    return check_lam(lam, exact), None


def gram(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    r""":math:`X^T Y` (default :math:`X^T X`) in float64, or exactly for rational inputs.

    ``X`` and ``Y`` are checked as calibration data (2-D, finite, real, inside the range R1 of
    :mod:`ptqtheory.tolerances`) unless they already are validated float64 or exact arrays.
    """
    X = _data("X", X)
    return _gram(X, None if Y is None else _data("Y", Y, X.shape[1], rows=X.shape[0]))


def _gram(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    """:func:`gram` on arrays already validated (the algorithms' and certificates' path)."""
    Y = X if Y is None else Y
    if is_exact(X) or is_exact(Y):
        return np.dot(X.T, Y)
    return X.T @ Y


def _data(name: str, A, N: int | None = None, rows: int | None = None) -> np.ndarray:
    arr = np.asarray(A) if not (hasattr(A, "detach") and hasattr(A, "device")) else A
    if N is None:
        N = arr.shape[-1] if getattr(arr, "ndim", 0) == 2 else -1
    if rows is not None and getattr(arr, "ndim", 0) == 2 and arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows but X has {rows}: X^T Y needs the same samples")
    return as_matrix(name, arr, N)


def hessian(X, lam=0.0) -> np.ndarray:
    r""":math:`H = X^T X + \lambda I` (THEORY.md notation; unnormalized)."""
    Xa = _data("X", X)
    gram_X = _gram(Xa)
    lam_abs, _ = resolve_lam(lam, gram_X, is_exact(Xa))
    return gram_X + lam_abs * np.eye(gram_X.shape[0], dtype=gram_X.dtype)


class Accumulator:
    r"""Streams :math:`X^T X`, :math:`\tilde X^T \tilde X` and :math:`\tilde X^T X` from batches.

    Each ``update`` adds one batch of rows (float64 accumulation, whatever the batch dtype), so
    ``m`` can be far larger than memory allows for ``X`` itself.

    Parameters
    ----------
    N : int
        Number of input features (columns).
    with_mismatch : bool
        Also accumulate the statistics of the quantized-model inputs ``Xt`` (Qronos, THEORY.md A4).
    """

    def __init__(self, N: int, with_mismatch: bool = False):
        self.N = check_positive_int("N", N)
        self.m = 0
        self.gram_X = np.zeros((self.N, self.N))
        self.with_mismatch = check_bool("with_mismatch", with_mismatch)
        self.gram_Xt = np.zeros((self.N, self.N)) if self.with_mismatch else None
        self.cross_Xt_X = np.zeros((self.N, self.N)) if self.with_mismatch else None

    def update(self, X_batch, Xt_batch=None) -> None:
        Xb = as_matrix("X_batch", X_batch, self.N)
        self.gram_X += Xb.T @ Xb
        if self.with_mismatch:
            if Xt_batch is None:
                raise ValueError("Xt_batch is required: this accumulator tracks the mismatch (Qronos)")
            Xtb = as_matrix("Xt_batch", Xt_batch, self.N, m=Xb.shape[0])
            self.gram_Xt += Xtb.T @ Xtb
            self.cross_Xt_X += Xtb.T @ Xb
        elif Xt_batch is not None:
            raise ValueError("Xt_batch given but the accumulator was built with with_mismatch=False")
        self.m += Xb.shape[0]

    def _need_data(self) -> None:
        if self.m == 0:
            raise ValueError("the accumulator has seen no rows; call update(X_batch) first")

    def H(self, lam=0.0) -> np.ndarray:
        r""":math:`H = X^TX + \lambda I` (``lam`` a number or a :class:`Damping`)."""
        self._need_data()
        lam_abs, _ = resolve_lam(lam, self.gram_X)
        return self.gram_X + lam_abs * np.eye(self.N)

    def Ht_G(self, lam=0.0) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`(\tilde H, G) = (\tilde X^T\tilde X + \lambda I, \tilde X^T X + \lambda I)`."""
        if not self.with_mismatch:
            raise ValueError("this accumulator was built with with_mismatch=False")
        self._need_data()
        lam_abs, _ = resolve_lam(lam, self.gram_X)
        eye = lam_abs * np.eye(self.N)
        return self.gram_Xt + eye, self.cross_Xt_X + eye
