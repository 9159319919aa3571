"""The record every algorithm returns: what was rounded, how, and what a certificate needs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ._validate import check_choice, check_positive_int
from .alphabets import Alphabet
from .grids import Grid

if TYPE_CHECKING:
    from .engine import Rounding

__all__ = ["Run", "Transform"]

# A per-entry array of a run (Run's Notes); Any, because each consumer reads the arrays of one backend.
Array: TypeAlias = Any


def _numpy(a):
    """A CPU numpy copy of a torch tensor (torch-backend runs); anything else as it is."""
    if hasattr(a, "detach") and hasattr(a, "device"):
        return a.detach().cpu().numpy()
    return a


@dataclass(frozen=True, eq=False)
class Transform:
    r"""Incoherence processing (THEORY.md A3i): :math:`W' = U W V^T`, :math:`X' = X V^T`.

    ``U`` (n x n), ``V`` (N x N) orthogonal; the run rounds :math:`W'`; :math:`Q = U^T Q' V`.
    """

    kind: str
    U: Array
    V: Array

    KINDS = ("kron", "hadamard")

    @staticmethod
    def factor_sizes(d: int, kind: str) -> tuple[int, ...]:
        r"""Checks ``d`` and ``kind``; the sizes of the Haar factors of ``"kron"`` (:math:`a \cdot b = d`,
        :math:`a` the largest divisor :math:`\le\sqrt d`), or ``(d,)`` for ``"hadamard"`` (a power of 2)."""
        d = check_positive_int("d", d)
        check_choice("incoherence", kind, Transform.KINDS)
        if kind == "hadamard":
            if d & (d - 1):
                raise ValueError(f"incoherence='hadamard' needs dimensions that are powers of 2; got {d}. "
                                 "Use incoherence='kron' for other sizes.")
            return (d,)
        a = max(k for k in range(1, math.isqrt(d) + 1) if d % k == 0)
        return (a, d // a)


@dataclass(frozen=True, eq=False)
class Run:
    r"""Record of one quantization run.

    All per-entry arrays are in the *original* column order and have the shape of the input
    weights (``(n, N)``, or ``(N,)`` when a single row ``w`` was given).

    Attributes
    ----------
    algorithm : str
        ``"rtn"``, ``"optq"``, ``"ldlq"``, ``"qronos"`` or ``"gpfq"``.
    variant : str
        ``"blocked"`` (A2' fast form) or ``"iteration"`` (A2 paper iteration) for OPTQ;
        ``"paper"`` (A4) or ``"ls"`` (A4') for Qronos; ``"reference"`` otherwise.
    W : ndarray
        The weights given (float64 copy), original coordinates.
    Q : ndarray
        Quantized weights. With incoherence processing these are :math:`U^T Q' V` and lie on no grid;
        ``inner`` holds the run on the grid.
    eta : ndarray
        :math:`\eta_t = x_t - q_t`, the rounding error of each entry when it was rounded.
    x : ndarray
        :math:`x_t`, the value each entry had when it was rounded.
    clipped : ndarray of bool
        Entries whose unbounded rounding fell outside ``[lo, hi]`` and were clipped.
    order : ndarray of int
        ``order[t]`` is the column rounded at step ``t``.
    grid : Grid or Alphabet
        The grid actually used, per entry (groups refitted during the run are resolved here); for an
        alphabet run the :class:`~ptqtheory.Alphabet` with one scale per row.
    lam : float
        Absolute damping used (THEORY.md :math:`\lambda`); ``damping`` says how it was specified.
    rounding : str
        ``"nearest"`` or ``"stochastic"``.
    method : str or None
        OPTQ and Qronos: ``"blocked"`` (steps apply the factor :math:`L`) or ``"iteration"`` (each step
        solves a least-squares problem; its weight-space error grows with :math:`\kappa(H)`); else ``None``.
    device : str or None
        Torch backend only: the device the run was computed on (``"cpu"``, ``"cuda:0"``).
    tf32 : bool or None
        Torch backend only: whether TF32 matrix products were allowed during the run.
    pivots : Pivots or TorchPivots or None
        The factorization :math:`H = U_1\operatorname{diag}(D)U_1^T` (processing order) the run used,
        kept so that :func:`ptqtheory.certify` checks it (I1) and reuses it instead of factoring
        again; ``None`` for algorithms without one (RTN, GPFQ) and for torch runs factored in float32.
    stats : TorchAccumulator or None
        Torch backend only: the calibration statistics the run was computed from, which the
        certificate reuses after checking that the data it is given match them.

    Notes
    -----
    Runs of the torch backend (``backend="torch"``) hold tensors on their device in ``W``, ``Q``,
    ``eta``, ``x``, ``clipped``, ``order``, ``w_ls`` and ``residual``; ``grid`` holds CPU numpy
    arrays (float64 copies of the working-precision values) and ``precision`` names the working dtype.
    """

    algorithm: str
    variant: str
    W: Array
    Q: Array
    eta: Array
    x: Array
    clipped: Array
    order: Array
    grid: Grid | Alphabet
    lam: float
    rounding: Rounding
    seed: object = None
    damping: str = "absolute"
    block_size: int | None = None
    method: str | None = None
    w_ls: Array | None = None
    start: str | None = None
    residual: Array | None = None
    inner: Run | None = None
    transform: Transform | None = None
    precision: str = "float64"
    backend: str = "numpy"
    notes: tuple[str, ...] = field(default_factory=tuple)
    device: str | None = None
    tf32: bool | None = None
    pivots: Any = field(default=None, repr=False)
    stats: Any = field(default=None, repr=False)

    def mapped_back(self, W, Q, vector: bool, seed, transform: Transform) -> Run:
        """The record of A3i: this run quantized ``U W V^T``; ``Q = U^T Q' V`` is the result for the
        weights ``W`` (a single row when ``vector``). The processed run stays as ``inner``."""

        def shaped(a):
            return a[0] if vector else a

        return dataclasses.replace(
            self, W=shaped(W), Q=shaped(Q), eta=shaped(self.eta), x=shaped(self.x),
            clipped=shaped(self.clipped), seed=seed, inner=self, transform=transform,
            w_ls=None, start=None, residual=None, pivots=None, stats=None)

    @property
    def codes(self) -> np.ndarray:
        r"""Integer grid index :math:`k` of every entry, :math:`q = \delta (k - z)` (in-grid runs only);
        for an :class:`~ptqtheory.Alphabet` run the index :math:`k` of :math:`q = s_i v_k`.

        Two runs with refitted groups can differ in the last bit of :math:`\delta` yet pick the
        same grid points; compare ``codes`` (and ``grid.delta`` to rounding) to see that.
        """
        if self.transform is not None:
            assert self.inner is not None  # mapped_back sets inner together with transform
            return self.inner.codes
        Q = _numpy(self.Q)
        if isinstance(self.grid, Alphabet):
            return self.grid.index(Q).reshape(np.shape(Q))
        n, N = np.atleast_2d(Q).shape
        delta, zero, _, _ = self.grid.expand(n, N)
        k = np.atleast_2d(Q) / delta + zero
        k = k if k.dtype == object else np.rint(k).astype(np.int64)
        return k.reshape(np.shape(Q))

    @property
    def n_clipped(self) -> int:
        """How many entries were clipped (0 means the a-priori bounds' hypothesis held)."""
        return int(np.count_nonzero(_numpy(self.clipped)))

    def summary(self) -> str:
        shape = "x".join(str(s) for s in np.shape(_numpy(self.Q)))
        return (f"{self.algorithm}[{self.variant}] {shape} rounding={self.rounding} lam={float(self.lam):g} "
                f"({self.damping}) clipped={self.n_clipped} precision={self.precision}")
