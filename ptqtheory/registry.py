r"""One table: for each algorithm, the data it reads, the matrix it factors, its identity and its bounds.

The context, the identities, the bounds and the numpy and torch certificates read this table rather
than branch on algorithm names: adding an algorithm is one row here.

==========  ========  ======  =====================  ==========================  ===================
algorithm   data      factor  identity (variant)     bounds, nearest             bounds, stochastic
==========  ========  ======  =====================  ==========================  ===================
rtn         X         --      none                   rtn                         rtn
optq        X         H       i2                     b2 b8 b1 b7 l1              b2 b8 b3 b4 b5 b6 l1
ldlq        X         H       i3                     b2 b8 b1 b7 b11 l1          b2 b8 b3 b4 b5 b6 l1
qronos      X, Xt     Ht      i5 (paper), i4 (ls)    b2 b9 l1                    b2 b10 l1
gpfq        X, Xt     --      i6                     --                          --
owq         X         H       i2                     owq (B1 B2 B7 restricted)   --
==========  ========  ======  =====================  ==========================  ===================

OWQ runs (:func:`ptqtheory.owq`) are OPTQ runs with :math:`\eta_t = 0` on the kept columns: I2 holds as
it is, and the bound function ``owq`` evaluates B1, B2 and B7 restricted to the quantized columns
(docs/theory.md section 7, OWQ). OWQ rounds to nearest only.

Incoherence-wrapped runs (``run.transform`` set, :func:`unwrap`) are certified as their inner run on
the transformed data :math:`XV^T` (and :math:`\tilde XV^T`): the inner run's row applies.

``data`` ``X`` means one matrix: the algorithm reads the inputs it is given (the pipeline passes the
quantized model's inputs) and the certificate reads them as ``X``. ``X, Xt`` means the float-model
inputs ``X`` and the quantized-model inputs ``Xt`` (the certificate measures :math:`Xw - \tilde Xq`).
``factor`` is the matrix whose pivots :math:`D_t` and factor :math:`L` carry the error feedback:
:math:`H = X^TX + \lambda I`, or :math:`\tilde H = \tilde X^T\tilde X + \lambda I`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "METHODS",
    "Entry",
    "Method",
    "entry",
    "method",
    "unwrap",
]

Identity = Literal["i2", "i3", "i4", "i5", "i6"]


@dataclass(frozen=True)
class Entry:
    r"""One row of the registry (see the module table).

    Attributes
    ----------
    algorithm : str
        The ``Run.algorithm`` this row describes.
    uses_xt : bool
        The run reads the quantized-model inputs ``Xt`` besides ``X`` (Qronos, GPFQ).
    factor : {"H", "Ht"} or None
        The matrix whose factorization carries the error feedback; ``None`` when there is none.
    identities : dict
        Variant -> identity function name of :mod:`ptqtheory.identities` (key ``"*"``: every variant);
        empty for RTN.
    bounds : dict
        Rounding (``"nearest"``, ``"stochastic"``) -> names of the bound functions of
        :mod:`ptqtheory.bounds` that apply, in the order they are reported.
    least_squares : bool
        The identity reads Qronos' least-squares fit :math:`w_{LS}` and residual :math:`r_0`, which the
        certificate fits from the data (keeping the QR) instead of reusing the run's factorization.
    per_sample : tuple of (str, tuple of str)
        Pairs (bound function name, the labels it can evaluate only from the samples): listed by
        :func:`ptqtheory.bounds.unavailable` for statistics-only contexts.
    identity_reads_samples : bool
        A vector identity over the samples (I6: :math:`u_N \in \mathbb R^m`): no certificate from statistics.
    """

    algorithm: str
    uses_xt: bool
    factor: Literal["H", "Ht"] | None
    identities: dict
    bounds: dict
    least_squares: bool = False
    per_sample: tuple = ()
    identity_reads_samples: bool = False

    def identity(self, variant: str) -> Identity | None:
        """Name of the identity function for ``variant`` (``None``: the algorithm has none)."""
        return self.identities.get(variant, self.identities.get("*"))

    def bound_names(self, rounding: str) -> tuple[str, ...]:
        """Names of the bound functions that apply to a run with this ``rounding``."""
        return self.bounds.get(rounding, ())


_OPTQ_STOCHASTIC = ("b2", "b8", "b3", "b4", "b5", "b6", "l1")

ALGORITHMS: dict[str, Entry] = {
    "rtn": Entry("rtn", uses_xt=False, factor=None, identities={},
                 bounds={"nearest": ("rtn",), "stochastic": ("rtn",)}),
    "optq": Entry("optq", uses_xt=False, factor="H", identities={"*": "i2"},
                  bounds={"nearest": ("b2", "b8", "b1", "b7", "l1"), "stochastic": _OPTQ_STOCHASTIC},
                  per_sample=(("b5", ("B5",)),)),
    "ldlq": Entry("ldlq", uses_xt=False, factor="H", identities={"*": "i3"},
                  bounds={"nearest": ("b2", "b8", "b1", "b7", "b11", "l1"), "stochastic": _OPTQ_STOCHASTIC},
                  per_sample=(("b5", ("B5",)),)),
    "qronos": Entry("qronos", uses_xt=True, factor="Ht", identities={"paper": "i5", "ls": "i4"},
                    bounds={"nearest": ("b2", "b9", "l1"), "stochastic": ("b2", "b10", "l1")},
                    least_squares=True,
                    per_sample=(("b10", ("B10.sup",)),)),
    "gpfq": Entry("gpfq", uses_xt=True, factor=None, identities={"*": "i6"}, bounds={},
                  identity_reads_samples=True),
    "owq": Entry("owq", uses_xt=False, factor="H", identities={"*": "i2"},
                 bounds={"nearest": ("owq",), "stochastic": ()}),
}
"""The registry, keyed by ``Run.algorithm``."""


def entry(algorithm: str) -> Entry:
    """The registry row of ``algorithm`` (a ``Run.algorithm``), or ``ValueError``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; the registry has {sorted(ALGORITHMS)}")
    return ALGORITHMS[algorithm]


def unwrap(run):
    """``(inner run, transform)`` as the module notes say; ``(run, None)`` for a plain run."""
    if getattr(run, "transform", None) is not None:
        return run.inner, run.transform
    return run, None


@dataclass(frozen=True)
class Method:
    """A pipeline method name (``ptqtheory.models``) as a registry row and the call's options."""

    name: str
    algorithm: str
    variant: str | None = None
    rounding: str = "nearest"
    incoherence: bool = False
    preprocess: Literal["magr"] | None = None
    """Weights replaced before quantization: ``"magr"`` runs :func:`ptqtheory.magr` on the run's data and
    quantizes its ``V`` (grid fitted to ``V``)."""
    attention: Literal["boa"] | None = None
    """The block's query/key/value group is quantized otherwise: ``"boa"`` runs
    :func:`ptqtheory.boa_attention` on it (BoA, certified by I7); the block's other groups run the row's
    algorithm (OPTQ)."""

    @property
    def entry(self) -> Entry:
        return entry(self.algorithm)

    @property
    def uses_xt(self) -> bool:
        """The method reads the float-model inputs ``X`` besides the quantized-model inputs."""
        return self.entry.uses_xt


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("rtn", "rtn"),
    Method("optq", "optq"),
    Method("optq-stochastic", "optq", rounding="stochastic"),
    Method("qronos", "qronos", variant="paper"),
    Method("qronos-ls", "qronos", variant="ls"),
    Method("ldlq-incoherence", "ldlq", incoherence=True),
    Method("gpfq", "gpfq"),
    Method("magr-optq", "optq", preprocess="magr"),
    Method("owq", "owq"),
    Method("boa", "optq", attention="boa"),
)}
"""The pipeline's method names (``ptqtheory.models.METHODS``), each resolved to a registry row."""


def method(name: str) -> Method:
    """The pipeline method ``name`` (e.g. ``"qronos-ls"``), or ``ValueError``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; one of {tuple(METHODS)}")
    return METHODS[name]
