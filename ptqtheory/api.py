"""The public algorithms and ``certify``, the backend picked from the inputs' types (the run's).

Each algorithm has the signature and docstring of its numpy reference (:mod:`ptqtheory.algorithms`);
:func:`public` sends torch tensors (or a :class:`~ptqtheory.torch_backend.TorchAccumulator`) to
:mod:`ptqtheory.torch_backend` instead, every argument (defaults applied) by keyword, so both backends
share the defaults. numpy next to torch in one call is refused by the torch backend with a
``TypeError`` naming the input. The torch-only options are keyword-only: ``factor_dtype`` (precision
of the factorization of :math:`H`; ``None`` means float64) and ``allow_tf32`` (TF32 products on CUDA
during the call); the numpy backend refuses any other value.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec

from ._validate import is_torch
from .certificates import certify_numpy
from .identities import Certificate
from .records import Run

__all__ = ["certify", "public"]

P = ParamSpec("P")


def public(reference: Callable[P, Run], inputs: tuple[str, ...]) -> Callable[P, Run]:
    """The public form of the numpy ``reference`` (module notes), backend chosen by ``inputs`` (the data)."""
    signature = inspect.signature(reference)
    by_name: Callable[..., Run] = reference  # called below with the bound arguments, all by name

    @functools.wraps(reference)
    def algorithm(*args: P.args, **kwargs: P.kwargs) -> Run:
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        if is_torch(*(call.arguments[k] for k in inputs)):
            from .torch_backend import algorithms as on_device

            return getattr(on_device, reference.__name__)(**call.arguments)
        if call.arguments.get("factor_dtype") is not None or call.arguments.get("allow_tf32"):
            raise ValueError("factor_dtype and allow_tf32 are options of the torch backend (torch tensor "
                             "inputs); the numpy backend computes in float64 (or exactly, with rationals)")
        return by_name(**call.arguments)

    return algorithm


def certify(run: Run, X, Xt=None, p: float = 1e-3, full_pivot_check: bool | None = None,
            bounds: bool = True, *, samples=None) -> Certificate:
    if isinstance(run, Run) and run.backend == "torch":
        from .torch_backend.certify import certify as on_device

        return on_device(run, X, Xt, p, full_pivot_check, bounds, samples=samples)
    return certify_numpy(run, X, Xt, p, full_pivot_check, bounds, samples=samples)


certify.__doc__ = certify_numpy.__doc__  # one docstring: the parameters and the cost table are the same
