"""A-priori bounds of torch runs (``pt.certify(torch_run, ...)``) against the numpy reference.

With data tensors, a float64 torch run on the CPU gets the same bound records as the numpy run on
the same instance: same labels in the same order, values and empirical sides to ~1e-9 relative,
same ``applies`` and ``holds`` per row. Stochastic runs use the torch uniforms in both (as in
``test_torch_backend``). From statistics only (a ``TorchAccumulator``) every bound that needs no
per-sample data is evaluated with the same result, and the others are listed in
``Certificate.skipped_bounds``, never dropped silently. Instances are seeded and synthetic.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch

import ptqtheory as pt
from ptqtheory.instances import make_instance
from ptqtheory.torch_backend import TorchAccumulator
from ptqtheory.torch_backend.rand import uniforms

F64 = torch.float64
ALGORITHMS = ("optq", "optq-stochastic", "ldlq", "qronos", "qronos-ls", "qronos-stochastic", "rtn")


def T(a, dtype=F64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def _run(name: str, W, X, Xt, lam, grid):
    if name == "optq":
        return pt.optq(W, X, lam=lam, grid=grid)
    if name == "optq-stochastic":
        return pt.optq(W, X, lam=lam, grid=grid, rounding="stochastic", seed=3)
    if name == "ldlq":
        return pt.ldlq(W, X, lam=lam, grid=grid, order="decreasing_norm")
    if name == "rtn":
        return pt.rtn(W, grid=grid)
    variant = "ls" if name == "qronos-ls" else "paper"
    rounding = "stochastic" if name.endswith("stochastic") else "nearest"
    return pt.qronos(W, X, Xt, lam=lam, grid=grid, variant=variant, rounding=rounding, seed=5)


def _both(name: str, seed: int, grid_kind: str):
    inst = make_instance(seed, ("gaussian", "heavy_tailed", "outliers")[seed % 3], m=48, N=14, n=5)
    lam = pt.Damping.percdamp(0.05)
    grid = pt.Grid.minmax(inst.W, bits=3, group_size=4 if grid_kind == "groups" else None)

    def draw(s, shape):  # the numpy reference with the torch backend's uniforms
        return uniforms(s, shape, "cpu", F64).numpy()

    with mock.patch("ptqtheory.algorithms._engine.uniforms", draw):
        ref = _run(name, inst.W, inst.X, inst.Xt, lam, grid)
    run = _run(name, T(inst.W), T(inst.X), T(inst.Xt), lam, grid)
    assert np.array_equal(ref.codes, run.codes)
    return inst, ref, run


def _same_record(a, b, rtol: float = 1e-9) -> None:
    assert a.label == b.label and a.kind == b.kind and a.p == b.p
    assert [h.name for h in a.hypotheses] == [h.name for h in b.hypotheses], a.label
    for field in ("value", "empirical", "ratio"):
        x, y = np.asarray(getattr(a, field), float), np.asarray(getattr(b, field), float)
        np.testing.assert_allclose(y, x, rtol=rtol, atol=1e-12 * (1 + np.max(np.abs(x))),
                                   err_msg=f"{a.label}.{field}")
    assert np.array_equal(a.applies, b.applies), a.label
    assert np.array_equal(a.holds, b.holds), a.label


@pytest.mark.parametrize("name", ALGORITHMS)
@pytest.mark.parametrize("seed,grid_kind", [(0, "rows"), (1, "groups"), (2, "rows")])
def test_torch_float64_bounds_equal_the_numpy_records(name, seed, grid_kind):
    inst, ref, run = _both(name, seed, grid_kind)
    uses_xt = name.startswith("qronos")
    r = pt.certify(ref, inst.X, inst.Xt if uses_xt else None, p=1e-6)
    c = pt.certify(run, T(inst.X), T(inst.Xt) if uses_xt else None, p=1e-6)
    assert [b.label for b in r.bounds] == [b.label for b in c.bounds] and len(c.bounds) >= 2
    for a, b in zip(r.bounds, c.bounds, strict=True):
        _same_record(a, b)
    assert c.skipped_bounds == () and not c.violations
    # the tidy records agree too (labels, applies, holds)
    ra, ca = r.to_records(), c.to_records()
    assert [(x["quantity"], x["applies"], x["holds"]) for x in ra] == \
        [(x["quantity"], x["applies"], x["holds"]) for x in ca]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_statistics_only_bounds_agree_and_list_what_was_skipped(name):
    inst, ref, run = _both(name, 4, "rows")
    uses_xt = name.startswith("qronos")
    acc = TorchAccumulator(inst.X.shape[1], with_mismatch=uses_xt)
    for i in range(0, inst.X.shape[0], 10):
        acc.update(T(inst.X[i:i + 10]), T(inst.Xt[i:i + 10]) if uses_xt else None)
    r = pt.certify(ref, inst.X, inst.Xt if uses_xt else None, p=1e-6)
    c = pt.certify(run, acc, p=1e-6)
    want_skipped = {"optq-stochastic": ("B5", "B5.uniform"), "qronos-stochastic": ("B10.sup",)}
    assert c.skipped_bounds == want_skipped.get(name, ())
    got = {b.label: b for b in c.bounds}
    assert set(got) == {b.label for b in r.bounds} - set(c.skipped_bounds)
    for a in r.bounds:
        if a.label in got:  # from X^T X instead of X: the same to rounding
            _same_record(a, got[a.label], rtol=1e-8)
    # streamed batches measure ||Xw - Xt q||_inf, so B5's uniform form comes back
    if name == "optq-stochastic":
        s = pt.certify(run, (T(inst.X[i:i + 7]) for i in range(0, inst.X.shape[0], 7)), p=1e-6)
        assert s.skipped_bounds == ("B5",)
        _same_record(r.bound("B5.uniform"), s.bound("B5.uniform"))


def test_float32_runs_get_bounds_with_a_float32_allowance():
    inst = make_instance(6, "heavy_tailed", m=64, N=16, n=6)
    grid = pt.Grid.minmax(inst.W, bits=3)
    X32 = T(inst.X, torch.float32)
    run = pt.optq(T(inst.W, torch.float32), X32, lam=pt.Damping.percdamp(0.05), grid=grid)
    c = pt.certify(run, X32, p=1e-6)
    assert {"B1", "B2", "B7", "B8"} <= {b.label for b in c.bounds}
    assert not c.violations
    b7 = c.bound("B7")
    assert np.all(b7.atol > 1e3 * 16 * np.finfo(float).eps * np.linalg.norm(inst.W, axis=1))


def test_incoherence_bounds_are_those_of_the_inner_run():
    inst = make_instance(7, "outliers", m=40, N=12, n=4)
    grid = pt.Grid.minmax(inst.W, bits=4)
    run = pt.ldlq(T(inst.W), T(inst.X), lam=0.5, grid=grid, incoherence="kron", seed=1)
    c = pt.certify(run, T(inst.X), p=1e-6)
    assert c.transformed and not c.violations
    assert [b.label for b in c.bounds] == ["B2", "B8", "B1", "B1.data", "B7.drift", "B7", "B7.lam",
                                           "B11", "B11.incoherence", "L1"]
    acc = TorchAccumulator(12)
    acc.update(T(inst.X))
    s = pt.certify(run, acc, p=1e-6)
    for a, b in zip(c.bounds, s.bounds, strict=True):
        if a.label == "B11.incoherence":
            # mu(H) reads eigenvectors, which move with rounding where eigenvalues nearly coincide
            # (V H V^T formed from statistics vs from the transformed data): compare the verdicts.
            assert np.array_equal(a.applies, b.applies) and np.array_equal(a.holds, b.holds)
            continue
        _same_record(a, b, rtol=1e-8)


def test_bad_p_and_no_bounds():
    inst = make_instance(8, "gaussian", m=20, N=6, n=2)
    run = pt.optq(T(inst.W), T(inst.X), lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match=r"p must be in \(0, 1\)"):
        pt.certify(run, T(inst.X), p=1.5)
    c = pt.certify(run, T(inst.X), bounds=False)
    assert c.bounds == [] and c.skipped_bounds == ()
