r"""The UL factorization of :math:`H` on the device: pivots :math:`D_t` and OPTQ's factor :math:`L^T`.

As in :mod:`ptqtheory.factor` (THEORY.md I1, A2'): reverse, Cholesky, reverse gives
:math:`H = U_H U_H^T` (:math:`U_H` upper triangular), :math:`D_t = (U_H)_{tt}^2`,
:math:`U_1 = U_H\operatorname{diag}(U_H)^{-1}` and :math:`L^T = U_1^{-1}`. The trailing block of
:math:`U_H` is the UL factor of the trailing block of :math:`H`, which Qronos' first step uses.

The factorization runs in ``factor_dtype`` (float64 by default, also for float32 weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from ..calibration import Damping
from ..engine import damped
from ..factor import SingularHessianError, check_definite, singular_message, unit_upper_inverse
from ..tolerances import check_magnitude, quadratic_range
from .grids import to_host

__all__ = ["TorchPivots", "factor_damped", "pivots"]


@dataclass(eq=False)
class TorchPivots:
    r""":math:`H = U_H U_H^T` in processing order, on the device, in the factorization dtype."""

    UH: torch.Tensor
    D: torch.Tensor

    @cached_property
    def L_T(self) -> torch.Tensor:
        r""":math:`L^T = U_1^{-1}` (unit upper triangular)."""
        d = torch.diagonal(self.UH)
        U1 = self.UH / d[None, :]
        if U1.device.type == "cpu" and U1.dtype == torch.float64:
            # LAPACK trtri (N^3/3 flops, in place) against torch's triangular solve with the identity (N^3).
            return torch.from_numpy(unit_upper_inverse(U1.numpy(), overwrite=True))
        eye = torch.eye(U1.shape[0], dtype=U1.dtype, device=U1.device)
        return torch.linalg.solve_triangular(U1, eye, upper=True, unitriangular=True)

    @property
    def L(self) -> torch.Tensor:
        """The unit lower triangular :math:`L` of THEORY.md I2 (``w - q = L eta``)."""
        return self.L_T.T

    def solve(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`H^{-1}B` by two triangular solves (:math:`H^{-1} = U_H^{-T}U_H^{-1}`)."""
        Z = torch.linalg.solve_triangular(self.UH, B, upper=True)
        return torch.linalg.solve_triangular(self.UH.T, Z, upper=False)

    def whiten(self, B: torch.Tensor) -> torch.Tensor:
        r""":math:`U_H^{-1}B`, so that :math:`B^TH^{-1}B = \|U_H^{-1}B\|^2` column by column."""
        return torch.linalg.solve_triangular(self.UH, B, upper=True)


def pivots(Hp: torch.Tensor, lam: float, what: str = "H", columns=None,
           factor_dtype: torch.dtype = torch.float64) -> TorchPivots:
    """Factor a positive definite ``Hp`` (processing order) or raise :class:`SingularHessianError`
    (the numpy reference's test, :func:`ptqtheory.factor.check_definite`, with ``eps`` of
    ``factor_dtype``; the message names ``lam`` and how to set it, and lists dead columns)."""
    top = float(torch.diagonal(Hp).max())
    if factor_dtype == torch.float32:
        # R1 in float32: the cast must neither overflow nor go subnormal (the "singular" message would hide it).
        check_magnitude(f"{what} (cast to factor_dtype=torch.float32)", top, quadratic_range(factor_dtype),
                        fix="use factor_dtype=torch.float64 (the default), or rescale X by a power "
                            "of two, 2.0**k (with lam scaled by 4.0**k)",
                        what=f"max diag({what})")
    Hf = Hp.to(factor_dtype)
    Lr, info = torch.linalg.cholesky_ex(Hf.flip(0, 1))
    if int(info) != 0:
        raise SingularHessianError(
            singular_message(to_host(torch.diagonal(Hp)), lam, what, "Cholesky factorization failed", columns)
        )
    UH = Lr.flip(0, 1)
    D = torch.diagonal(UH) ** 2
    check_definite(to_host(D), to_host(torch.diagonal(Hp)), lam, what, columns, factor_dtype)
    return TorchPivots(UH=UH, D=D)


def factor_damped(G0p: torch.Tensor, lam: float, damping: Damping | None, what: str, columns,
                  factor_dtype: torch.dtype) -> tuple[TorchPivots, torch.Tensor, float, list[str]]:
    """Factor ``G0p + lam I`` into ``(pivots, Hp, lam used, notes)``; with ``Damping(auto=True)`` raise
    ``lam`` tenfold until it works (:func:`ptqtheory.engine.damped`, the numpy reference's schedule)."""
    def attempt(lam):
        Hp = G0p.clone()
        Hp.diagonal().add_(lam)
        return pivots(Hp, lam, what, columns, factor_dtype), Hp

    (piv, Hp), lam, raised = damped(attempt, lam, damping, lambda: float(torch.diagonal(G0p).mean()))
    return piv, Hp, lam, [f"automatic damping raised lam from {old:g} to {new:g}" for old, new in raised]
