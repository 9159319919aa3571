"""Every bad input raises the promised error, with a message that names the argument and the fix."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ptqtheory as pt


def _problem(seed=0, n=3, m=12, N=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, N)), rng.standard_normal((m, N))


GRID = pt.Grid(0.1)


def _all_algorithms(W, X, Xt=None, **kw):
    """Calls of every algorithm that takes (W, X[, Xt])."""
    Xt = X if Xt is None else Xt
    return {
        "optq": lambda: pt.optq(W, X, lam=0.1, grid=GRID, **kw),
        "optq_iteration": lambda: pt.optq(W, X, lam=0.1, grid=GRID, method="iteration", **kw),
        "ldlq": lambda: pt.ldlq(W, X, lam=0.1, grid=GRID, **kw),
        "qronos": lambda: pt.qronos(W, X, Xt, lam=0.1, grid=GRID, **kw),
        "gpfq": lambda: pt.gpfq(W, X, Xt, grid=GRID, **kw),
    }


# -- non-finite data -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["W", "X", "Xt"])
def test_non_finite_inputs_raise_naming_the_argument(bad, where):
    W, X = _problem()
    Xt = X.copy()
    {"W": W, "X": X, "Xt": Xt}[where][1, 2] = bad
    algos = _all_algorithms(W, X, Xt)
    if where == "Xt":
        algos = {k: v for k, v in algos.items() if k in ("qronos", "gpfq")}
    for name, call in algos.items():
        with pytest.raises(ValueError, match=rf"^{where} contains NaN or Inf") as info:
            call()
        assert "(1, 2)" in str(info.value), name  # the first bad index is reported
    if where == "W":
        with pytest.raises(ValueError, match=r"^W contains NaN or Inf"):
            pt.rtn(W, grid=GRID)


# -- shapes ----------------------------------------------------------------------------------------


def test_X_with_wrong_number_of_columns_raises():
    W, X = _problem()
    for call in _all_algorithms(W, X[:, :4]).values():
        with pytest.raises(ValueError, match=r"^X has 4 columns but W has 5"):
            call()


def test_Xt_with_different_rows_raises():
    W, X = _problem()
    for name in ("qronos", "gpfq"):
        with pytest.raises(ValueError, match=r"^Xt has 11 rows but X has 12"):
            _all_algorithms(W, X, X[:11])[name]()
    with pytest.raises(ValueError, match=r"^Xt has 4 columns"):
        pt.qronos(W, X, X[:, :4], lam=0.1, grid=GRID)


def test_bad_dimensions_raise():
    W, X = _problem()
    with pytest.raises(ValueError, match=r"^W must have shape"):
        pt.optq(W[None], X, lam=0.1, grid=GRID)
    with pytest.raises(ValueError, match=r"^X must be a 2-D array"):
        pt.optq(W, X[0], lam=0.1, grid=GRID)
    with pytest.raises(ValueError, match=r"^W must have at least one row"):
        pt.rtn(np.zeros((0, 3)), grid=GRID)
    with pytest.raises(ValueError, match=r"^X has no rows"):
        pt.optq(W, X[:0], lam=0.1, grid=GRID)


# -- damping and grids -----------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [-1e-12, -1.0, np.inf, np.nan])
def test_bad_lam_raises(lam):
    W, X = _problem()
    for call in (
        lambda: pt.optq(W, X, lam=lam, grid=GRID),
        lambda: pt.ldlq(W, X, lam=lam, grid=GRID),
        lambda: pt.qronos(W, X, X, lam=lam, grid=GRID),
    ):
        with pytest.raises(ValueError, match=r"^lam must be"):
            call()


def test_lam_of_wrong_type_raises():
    W, X = _problem()
    with pytest.raises(TypeError, match=r"^lam must be"):
        pt.optq(W, X, lam="0.01", grid=GRID)


@pytest.mark.parametrize("delta", [0.0, -0.5])
def test_nonpositive_delta_raises(delta):
    with pytest.raises(ValueError, match=r"^grid delta must be > 0"):
        pt.Grid(delta)
    with pytest.raises(ValueError, match=r"^grid delta must be > 0"):
        pt.Grid.alphabet(delta, 3)


@pytest.mark.parametrize("bits", [0, -3])
def test_bits_below_one_raises(bits):
    W, _ = _problem()
    with pytest.raises(ValueError, match=r"^bits must be an integer >= 1"):
        pt.Grid.minmax(W, bits=bits)


def test_grid_must_be_a_grid():
    W, X = _problem()
    with pytest.raises(TypeError, match=r"grid must be a pt\.Grid"):
        pt.optq(W, X, lam=0.1)
    with pytest.raises(TypeError, match=r"grid must be a pt\.Grid"):
        pt.rtn(W, grid=0.1)
    with pytest.raises(TypeError, match=r"grid must be a pt\.Grid"):
        pt.ldlq(W, X, lam=0.1, grid=0.1, incoherence="kron", seed=0)


# -- singular H ------------------------------------------------------------------------------------


def _rank_deficient():
    W, X = _problem(1, n=2, m=3, N=6)  # m < N: X^T X has rank 3
    return W, X


def _dead_column(col=2, N=5):
    W, X = _problem(2, n=2, m=20, N=N)
    X[:, col] = 0.0
    return W, X


@pytest.mark.parametrize("make", [_rank_deficient, _dead_column])
def test_singular_H_with_lam_zero_raises_with_advice(make):
    W, X = make()
    calls = {
        "optq": lambda: pt.optq(W, X, lam=0.0, grid=GRID),
        "optq_iteration": lambda: pt.optq(W, X, lam=0.0, grid=GRID, method="iteration"),
        "ldlq": lambda: pt.ldlq(W, X, lam=0.0, grid=GRID),
        "qronos": lambda: pt.qronos(W, X, X, lam=0.0, grid=GRID),
        "min_pivot": lambda: pt.optq(W, X, lam=0.0, grid=GRID, order="min_pivot"),
    }
    for name, call in calls.items():
        with pytest.raises(pt.SingularHessianError) as info:
            call()
        assert isinstance(info.value, ValueError), name
        msg = str(info.value)
        assert "lam" in msg and "percdamp" in msg, (name, msg)


def test_dead_column_message_lists_the_column():
    W, X = _dead_column(col=2)
    with pytest.raises(pt.SingularHessianError, match=r"dead columns\): 2\."):
        pt.optq(W, X, lam=0.0, grid=GRID)


@pytest.mark.parametrize("order", ["decreasing_norm", [4, 3, 2, 1, 0], [1, 0, 3, 4, 2]])
def test_dead_column_message_lists_the_original_column_whatever_the_order(order):
    # The user's column index, not its position in the processing order.
    W, X = _dead_column(col=1)
    for call in (
        lambda: pt.optq(W, X, lam=0.0, grid=GRID, order=order),
        lambda: pt.ldlq(W, X, lam=0.0, grid=GRID, order=order),
        lambda: pt.qronos(W, X, X, lam=0.0, grid=GRID, order=order),
    ):
        with pytest.raises(pt.SingularHessianError, match=r"dead columns\): 1\."):
            call()


def test_two_dead_columns_listed():
    W, X = _dead_column(col=0, N=6)
    X[:, 4] = 0.0
    with pytest.raises(pt.SingularHessianError, match=r"dead columns\): 0, 4\."):
        pt.optq(W, X, lam=0.0, grid=GRID)


@pytest.mark.parametrize("make", [_rank_deficient, _dead_column])
def test_percdamp_on_singular_data_succeeds(make):
    W, X = make()
    run = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=GRID)
    assert run.lam == pytest.approx(0.01 * np.sum(X**2) / X.shape[1], rel=1e-14)
    assert run.notes == ()
    cert = pt.certify(run, X)
    assert np.max(cert.identity_gap) < 1e-10


@pytest.mark.parametrize("make", [_rank_deficient, _dead_column])
def test_auto_damping_from_zero_records_the_lam_used(make):
    W, X = make()
    for run in (
        pt.optq(W, X, lam=pt.Damping.percdamp(0.0, auto=True), grid=GRID),
        pt.ldlq(W, X, lam=pt.Damping.percdamp(0.0, auto=True), grid=GRID),
        pt.qronos(W, X, X, lam=pt.Damping.percdamp(0.0, auto=True), grid=GRID),
    ):
        assert run.lam > 0
        assert any("automatic damping" in note for note in run.notes), run.notes
        assert f"{run.lam:g}" in run.damping
        # the recorded lam is the one the run used: the identity holds with it
        cert = pt.certify(run, X, X)
        assert np.max(cert.identity_gap) < 1e-8


def test_auto_damping_not_needed_leaves_lam_alone():
    W, X = _problem()
    run = pt.optq(W, X, lam=pt.Damping.percdamp(0.01, auto=True), grid=GRID)
    assert run.lam == pytest.approx(0.01 * np.sum(X**2) / X.shape[1], rel=1e-14)
    assert run.notes == ()


# -- seeds and names -------------------------------------------------------------------------------


def test_stochastic_rounding_without_seed_raises():
    W, X = _problem()
    calls = [
        lambda: pt.rtn(W, grid=GRID, rounding="stochastic"),
        lambda: GRID.round(W, "stochastic"),
        lambda: pt.optq(W, X, lam=0.1, grid=GRID, rounding="stochastic"),
        lambda: pt.ldlq(W, X, lam=0.1, grid=GRID, rounding="stochastic"),
        lambda: pt.qronos(W, X, X, lam=0.1, grid=GRID, rounding="stochastic"),
        lambda: pt.gpfq(W, X, X, grid=GRID, rounding="stochastic"),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="seed"):
            call()


def test_random_order_and_incoherence_without_seed_raise():
    W, X = _problem()
    for call in (
        lambda: pt.optq(W, X, lam=0.1, grid=GRID, order="random"),
        lambda: pt.qronos(W, X, X, lam=0.1, grid=GRID, order="random"),
        lambda: pt.gpfq(W, X, X, grid=GRID, order="random"),
        lambda: pt.ldlq(W, X, lam=0.1, grid=GRID, incoherence="kron"),
    ):
        with pytest.raises(ValueError, match="seed"):
            call()


def test_unknown_names_raise():
    W, X = _problem()
    cases = [
        ("rounding", lambda: pt.optq(W, X, lam=0.1, grid=GRID, rounding="floor")),
        ("rounding", lambda: pt.rtn(W, grid=GRID, rounding="Nearest")),
        ("order", lambda: pt.optq(W, X, lam=0.1, grid=GRID, order="act_order")),
        ("order", lambda: pt.gpfq(W, X, X, grid=GRID, order="decreasing")),
        ("method", lambda: pt.optq(W, X, lam=0.1, grid=GRID, method="fast")),
        ("method", lambda: pt.qronos(W, X, X, lam=0.1, grid=GRID, method="fast")),
        ("variant", lambda: pt.qronos(W, X, X, lam=0.1, grid=GRID, variant="lsq")),
        ("start", lambda: pt.qronos(W, X, X, lam=0.1, grid=GRID, start="zero")),
        ("incoherence", lambda: pt.ldlq(W, X, lam=0.1, grid=GRID, incoherence="haar", seed=0)),
        ("dead_columns", lambda: pt.gpfq(W, X, X, grid=GRID, dead_columns="skip")),
    ]
    for name, call in cases:
        with pytest.raises(ValueError, match=name):
            call()


def test_Xt_required():
    W, X = _problem()
    with pytest.raises(ValueError, match="Xt is required"):
        pt.qronos(W, X, None, lam=0.1, grid=GRID)
    with pytest.raises(ValueError, match="Xt is required"):
        pt.gpfq(W, X, None, grid=GRID)


# -- types -----------------------------------------------------------------------------------------


def test_complex_dtype_raises_type_error():
    W, X = _problem()
    with pytest.raises(TypeError, match=r"^W has dtype complex128"):
        pt.optq(W.astype(complex), X, lam=0.1, grid=GRID)
    with pytest.raises(TypeError, match=r"^X has dtype complex"):
        pt.optq(W, X.astype(np.complex64), lam=0.1, grid=GRID)
    with pytest.raises(TypeError, match=r"^Xt has dtype complex"):
        pt.qronos(W, X, X.astype(complex), lam=0.1, grid=GRID)
    with pytest.raises(TypeError, match=r"^W has dtype"):
        pt.rtn(np.array([["a", "b"]]), grid=GRID)


def test_torch_tensors_run_on_the_torch_backend_and_mixed_inputs_raise_type_error():
    """Torch inputs go to ptqtheory.torch_backend; numpy next to torch is refused with a hint."""
    W, X = _problem()
    Wt, Xtt = torch.from_numpy(W), torch.from_numpy(X)
    run = pt.optq(Wt, Xtt, lam=0.1, grid=GRID)
    assert run.backend == "torch" and isinstance(run.Q, torch.Tensor)
    np.testing.assert_allclose(run.Q.numpy(), pt.optq(W, X, lam=0.1, grid=GRID).Q, rtol=0, atol=1e-12)
    assert pt.rtn(Wt, grid=GRID).backend == "torch"
    cases = [
        ("X", "the other inputs are torch tensors", lambda: pt.optq(Wt, X, lam=0.1, grid=GRID)),
        ("W", "the torch backend was selected", lambda: pt.optq(W, Xtt, lam=0.1, grid=GRID)),
        ("Xt", "the other inputs are torch tensors", lambda: pt.qronos(Wt, Xtt, X, lam=0.1, grid=GRID)),
        ("X", "the other inputs are torch tensors", lambda: pt.gpfq(Wt, X, Xtt, grid=GRID)),
    ]
    for name, what, call in cases:
        with pytest.raises(TypeError, match=rf"^{name} is a numpy.ndarray but {what}"):
            call()
    # Grids and the numpy internals still take numpy arrays only.
    with pytest.raises(TypeError, match=r"^W is a torch tensor") as info:
        pt.Grid.minmax(Wt, bits=4)
    assert "W.detach().cpu().numpy()" in str(info.value)


def test_integer_and_float32_inputs_are_widened_exactly():
    W = np.array([[1, -2, 3]], dtype=np.int32)
    X = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 3]], dtype=np.float32)
    run = pt.optq(W, X, lam=0.0, grid=pt.Grid(1.0))
    assert run.W.dtype == np.float64
    np.testing.assert_array_equal(run.Q, [[1.0, -2.0, 3.0]])


# -- GPFQ dead columns -----------------------------------------------------------------------------


def test_gpfq_zero_column_of_Xt():
    W, X = _problem(4, n=3, m=15, N=6)
    Xt = X + 0.05 * np.random.default_rng(5).standard_normal(X.shape)
    Xt[:, 3] = 0.0
    with pytest.raises(ValueError, match=r"Xt has zero columns \[3\]") as info:
        pt.gpfq(W, X, Xt, grid=GRID)
    assert "dead_columns='round'" in str(info.value)
    run = pt.gpfq(W, X, Xt, grid=GRID, dead_columns="round")
    assert any("dead columns [3]" in note for note in run.notes)
    # the dead column's weights were rounded directly (nearest on delta*Z)
    np.testing.assert_allclose(run.Q[:, 3], 0.1 * np.floor(W[:, 3] / 0.1 + 0.5), rtol=0, atol=1e-15)
    cert = pt.certify(run, X, Xt)
    assert cert.identity == "I6"
    assert np.max(cert.identity_gap) < 1e-12
    # I6 by hand: u_N = X w - Xt q
    np.testing.assert_allclose(run.residual, W @ X.T - run.Q @ Xt.T, rtol=0, atol=1e-12)


# -- block size ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bs", [0, -1])
def test_block_size_below_one_raises(bs):
    W, X = _problem()
    with pytest.raises(ValueError, match="block_size"):
        pt.optq(W, X, lam=0.1, grid=GRID, block_size=bs)
    with pytest.raises(ValueError, match="block_size"):
        pt.qronos(W, X, X, lam=0.1, grid=GRID, block_size=bs)


def test_block_size_must_be_an_integer():
    W, X = _problem()
    with pytest.raises(TypeError, match="block_size"):
        pt.optq(W, X, lam=0.1, grid=GRID, block_size=2.5)


@pytest.mark.parametrize("N", [1, 5])
def test_inputs_are_never_written(N):
    """The fast paths work in place on copies of the caller's arrays, also for a single column
    (both C- and F-contiguous: numpy's order conversions then return the array itself)."""
    rng = np.random.default_rng(N)
    W, X = rng.standard_normal((3, N)), rng.standard_normal((7, N))
    Xt = X + 0.01 * rng.standard_normal((7, N))
    keep = [a.copy() for a in (W, X, Xt)]
    g = pt.Grid(0.1)
    for method in ("blocked", "iteration"):
        pt.optq(W, X, lam=0.5, grid=g, method=method)
        pt.qronos(W, X, Xt, lam=0.5, grid=g, method=method)
        pt.qronos(W, X, X, lam=0.5, grid=g, method=method, variant="ls")
    pt.ldlq(W, X, lam=0.5, grid=g)
    pt.gpfq(W, X, Xt, grid=g)
    pt.certify(pt.optq(W, X, lam=0.5, grid=g), X)
    for a, b in zip((W, X, Xt), keep, strict=True):
        assert np.array_equal(a, b)
