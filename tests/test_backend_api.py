"""The engine's backend interface and the public API of issue 12: one signature per algorithm, the
backend picked from the inputs' types, the same defaults on both backends, Xt handled the same way."""

from __future__ import annotations

import inspect
import typing

import numpy as np
import pytest
import torch

import ptqtheory as pt
from ptqtheory import backend, engine
from ptqtheory.torch_backend import TorchAccumulator
from ptqtheory.torch_backend import algorithms as on_device

ALGORITHMS = ("optq", "ldlq", "qronos", "gpfq", "rtn")


def _problem(seed=0, n=3, N=6, m=20):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N)), rng.standard_normal((m, N))


def test_get_backend_picks_by_type_and_refuses_mixed_inputs():
    a, t = np.zeros((2, 2)), torch.zeros(2, 2)
    assert backend.get_backend(a) is backend.get_backend(a, None, 1.0)
    assert isinstance(backend.get_backend(a), backend.NumpyBackend)
    assert isinstance(backend.get_backend(t, t), backend.TorchBackend)
    with pytest.raises(TypeError, match="cannot be mixed"):
        backend.get_backend(a, t)


def test_every_backend_implements_every_operation():
    ops = [name for name, v in vars(backend.Backend).items() if callable(v) and not name.startswith("_")]
    for impl in (backend.NumpyBackend(), backend.TorchBackend()):
        for name in ops:  # overridden by the class, or set on the instance (torch functions)
            assert name in vars(impl) or getattr(type(impl), name) is not getattr(backend.Backend, name), name


@pytest.mark.parametrize("name", ALGORITHMS)
def test_one_signature_and_the_same_defaults_on_both_backends(name):
    public = inspect.signature(getattr(pt, name))
    torch_side = inspect.signature(getattr(on_device, name))
    assert set(public.parameters) == set(torch_side.parameters)
    for p in public.parameters.values():
        assert torch_side.parameters[p.name].default == p.default, p.name
    hints = typing.get_type_hints(getattr(pt, name))
    assert hints["rounding"] == engine.Rounding  # string options are Literal types
    assert pt.algorithms.optq is pt.optq


def test_xt_is_required_with_data_on_both_backends_and_optional_with_mismatch_statistics():
    W, X = _problem()
    grid = pt.Grid(0.1)
    with pytest.raises(ValueError, match="Xt is required"):
        pt.qronos(W, X, lam=0.1, grid=grid)
    with pytest.raises(ValueError, match="Xt is required"):
        pt.qronos(torch.from_numpy(W), torch.from_numpy(X), lam=0.1, grid=grid)
    acc = TorchAccumulator(X.shape[1], "cpu", with_mismatch=True)
    acc.update(torch.from_numpy(X), torch.from_numpy(X))
    by_stats = pt.qronos(torch.from_numpy(W), acc, lam=0.1, grid=grid)
    by_data = pt.qronos(W, X, X, lam=0.1, grid=grid)
    np.testing.assert_allclose(by_stats.Q.numpy(), by_data.Q, rtol=0, atol=1e-12)


def test_torch_only_options_are_refused_for_numpy_inputs():
    W, X = _problem()
    with pytest.raises(ValueError, match="options of the torch backend"):
        pt.optq(W, X, lam=0.1, grid=pt.Grid(0.1), allow_tf32=True)
    with pytest.raises(ValueError, match="options of the torch backend"):
        pt.ldlq(W, X, lam=0.1, grid=pt.Grid(0.1), factor_dtype=torch.float32)
    run = pt.optq(torch.from_numpy(W), torch.from_numpy(X), lam=0.1, grid=pt.Grid(0.1),
                  factor_dtype=torch.float32)
    assert "factorization in float32" in run.notes


def test_positional_and_keyword_calls_forward_the_same_arguments():
    W, X = _problem()
    grid = pt.Grid.minmax(W, bits=3, group_size=2)
    for W_, X_ in ((W, X), (torch.from_numpy(W), torch.from_numpy(X))):
        a = pt.optq(W_, X_, 0.1, grid, "nearest", "decreasing_norm", None, 4)
        b = pt.optq(W=W_, X=X_, lam=0.1, grid=grid, order="decreasing_norm", block_size=4)
        assert np.array_equal(a.codes, b.codes)
