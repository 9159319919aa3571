"""The numpy and exact reference algorithms A1-A5 of THEORY.md, one module each.

The names exported here are the public functions of :mod:`ptqtheory.api` (they pick the backend from
the inputs' types); the numpy references are the functions of the submodules
(``ptqtheory.algorithms.optq.optq`` ...), which the API calls for numpy inputs.
"""

# The submodules first: importing one later would rebind its name on this package to the module.
from . import gpfq as _gpfq  # noqa: F401
from . import incoherence as _incoherence  # noqa: F401
from . import ldlq as _ldlq  # noqa: F401
from . import optq as _optq  # noqa: F401
from . import qronos as _qronos  # noqa: F401
from . import rtn as _rtn  # noqa: F401

# isort: split
from ..api import gpfq, incoherence, ldlq, optq, qronos, random_orthogonal, rtn

__all__ = ["gpfq", "incoherence", "ldlq", "optq", "qronos", "random_orthogonal", "rtn"]
