"""The algorithms A1-A5 of THEORY.md: numpy and exact references, one module each (``.optq.optq`` ...),
exported in their public forms (:func:`ptqtheory.api.public`)."""

from ..api import public
from . import gpfq as _gpfq
from . import ldlq as _ldlq
from . import optq as _optq
from . import qronos as _qronos
from . import rtn as _rtn
from .incoherence import incoherence, random_orthogonal

gpfq = public(_gpfq.gpfq, ("W", "X", "Xt"))
ldlq = public(_ldlq.ldlq, ("W", "X"))
optq = public(_optq.optq, ("W", "X"))
qronos = public(_qronos.qronos, ("W", "X", "Xt"))
rtn = public(_rtn.rtn, ("W",))

__all__ = ["gpfq", "incoherence", "ldlq", "optq", "qronos", "random_orthogonal", "rtn"]
