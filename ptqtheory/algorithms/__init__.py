"""Float64 reference algorithms A1-A5 of THEORY.md (pure functions returning a :class:`Run`)."""

from .gpfq import gpfq
from .incoherence import incoherence, random_orthogonal
from .ldlq import ldlq
from .optq import optq
from .qronos import qronos
from .rtn import rtn

__all__ = ["gpfq", "incoherence", "ldlq", "optq", "qronos", "random_orthogonal", "rtn"]
