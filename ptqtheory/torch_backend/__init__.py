"""The algorithms of THEORY.md in torch, on CPU or CUDA, with certificates on the device.

The public functions :func:`ptqtheory.optq`, :func:`~ptqtheory.ldlq`, :func:`~ptqtheory.qronos`,
:func:`~ptqtheory.gpfq`, :func:`~ptqtheory.rtn` and :func:`~ptqtheory.certify` send torch inputs
here (:mod:`ptqtheory.api`), torch-only options too (``block_size`` of LDLQ, ``factor_dtype``, ``allow_tf32``)::

    import torch, ptqtheory as pt
    from ptqtheory.torch_backend import TorchAccumulator, minmax_grid
    acc = TorchAccumulator(N, "cuda")
    for xb in batches:                 # activations, any float dtype, shape (..., N)
        acc.update(xb)
    run = pt.optq(W, acc, lam=pt.Damping.percdamp(0.01), grid=minmax_grid(W, 4, group_size=128))
    cert = pt.certify(run, acc)        # I2 per row, from the statistics, on the GPU

Conventions (DESIGN.md "GPU backend", "Numerics"):

* working precision = dtype of ``W`` (float32 or float64); statistics are accumulated in float64;
  the Cholesky factorization of :math:`H` runs in ``factor_dtype`` (float64 by default);
* TF32 is off during every call unless ``allow_tf32=True``; global flags are restored;
* the record (:class:`ptqtheory.Run`) holds tensors on the device, ``backend="torch"``,
  ``precision``, ``device`` and ``tf32``; its ``grid`` holds host numpy arrays;
* stochastic rounding draws all uniforms up front from a ``torch.Generator`` on the device, so the
  same seed gives the same bits on the same device, for every block size.
"""

from .algorithms import gpfq, ldlq, optq, qronos, rtn
from .certify import certify
from .device import tf32_guard
from .grids import minmax_grid
from .incoherence import random_orthogonal
from .stats import TorchAccumulator

__all__ = [
    "TorchAccumulator",
    "certify",
    "gpfq",
    "ldlq",
    "minmax_grid",
    "optq",
    "qronos",
    "random_orthogonal",
    "rtn",
    "tf32_guard",
]
