r"""Calibration statistics :math:`H`, :math:`\tilde H`, :math:`G` and the damping conventions.

THEORY.md's :math:`H = X^T X + \lambda I` is *unnormalized*. Tools disagree on how they damp, so
every convention is converted to the absolute :math:`\lambda` explicitly and the value is recorded:

* absolute: :math:`\lambda` as given;
* GPTQ's ``percdamp`` :math:`p`: :math:`\lambda = p \cdot \operatorname{mean}\operatorname{diag}(X^T X)`.
  GPTQ scales its Hessian by :math:`2/m` and adds :math:`p\cdot\operatorname{mean}\operatorname{diag}`
  of the *scaled* matrix; scaling back by :math:`m/2` gives the same :math:`\lambda` here;
* ``alpha * lambda_max``: :math:`\lambda = \alpha\,\lambda_{\max}(X^T X)` (a Brevitas convention).

Statistics are accumulated in float64 from batches, so a layer's inputs never need to be held at
once (``Accumulator``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_matrix, check_lam, is_exact

__all__ = ["Accumulator", "Damping", "gram", "hessian", "resolve_lam"]


@dataclass(frozen=True)
class Damping:
    """A damping convention, converted to the absolute ``lam`` of THEORY.md by :meth:`resolve`.

    Build one with :meth:`absolute`, :meth:`percdamp` or :meth:`lambda_max`. With ``auto=True``
    (GPTQ-style automatic damping, only when asked) an algorithm multiplies ``lam`` by 10 until
    ``H`` is numerically positive definite, at most ``max_tries`` times, and records the value used.
    """

    kind: str
    value: float
    auto: bool = False
    max_tries: int = 8

    def __post_init__(self):
        if self.kind not in ("absolute", "percdamp", "lambda_max"):
            raise ValueError(f"Damping kind must be absolute, percdamp or lambda_max; got {self.kind!r}")
        v = float(self.value)
        if not np.isfinite(v) or v < 0:
            raise ValueError(f"Damping value must be finite and >= 0; got {self.value!r}")

    @classmethod
    def absolute(cls, lam: float, auto: bool = False) -> Damping:
        return cls("absolute", lam, auto)

    @classmethod
    def percdamp(cls, p: float, auto: bool = False) -> Damping:
        """GPTQ's convention: ``lam = p * mean(diag(X^T X))`` (GPTQ's default is ``p = 0.01``)."""
        return cls("percdamp", p, auto)

    @classmethod
    def lambda_max(cls, alpha: float, auto: bool = False) -> Damping:
        """``lam = alpha * lambda_max(X^T X)``."""
        return cls("lambda_max", alpha, auto)

    def resolve(self, XtX: np.ndarray) -> float:
        """The absolute ``lam`` for the (unnormalized, undamped) Gram matrix ``X^T X``.

        ``percdamp`` reads only the diagonal, so ``XtX`` may also be given as its diagonal (1-D).
        """
        if self.kind == "absolute":
            return float(self.value)
        diag = XtX if np.ndim(XtX) == 1 else np.diag(XtX)
        if self.kind == "percdamp":
            return float(self.value) * float(np.mean(diag))
        if np.ndim(XtX) == 1:
            raise ValueError("Damping.lambda_max needs the whole Gram matrix X^T X, not its diagonal")
        return float(self.value) * float(np.linalg.eigvalsh(np.asarray(XtX, float))[-1])

    @property
    def needs_gram(self) -> bool:
        """True when :meth:`resolve` needs more of ``X^T X`` than its diagonal."""
        return self.kind == "lambda_max"

    def describe(self) -> str:
        tail = ", auto-increase" if self.auto else ""
        return f"{self.kind}={self.value:g}{tail}"


def resolve_lam(lam, XtX: np.ndarray, exact: bool = False):
    """Absolute ``lam`` from a number or a :class:`Damping`; returns ``(lam, Damping or None)``."""
    if isinstance(lam, Damping):
        if exact:
            raise ValueError("exact arithmetic takes an exact lam (a Rational), not a Damping")
        return check_lam(lam.resolve(XtX)), lam
    return check_lam(lam, exact), None


def gram(X: np.ndarray, Y: np.ndarray | None = None) -> np.ndarray:
    r""":math:`X^T Y` (default :math:`X^T X`) in float64, or exactly for rational inputs."""
    Y = X if Y is None else Y
    if is_exact(X) or is_exact(Y):
        return np.dot(X.T, Y)
    return X.T @ Y


def hessian(X, lam=0.0) -> np.ndarray:
    r""":math:`H = X^T X + \lambda I` (THEORY.md notation; unnormalized)."""
    X = np.asarray(X)
    Xa = as_matrix("X", X, X.shape[-1] if X.ndim == 2 else -1)
    XtX = gram(Xa)
    lam_abs, _ = resolve_lam(lam, XtX, is_exact(Xa))
    return XtX + lam_abs * np.eye(XtX.shape[0], dtype=XtX.dtype)


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
        self.N = int(N)
        self.m = 0
        self.XtX = np.zeros((N, N))
        self.with_mismatch = with_mismatch
        self.XttXt = np.zeros((N, N)) if with_mismatch else None
        self.XttX = np.zeros((N, N)) if with_mismatch else None

    def update(self, X_batch, Xt_batch=None) -> None:
        Xb = as_matrix("X_batch", X_batch, self.N)
        self.XtX += Xb.T @ Xb
        if self.with_mismatch:
            if Xt_batch is None:
                raise ValueError("Xt_batch is required: this accumulator tracks the mismatch (Qronos)")
            Xtb = as_matrix("Xt_batch", Xt_batch, self.N, m=Xb.shape[0])
            self.XttXt += Xtb.T @ Xtb
            self.XttX += Xtb.T @ Xb
        elif Xt_batch is not None:
            raise ValueError("Xt_batch given but the accumulator was built with with_mismatch=False")
        self.m += Xb.shape[0]

    def H(self, lam=0.0) -> np.ndarray:
        lam_abs, _ = resolve_lam(lam, self.XtX)
        return self.XtX + lam_abs * np.eye(self.N)

    def Ht_G(self, lam=0.0) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`(\tilde H, G) = (\tilde X^T\tilde X + \lambda I, \tilde X^T X + \lambda I)`."""
        if not self.with_mismatch:
            raise ValueError("this accumulator was built with with_mismatch=False")
        lam_abs, _ = resolve_lam(lam, self.XtX)
        eye = lam_abs * np.eye(self.N)
        return self.XttXt + eye, self.XttX + eye
