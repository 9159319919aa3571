"""The torch backend (CPU here; the code is device-agnostic) against the float64 numpy reference.

* float64 torch == numpy: identical grid codes and clips, ``Q``/``eta`` to 1e-9 of the grid step
  (THEORY.md T4 "torch == numpy"), for every algorithm, several block sizes, groups and orders. The
  instances are damped (lam >= 1e-4 mean diag(X^T X)): the torch path factors the formed H by
  Cholesky (relative pivot error ~ eps kappa(H)), the reference factors the data by QR
  (~ eps sqrt(kappa)); with kappa(H) <= 1e4 N both are far below the 1e-9 tolerance.
* float32 torch vs numpy: a float32 sweep perturbs each x_t by about eps32 * |w| * (a modest factor),
  so a code differs only when x_t / delta lies within ~1e-6 of a rounding boundary, and one flip may
  cascade through the error feedback. Measured on 900 seeded instances (lam >= 1e-2 mean diag):
  99.99 % of codes agree; the test asks for 99 % on a fixed seeded set. The certificate identities
  use the float32 rounding allowance (eps32) and hold at rtol 1e-4 on every generated instance.
"""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from strategies import TIE_FREE_GRIDS, Case, cases, check_certificate, examples, make_grid

import ptqtheory as pt
from ptqtheory import engine
from ptqtheory.instances import make_instance
from ptqtheory.torch_backend import TorchAccumulator, minmax_grid, random_orthogonal, tf32_guard
from ptqtheory.torch_backend.rand import torch_generator, uniforms

DAMPED = (1e-4, 1e-2, 1.0)
F64 = torch.float64


def T(a, dtype=F64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def N_(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def assert_same_run(a: pt.Run, b: pt.Run, tol: float = 1e-9) -> None:
    """``a`` numpy, ``b`` torch: same grid points and clips; values to ``tol`` of the grid step."""
    assert b.backend == "torch" and a.backend == "numpy"
    assert np.array_equal(a.codes, b.codes)
    assert np.array_equal(N_(a.clipped), N_(b.clipped))
    assert np.array_equal(N_(a.order), N_(b.order))
    step = np.max(np.abs(a.grid.expand(*np.atleast_2d(a.W).shape)[0]))
    np.testing.assert_allclose(N_(b.Q), a.Q, rtol=0, atol=tol * step)
    np.testing.assert_allclose(N_(b.eta), a.eta, rtol=0, atol=tol * step)
    np.testing.assert_allclose(b.grid.delta, a.grid.delta, rtol=1e-9, atol=0)
    assert math.isclose(a.lam, b.lam, rel_tol=1e-12)


def _kw(case: Case, **extra) -> dict:
    return {"lam": case.lam, "grid": case.grid, "order": case.order, "seed": case.seed, **extra}


TIE_PRONE = ("decreasing_norm", "increasing_norm", "min_pivot")


def aligned(case: Case, ref_order, Xo: np.ndarray, fn, lam: float | None = None) -> pt.Run:
    """``fn(order)`` with the case's order, checked against ``ref_order``.

    Column norms (or min-pivot Schur complements) that tie up to rounding, e.g. on instances with
    condition number 1, may be ordered differently by two correct float paths. Then the torch order
    must be as good as the reference's (same norms / pivots in every position, to rounding), and
    the run is repeated with the reference order so that the rest can be compared.
    """
    run = fn(case.order)
    got, want = N_(run.order), N_(ref_order)
    if np.array_equal(got, want):
        return run
    assert isinstance(case.order, str) and case.order in TIE_PRONE, (case.order, got, want)
    lam = case.lam if lam is None else lam
    if case.order == "min_pivot":
        H = Xo.T @ Xo + lam * np.eye(Xo.shape[1])
        D = [pt.pivots(H[o][:, o]).D for o in (got, want)]
        np.testing.assert_allclose(D[0], D[1], rtol=1e-6)
    else:
        g = np.sum(Xo * Xo, axis=0)
        np.testing.assert_allclose(g[got], g[want], rtol=1e-9)
    return fn(want)


# -- float64: torch == numpy ----------------------------------------------------------------------


@examples(100)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from([1, 5, 32, 128]))
def test_float64_optq_and_ldlq_equal_the_numpy_reference(case, block_size):
    ref = pt.optq(case.W, case.X, **_kw(case))
    W, X = T(case.W), T(case.X)
    for bs in (block_size, 1):
        run = aligned(case, ref.order, case.X,
                      lambda o, bs=bs: pt.optq(W, X, **_kw(case, order=o, block_size=bs)))
        assert_same_run(ref, run)
    run = aligned(case, ref.order, case.X, lambda o: pt.ldlq(W, X, **_kw(case, order=o)))
    assert run.algorithm == "ldlq"
    assert_same_run(pt.ldlq(case.W, case.X, **_kw(case, order=N_(run.order))), run)


@examples(60)
@given(cases(lam_factors=DAMPED, grid_kinds=("minmax_groups",)), st.integers(1, 6), st.integers(1, 12))
def test_float64_groups_refit_from_current_weights_for_every_block_size(case, group_size, block_size):
    """Groups smaller than, equal to and larger than the block (the stale-weights peer bug)."""
    g = pt.Grid.minmax(case.W, bits=3, group_size=group_size)
    ref = pt.optq(case.W, case.X, lam=case.lam, grid=g, order=case.order, seed=case.seed,
                  method="iteration")
    W, X = T(case.W), T(case.X)
    run = aligned(case, ref.order, case.X, lambda o: pt.optq(
        W, X, lam=case.lam, grid=g, order=o, seed=case.seed, block_size=block_size))
    assert_same_run(ref, run)


@examples(60)
@given(cases(lam_factors=DAMPED, grid_kinds=("per_row", "minmax_groups")), st.integers(1, 6),
       st.integers(1, 20), st.sampled_from([1, 2, 3, 5]))
def test_float64_sub_blocks_of_the_sweep_change_nothing(case, group_size, block_size, inner):
    """The sweep's innermost sub-blocks (``INNER`` columns, 16 in use) with groups straddling
    sub-block and block boundaries, against the paper iteration."""
    g = pt.Grid.minmax(case.W, bits=3, group_size=group_size) if case.grid.rule else case.grid
    ref = pt.optq(case.W, case.X, lam=case.lam, grid=g, order=case.order, seed=case.seed,
                  method="iteration")
    W, X = T(case.W), T(case.X)
    with mock.patch.object(engine, "INNER", inner):
        run = aligned(case, ref.order, case.X, lambda o: pt.optq(
            W, X, lam=case.lam, grid=g, order=o, seed=case.seed, block_size=block_size))
    assert_same_run(ref, run)


@examples(100)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from(["paper", "ls"]),
       st.sampled_from(["w", "ls"]), st.sampled_from([1, 7, 128]))
def test_float64_qronos_equals_the_numpy_reference(case, variant, start, block_size):
    kw = _kw(case, variant=variant, start=start)
    ref = pt.qronos(case.W, case.X, case.Xt, **kw)
    W, X, Xt = T(case.W), T(case.X), T(case.Xt)
    run = aligned(case, ref.order, case.Xt,
                  lambda o: pt.qronos(W, X, Xt, block_size=block_size, **{**kw, "order": o}))
    assert_same_run(ref, run)
    np.testing.assert_allclose(N_(run.w_ls), ref.w_ls, rtol=1e-9, atol=1e-9 * np.max(np.abs(ref.w_ls)))
    # Xt = X: both variants are OPTQ (A4 == A4' == A2), also on the torch path (same statistics).
    same = pt.qronos(W, X, X, **kw)
    assert np.array_equal(same.codes, pt.optq(W, X, **_kw(case)).codes)


# GPFQ has no damping: min_pivot on a singular Xt^T Xt raises (in both paths), so it is left out here.
GPFQ_ORDERS = ("natural", "decreasing_norm", "increasing_norm", "random", "explicit")


@examples(60)
@given(cases(grid_kinds=TIE_FREE_GRIDS, lam_factors=(0.0,), orders=GPFQ_ORDERS),
       st.sampled_from(["nearest", "stochastic"]))
def test_float64_gpfq_and_rtn_equal_the_numpy_reference(case, rounding):
    Wt, Xt_, Xtt = T(case.W), T(case.X), T(case.Xt)
    with _numpy_uses_torch_uniforms(Wt):
        if np.all(np.sum(case.Xt**2, axis=0) > 0):
            ref = pt.gpfq(case.W, case.X, case.Xt, grid=case.grid, order=case.order, seed=case.seed,
                          rounding=rounding)
            run = aligned(case, ref.order, case.Xt, lambda o: pt.gpfq(
                Wt, Xt_, Xtt, grid=case.grid, order=o, seed=case.seed, rounding=rounding), lam=0.0)
            assert_same_run(ref, run)
            scale = max(1.0, float(np.max(np.abs(ref.residual))))
            np.testing.assert_allclose(N_(run.residual), ref.residual, rtol=0, atol=1e-9 * scale)
        assert_same_run(pt.rtn(case.W, grid=case.grid, rounding=rounding, seed=case.seed),
                        pt.rtn(Wt, grid=case.grid, rounding=rounding, seed=case.seed))


class _numpy_uses_torch_uniforms:
    """Make the numpy reference draw the torch backend's uniforms (same seed, same entries)."""

    def __init__(self, like: torch.Tensor):
        self.like = like

    def __enter__(self):
        def draw(seed, shape):
            return N_(uniforms(seed, shape, self.like.device, self.like.dtype))

        self.patches = [mock.patch("ptqtheory.algorithms._engine.uniforms", draw)]
        for p in self.patches:
            p.start()

    def __exit__(self, *exc):
        for p in self.patches:
            p.stop()


@examples(60)
@given(cases(lam_factors=DAMPED, grid_kinds=("scalar", "per_row", "minmax_groups")),
       st.sampled_from([1, 6, 128]))
def test_float64_stochastic_optq_and_qronos_equal_the_reference_with_the_same_uniforms(case, block_size):
    W = T(case.W)
    kw = _kw(case, rounding="stochastic")
    with _numpy_uses_torch_uniforms(W):
        ref = pt.optq(case.W, case.X, **kw)
        ref_q = pt.qronos(case.W, case.X, case.Xt, **kw)
    X, Xt = T(case.X), T(case.Xt)
    run = aligned(case, ref.order, case.X,
                  lambda o: pt.optq(W, X, block_size=block_size, **{**kw, "order": o}))
    assert_same_run(ref, run)
    run = aligned(case, ref_q.order, case.Xt,
                  lambda o: pt.qronos(W, X, Xt, block_size=block_size, **{**kw, "order": o}))
    assert_same_run(ref_q, run)


def test_vector_weights_match_the_reference():
    inst = make_instance(3, "gaussian", m=30, N=9, n=1)
    w = inst.W[0]
    g = pt.Grid(0.05)
    ref = pt.optq(w, inst.X, lam=0.1, grid=g, order="decreasing_norm")
    run = pt.optq(T(w), T(inst.X), lam=0.1, grid=g, order="decreasing_norm")
    assert run.Q.shape == (9,) and run.eta.shape == (9,)
    np.testing.assert_allclose(N_(run.Q), ref.Q, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(run.grid.delta, ref.grid.delta)


# -- certificates ----------------------------------------------------------------------------------


@examples(80)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS),
       st.sampled_from(["optq", "ldlq", "qronos", "qronos-ls", "gpfq", "rtn"]))
def test_float64_certificates_hold_and_agree_with_the_reference(case, algorithm):
    W, X, Xt = T(case.W), T(case.X), T(case.Xt)
    run, ref = _run_both(algorithm, case, W, X, Xt)
    uses_xt = algorithm.startswith("qronos") or algorithm == "gpfq"
    c = pt.certify(run, X, Xt if uses_xt else None)
    check_certificate(c, 1e-10)
    r = pt.certify(ref, case.X, case.Xt if uses_xt else None, full_pivot_check=False)
    assert c.identity == r.identity
    np.testing.assert_allclose(c.err_l2, r.err_l2, rtol=1e-8, atol=1e-12 * (1 + np.max(r.err_l2)))
    np.testing.assert_allclose(c.err_inf, r.err_inf, rtol=1e-8, atol=1e-12 * (1 + np.max(r.err_inf)))
    if c.identity is not None:
        scale = 1e-12 + np.max(np.abs(r.identity_rhs))
        np.testing.assert_allclose(c.identity_rhs, r.identity_rhs, rtol=1e-8, atol=1e-9 * scale)


def _run_both(algorithm: str, case: Case, W, X, Xt):
    """``(torch run, numpy run)`` of ``algorithm`` on ``case`` (orders aligned on ties)."""
    kw = _kw(case)
    if algorithm in ("optq", "ldlq"):
        fn = getattr(pt, algorithm)
        ref = fn(case.W, case.X, **kw)
        return aligned(case, ref.order, case.X, lambda o: fn(W, X, **{**kw, "order": o})), ref
    if algorithm.startswith("qronos"):
        v = "ls" if algorithm.endswith("ls") else "paper"
        ref = pt.qronos(case.W, case.X, case.Xt, variant=v, **kw)
        return aligned(case, ref.order, case.Xt,
                       lambda o: pt.qronos(W, X, Xt, variant=v, **{**kw, "order": o})), ref
    if algorithm == "gpfq":
        order = "decreasing_norm" if isinstance(case.order, str) and case.order == "min_pivot" else case.order
        kw = dict(grid=case.grid, seed=case.seed, dead_columns="round")
        ref = pt.gpfq(case.W, case.X, case.Xt, order=order, **kw)
        case = Case(case.inst, case.lam, case.lam_factor, case.grid, case.grid_kind, order, case.seed)
        return aligned(case, ref.order, case.Xt, lambda o: pt.gpfq(W, X, Xt, order=o, **kw), lam=0.0), ref
    return pt.rtn(W, grid=case.grid), pt.rtn(case.W, grid=case.grid)


@examples(80)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS),
       st.sampled_from(["optq", "ldlq", "qronos", "qronos-ls"]), st.sampled_from([4, 128]))
def test_float32_runs_are_certified_at_float32_tolerance(case, algorithm, block_size):
    W, X, Xt = T(case.W, torch.float32), T(case.X, torch.float32), T(case.Xt, torch.float32)
    kw = _kw(case)
    if algorithm.startswith("qronos"):
        v = "ls" if algorithm.endswith("ls") else "paper"
        run = pt.qronos(W, X, Xt, variant=v, block_size=block_size, **kw)
        c = pt.certify(run, X, Xt)
    elif algorithm == "optq":
        run = pt.optq(W, X, block_size=block_size, **kw)
        c = pt.certify(run, X)
    else:
        run = pt.ldlq(W, X, **kw)
        c = pt.certify(run, X)
    assert run.precision == "float32" and run.Q.dtype == torch.float32
    check_certificate(c, 1e-4)


def test_float32_codes_agree_with_float64_reference_on_well_conditioned_data():
    agree = total = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        fam = ("gaussian", "outliers", "heavy_tailed", "ill_conditioned")[seed % 4]
        inst = make_instance(seed, fam, m=int(rng.integers(8, 65)), N=int(rng.integers(2, 49)),
                             n=int(rng.integers(1, 5)), cond=10 ** rng.uniform(0, 8))
        lam = 10 ** rng.uniform(-2, 0) * float(np.mean(np.sum(inst.X**2, axis=0)))
        g = make_grid(TIE_FREE_GRIDS[seed % len(TIE_FREE_GRIDS)], inst.W, rng)
        ref = pt.optq(inst.W, inst.X, lam=lam, grid=g)
        run = pt.optq(T(inst.W, torch.float32), T(inst.X, torch.float32), lam=lam, grid=g, block_size=8)
        eq = np.asarray(ref.codes) == run.codes
        agree, total = agree + int(eq.sum()), total + eq.size
    assert agree >= 0.99 * total, (agree, total)


def test_identity_checks_can_fail():
    """A corrupted record is rejected: the certificate is not vacuous."""
    inst = make_instance(1, "gaussian", m=40, N=12, n=2)
    W, X = T(inst.W), T(inst.X)
    run = pt.optq(W, X, lam=0.5, grid=pt.Grid(0.05))
    assert pt.certify(run, X).holds(1e-10)
    bad = pt.Run(**{**run.__dict__, "eta": run.eta * 1.001})
    assert not pt.certify(bad, X).holds(1e-6)
    # float32: the allowance grows with eps32 (about 1e-3 of the sides here), still not vacuous.
    X32 = X.float()
    run = pt.optq(W.float(), X32, lam=0.5, grid=pt.Grid(0.05))
    assert pt.certify(run, X32).holds(1e-4)
    bad = pt.Run(**{**run.__dict__, "eta": run.eta * 1.01})
    assert not pt.certify(bad, X32).holds(1e-4)


# -- statistics -------------------------------------------------------------------------------------


def test_accumulator_streaming_equals_full_statistics():
    inst = make_instance(7, "heavy_tailed", m=90, N=16, n=3)
    X, Xt = T(inst.X), T(inst.Xt)
    acc = TorchAccumulator(16, "cpu", with_mismatch=True)
    for r0, r1 in ((0, 10), (10, 11), (11, 64), (64, 90)):
        acc.update(X[r0:r1], Xt[r0:r1])
    assert acc.m == 90 and acc.batches == 4
    for got, want in ((acc.gram_X, inst.X.T @ inst.X), (acc.gram_Xt, inst.Xt.T @ inst.Xt),
                      (acc.cross_Xt_X, inst.Xt.T @ inst.X),
                      (acc.gram_mismatch, (inst.X - inst.Xt).T @ (inst.X - inst.Xt))):
        np.testing.assert_allclose(N_(got), want, rtol=1e-12, atol=1e-12 * np.max(np.abs(want)))
    Ht, G = acc.Ht_G(0.5)
    np.testing.assert_allclose(N_(G), inst.Xt.T @ inst.X + 0.5 * np.eye(16), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(N_(Ht), inst.Xt.T @ inst.Xt + 0.5 * np.eye(16), rtol=1e-12, atol=1e-10)
    # float32 and 3-D batches: accumulated in float64 from the float32 values, leading dims flattened.
    acc32 = TorchAccumulator(16)
    acc32.update(X.float().reshape(3, 30, 16))
    X32 = inst.X.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(N_(acc32.gram_X), X32.T @ X32, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(N_(acc32.H(pt.Damping.percdamp(0.1))),
                               pt.hessian(X32, pt.Damping.percdamp(0.1)), rtol=1e-12, atol=1e-10)


@examples(50)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from(["optq", "ldlq", "qronos"]))
def test_statistics_only_input_gives_the_tensor_result(case, algorithm):
    W, X, Xt = T(case.W), T(case.X), T(case.Xt)
    acc = TorchAccumulator(X.shape[1], with_mismatch=algorithm == "qronos")
    for r0 in range(0, X.shape[0], 7):
        acc.update(X[r0 : r0 + 7], Xt[r0 : r0 + 7] if algorithm == "qronos" else None)
    kw = _kw(case)
    if algorithm == "qronos":
        a = pt.qronos(W, X, Xt, **kw)
        b = aligned(case, a.order, case.Xt, lambda o: pt.qronos(W, acc, None, **{**kw, "order": o}))
        ca, cb = pt.certify(a, X, Xt), pt.certify(b, acc)
        batches = [(X[i : i + 5], Xt[i : i + 5]) for i in range(0, X.shape[0], 5)]
    else:
        fn = getattr(pt, algorithm)
        a = fn(W, X, **kw)
        b = aligned(case, a.order, case.X, lambda o: fn(W, acc, **{**kw, "order": o}))
        ca, cb = pt.certify(a, X), pt.certify(b, acc)
        batches = (X[i : i + 5] for i in range(0, X.shape[0], 5))
    assert np.array_equal(a.codes, b.codes)
    np.testing.assert_allclose(N_(b.eta), N_(a.eta), rtol=0, atol=1e-9 * np.max(np.abs(a.grid.delta)))
    check_certificate(cb, 1e-10)
    assert np.all(np.isnan(cb.err_inf))
    scale = 1e-12 + np.max(ca.err_l2)
    np.testing.assert_allclose(cb.err_l2, ca.err_l2, rtol=1e-7, atol=1e-7 * scale)
    cs = pt.certify(a, batches)  # streamed once, one batch at a time
    np.testing.assert_allclose(cs.err_inf, ca.err_inf, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(cs.identity_lhs, ca.identity_lhs, rtol=1e-10, atol=1e-12 * scale**2)


def test_gpfq_refuses_statistics():
    inst = make_instance(2, "gaussian", m=20, N=6, n=2)
    acc = TorchAccumulator(6, with_mismatch=True)
    acc.update(T(inst.X), T(inst.Xt))
    with pytest.raises(ValueError, match="GPFQ needs the calibration data X and Xt themselves"):
        pt.gpfq(T(inst.W), acc, None, grid=pt.Grid(0.1))
    run = pt.gpfq(T(inst.W), T(inst.X), T(inst.Xt), grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match=r"certifying a GPFQ run .* needs the data"):
        pt.certify(run, acc)
    check_certificate(pt.certify(run, T(inst.X), T(inst.Xt)))


# -- determinism, incoherence -----------------------------------------------------------------------


def test_same_seed_same_bits_and_block_size_independence():
    inst = make_instance(4, "outliers", m=50, N=24, n=3)
    W, X = T(inst.W, torch.float32), T(inst.X, torch.float32)
    g = pt.Grid.minmax(inst.W, bits=3, group_size=5)
    kw = dict(lam=pt.Damping.percdamp(0.01), grid=g, rounding="stochastic", order="random", seed=11)
    a, b = pt.optq(W, X, **kw), pt.optq(W, X, **kw)
    for f in ("Q", "eta", "x", "clipped", "order"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    c = pt.optq(W, X, block_size=3, **kw)
    assert np.array_equal(a.codes, c.codes)
    d = pt.optq(W, X, **{**kw, "seed": 12})
    assert not torch.equal(a.Q, d.Q)
    with pytest.raises(ValueError, match="stochastic rounding is random: pass seed"):
        pt.optq(W, X, **{**kw, "seed": None, "order": "natural"})


def test_incoherence_same_seed_same_bits_and_matches_the_reference_on_the_processed_problem():
    inst = make_instance(5, "outliers", m=40, N=16, n=4)
    W, X = T(inst.W), T(inst.X)
    g = pt.Grid.minmax(inst.W, bits=3)
    for kind in ("kron", "hadamard"):
        a = pt.ldlq(W, X, lam=0.5, grid=g, incoherence=kind, seed=3)
        b = pt.ldlq(W, X, lam=0.5, grid=g, incoherence=kind, seed=3)
        assert torch.equal(a.Q, b.Q) and torch.equal(a.transform.V, b.transform.V)
        U, V = N_(a.transform.U), N_(a.transform.V)
        np.testing.assert_allclose(V @ V.T, np.eye(16), atol=1e-13)
        np.testing.assert_allclose(U @ U.T, np.eye(4), atol=1e-13)
        Wt = U @ inst.W @ V.T
        ref = pt.ldlq(Wt, inst.X @ V.T, lam=0.5, grid=pt.Grid.minmax(Wt, bits=3), seed=3)
        assert_same_run(ref, a.inner)
        np.testing.assert_allclose(N_(a.Q), U.T @ ref.Q @ V, atol=1e-12)
        c = pt.certify(a, X)
        assert c.transformed
        check_certificate(c)
        acc = TorchAccumulator(16)
        acc.update(X)
        c_acc = pt.certify(a, acc)
        check_certificate(c_acc)
        np.testing.assert_allclose(c_acc.identity_rhs, c.identity_rhs, rtol=1e-10)
    other = pt.ldlq(W, X, lam=0.5, grid=g, incoherence="hadamard", seed=4)
    assert not torch.equal(other.transform.V, a.transform.V)
    with pytest.raises(ValueError, match="powers of 2"):
        random_orthogonal(12, "hadamard", torch_generator(0, "transform", "t", "cpu"), "cpu")
    with pytest.raises(ValueError, match="incoherence='kron' is random: pass seed"):
        pt.ldlq(W, X, lam=0.5, grid=g, incoherence="kron")


# -- record, precision, TF32 -----------------------------------------------------------------------


def test_run_record_of_the_torch_backend():
    inst = make_instance(6, "gaussian", m=30, N=10, n=3)
    W = T(inst.W, torch.float32)
    run = pt.optq(W, T(inst.X, torch.float32), lam=0.1, grid=minmax_grid(W, bits=4, group_size=4))
    assert (run.backend, run.precision, run.device, run.tf32) == ("torch", "float32", "cpu", False)
    assert all(isinstance(getattr(run, f), torch.Tensor) for f in ("W", "Q", "eta", "x", "clipped", "order"))
    assert isinstance(run.grid, pt.Grid) and isinstance(run.grid.delta, np.ndarray)
    assert "factorization in float64" in run.notes
    W += 1.0  # the record holds a copy of the weights
    assert not torch.equal(run.W, W)
    assert run.n_clipped >= 0 and "precision=float32" in run.summary()
    # the grid codes reproduce Q
    np.testing.assert_allclose(run.grid.delta * (run.codes - run.grid.zero), N_(run.Q), rtol=1e-6, atol=0)
    r32 = pt.optq(T(inst.W, torch.float32), T(inst.X), lam=0.1, grid=pt.Grid(0.1))
    r16 = pt.optq(T(inst.W, torch.float16), T(inst.X), lam=0.1, grid=pt.Grid(0.1))
    assert r16.precision == "float32" and any("widened" in s for s in r16.notes)
    assert r32.precision == "float32"
    from ptqtheory.torch_backend import optq as torch_optq

    rf = torch_optq(T(inst.W, torch.float32), T(inst.X), lam=0.1, grid=pt.Grid(0.1), factor_dtype=torch.float32)
    assert "factorization in float32" in rf.notes
    assert np.mean(rf.codes == r32.codes) > 0.9


def _flags():
    return (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
            torch.get_float32_matmul_precision())


def test_tf32_flags_are_unchanged_by_calls():
    inst = make_instance(8, "gaussian", m=20, N=8, n=2)
    before = _flags()
    run = pt.optq(T(inst.W, torch.float32), T(inst.X, torch.float32), lam=0.1, grid=pt.Grid(0.1))
    pt.certify(run, T(inst.X, torch.float32))
    assert _flags() == before


def test_tf32_guard_restores_the_callers_flags_on_cuda_even_after_an_error():
    """The CUDA branch sets plain flags, so it can be exercised without a GPU."""
    saved = _flags()
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        before = _flags()
        with tf32_guard(torch.device("cuda"), allow_tf32=False) as used:
            assert used is False
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert _flags() == before
        with pytest.raises(RuntimeError, match="boom"), tf32_guard("cuda:0"):
            raise RuntimeError("boom")
        assert _flags() == before
        with tf32_guard("cpu") as used:
            assert used is False and _flags() == before
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[0], saved[1]
        torch.set_float32_matmul_precision(saved[2])
    assert _flags() == saved


# -- errors -----------------------------------------------------------------------------------------


def test_singular_H_raises_with_lam_advice_and_auto_damping_is_recorded():
    inst = make_instance(9, "rank_deficient", m=20, N=10, n=2)
    X = inst.X.copy()
    X[:, 4] = 0.0
    W, Xt_ = T(inst.W), T(X)
    with pytest.raises(pt.SingularHessianError, match=r"with lam = 0 .*Columns with no activation "
                       r"\(dead columns\): 4\..*pt\.Damping\.percdamp\(0\.01\)"):
        pt.optq(W, Xt_, lam=0.0, grid=pt.Grid(0.1))
    with pytest.raises(pt.SingularHessianError, match="Ht = Xt"):
        pt.qronos(W, Xt_, Xt_, lam=0.0, grid=pt.Grid(0.1))
    run = pt.optq(W, Xt_, lam=pt.Damping.absolute(0.0, auto=True), grid=pt.Grid(0.1))
    ref = pt.optq(inst.W, X, lam=pt.Damping.absolute(0.0, auto=True), grid=pt.Grid(0.1))
    assert run.lam > 0 and math.isclose(run.lam, ref.lam, rel_tol=1e-12)
    assert any("automatic damping raised lam from 0 to" in s for s in run.notes)
    assert "->" in run.damping


def test_nan_and_inf_are_refused_naming_the_argument():
    inst = make_instance(10, "gaussian", m=12, N=5, n=2)
    W, X = T(inst.W), T(inst.X)
    Wb, Xb = W.clone(), X.clone()
    Wb[1, 2] = float("nan")
    Xb[3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^W contains NaN or Inf \(1 entries, first at index \(1, 2\)\)"):
        pt.optq(Wb, X, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match=r"^X contains NaN or Inf"):
        pt.optq(W, Xb, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match=r"^Xt contains NaN or Inf"):
        pt.qronos(W, X, Xb, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match=r"^X_batch \(batch 1 of this accumulator\) contains NaN"):
        acc = TorchAccumulator(5)
        acc.update(X)
        acc.update(Xb)
    with pytest.raises(ValueError, match=r"^W contains NaN"):
        pt.rtn(Wb, grid=pt.Grid(0.1))


def test_mixed_and_misplaced_inputs_raise_clear_errors():
    inst = make_instance(11, "gaussian", m=12, N=5, n=2)
    W, X = T(inst.W), T(inst.X)
    with pytest.raises(TypeError, match=r"^X is a numpy.ndarray but the other inputs are torch tensors"):
        pt.optq(W, inst.X, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(TypeError, match=r"^W is a numpy.ndarray but the torch backend was selected \(X is"):
        pt.optq(inst.W, X, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(TypeError, match=r"^Xt is a numpy.ndarray"):
        pt.qronos(W, X, inst.Xt, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match="X has 4 columns but W has 5"):
        pt.optq(W, X[:, :4], lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match="method='iteration'"):
        pt.optq(W, X, lam=0.1, grid=pt.Grid(0.1), method="iteration")
    with pytest.raises(TypeError, match=r"W has dtype torch\.int64"):
        pt.rtn(torch.ones(2, 3, dtype=torch.int64), grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match="with_mismatch=False"):
        acc = TorchAccumulator(5)
        acc.update(X)
        pt.qronos(W, acc, None, lam=0.1, grid=pt.Grid(0.1))
    run = pt.optq(W, X, lam=0.1, grid=pt.Grid(0.1))
    with pytest.raises(TypeError, match=r"^X is a numpy.ndarray"):
        pt.certify(run, inst.X)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2.0])
def test_all_finite_finds_every_non_finite_value(dtype, value):
    # all_finite reads torch.aminmax (NaN propagates, an Inf is an extreme); the expected answer
    # comes from math.isfinite of the one planted value.
    from ptqtheory.torch_backend.device import all_finite

    for shape, where in (((5, 7), (3, 4)), ((1,), (0,)), ((4, 4), (0, 0)), ((4, 4), (3, 3))):
        t = torch.ones(shape, dtype=dtype)
        t[where] = value
        assert bool(all_finite(t)) is math.isfinite(value)
    assert bool(all_finite(torch.ones(0, 3, dtype=dtype)))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("order", ["natural", "decreasing_norm"])
def test_a_per_row_grid_is_recorded_as_the_reference_records_it(dtype, order):
    # Without group refits the torch rounder reads a per-row step as a broadcast view; the record must
    # still hold its own (n, N) arrays in the original column order, as the numpy reference's does.
    inst = make_instance(5, "gaussian", m=40, N=12, n=6)
    grid = pt.Grid.minmax(inst.W, bits=3)
    ref = pt.optq(inst.W, inst.X, lam=0.1, grid=grid, order=order)
    run = pt.optq(T(inst.W, dtype), T(inst.X, dtype), lam=0.1, grid=grid, order=order)
    for name in ("delta", "zero"):
        got, want = getattr(run.grid, name), getattr(ref.grid, name)
        assert got.shape == want.shape == (6, 12) and 0 not in got.strides
        np.testing.assert_array_equal(got, np.asarray(want, dtype=torch.empty(0, dtype=dtype).numpy().dtype))
    before = run.grid.delta.copy()
    run.grid.delta[0, 0] = 7.0  # its own memory: no other entry, and not the next run, sees the write
    np.testing.assert_array_equal(run.grid.delta[0, 1:], before[0, 1:])
