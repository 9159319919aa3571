r"""Cached symbolic instances shared by several checks.

* :func:`generic_spd` -- a symmetric matrix whose :math:`n(n+1)/2` entries are
  independent symbols (``N = 3, 4``).  A rational identity that holds for it holds
  for every SPD matrix (SPD matrices form an open set, and a rational function
  vanishing on an open set is zero).
* :func:`upper_param_spd` -- :math:`H = RR^T` with :math:`R` generic upper
  triangular with positive diagonal: a bijective parametrization of SPD matrices
  that keeps the Cholesky factor of :math:`H^{-1}` free of nested square roots.

The caches make shared work (inverses, pivots) happen once per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import sympy as sp
from sympy.polys.matrices import DomainMatrix

from .algebra import (
    Elem,
    Field,
    dm,
    fraction_field,
    schur_complement,
    spd_from_upper,
    symbols,
    symmetric_matrix,
    unit_lower_inverse_factor,
)

__all__ = ["SpdInstance", "generic_spd", "upper_param_spd", "with_weights"]


@dataclass(frozen=True)
class SpdInstance:
    """A symbolic SPD matrix together with derived exact data.

    Attributes
    ----------
    label : str
        Short description used in check names (``"N=4"``, ``"N=4,H=RR^T"``).
    h : sympy.Matrix
        The matrix as sympy expressions.
    field : Field
        Fraction field of its symbols.
    hd : DomainMatrix
        The matrix over ``field``.
    pivots : tuple[Elem, ...]
        Schur complements :math:`D_t` (computed by :func:`schur_complement`).
    """

    label: str
    h: sp.Matrix
    field: Field
    hd: DomainMatrix
    pivots: tuple[Elem, ...]

    @property
    def n(self) -> int:
        """Size of the matrix.

        Returns
        -------
        int
            ``N``.
        """
        return self.h.rows


def _instance(label: str, h: sp.Matrix, extra: tuple[sp.Symbol, ...] = ()) -> SpdInstance:
    field = fraction_field(h, extra)
    hd = dm(h, field)
    pivots = tuple(schur_complement(hd, t) for t in range(h.rows))
    return SpdInstance(label=label, h=h, field=field, hd=hd, pivots=pivots)


@cache
def generic_spd(n: int) -> SpdInstance:
    """Generic symmetric ``n x n`` instance (independent symbols ``h_ij``).

    Parameters
    ----------
    n : int
        Size.

    Returns
    -------
    SpdInstance
        The instance.
    """
    return _instance(f"N={n}", symmetric_matrix(n))


@cache
def upper_param_spd(n: int) -> SpdInstance:
    """Instance :math:`H = RR^T`, :math:`R` generic upper triangular with positive diagonal.

    Parameters
    ----------
    n : int
        Size.

    Returns
    -------
    SpdInstance
        The instance.
    """
    h, _ = spd_from_upper(n)
    return _instance(f"N={n},H=RR^T", h)


@cache
def with_weights(kind: str, n: int) -> tuple[SpdInstance, list[Elem], list[Elem]]:
    """Instance over a field that also contains weights ``w_t`` and rounding errors ``eta_t``.

    Parameters
    ----------
    kind : str
        ``"generic"`` or ``"upper"`` (see :func:`generic_spd`, :func:`upper_param_spd`).
    n : int
        Size.

    Returns
    -------
    tuple[SpdInstance, list[Elem], list[Elem]]
        ``(instance, w, eta)`` with ``w`` and ``eta`` free symbols of the instance's field.
    """
    base = generic_spd(n) if kind == "generic" else upper_param_spd(n)
    w_syms, eta_syms = symbols("w", n), symbols("eta", n)
    inst = _instance(base.label, base.h, tuple(w_syms) + tuple(eta_syms))
    field = inst.field
    return inst, [field.from_sympy(s) for s in w_syms], [field.from_sympy(s) for s in eta_syms]


@cache
def inverse_factor(kind: str, n: int) -> tuple[DomainMatrix, list[Elem]]:
    r"""Candidate :math:`(L, D)`, :math:`H^{-1} = LD^{-1}L^T`, over the field of :func:`with_weights`.

    Parameters
    ----------
    kind : str
        ``"generic"`` or ``"upper"``.
    n : int
        Size.

    Returns
    -------
    tuple[DomainMatrix, list[Elem]]
        ``(L, D)`` (verified by the I1 checks, not assumed).
    """
    inst, _, _ = with_weights(kind, n)
    return unit_lower_inverse_factor(inst.hd)
