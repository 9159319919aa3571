"""Reliability: each class of failure of the reliability issue, generated whole by hypothesis.

1. every damping convention resolves to its definition, on both backends;
2. extreme scales are handled exactly (homogeneity) inside the documented range and refused outside;
3. no run returns a non-finite ``Q``: bad steps, alphabets and overflows are refused first;
4. grids are refused exactly above the ``bits`` float64 (float32) can round, and rounding within the
   limit obeys the stated error model;
5. bounds that are exactly 0 and ill-conditioned least-squares steps raise no false violation;
6. wrong argument types and values are refused, naming the argument, across the public API;
7. ``ptqtheory check`` never passes a run that checked nothing.

The independent references (the definitions of the damping conventions, the range limits, the
bits limit) are recomputed here from first principles, not read from :mod:`ptqtheory.tolerances`.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies import SCALE, examples

import ptqtheory as pt
from ptqtheory import tolerances
from ptqtheory.cli import main as cli_main
from ptqtheory.hunt import hunt
from ptqtheory.torch_backend import TorchAccumulator, minmax_grid

U64 = 2.0**-53  # unit roundoff of float64 (IEEE 754 binary64)
U32 = 2.0**-24
E_DATA = 180  # the documented range R1 (docs/theory.md, Numerics)
E_F32 = 64
RANGE_WORDS = re.compile(r"too (large|small)|overflow|underflow|subnormal")


def _instance(seed: int, n: int, m: int, N: int, rank: int | None = None):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, N))
    if rank is None:
        X = rng.standard_normal((m, N))
    else:
        X = rng.standard_normal((m, rank)) @ rng.standard_normal((rank, N))
    Xt = X + 0.05 * rng.standard_normal(X.shape)
    return W, X, Xt


def _run(backend: str, algorithm: str, W, X, Xt, lam, grid, **kw):
    if backend == "torch":
        W, X, Xt = (torch.as_tensor(a, dtype=torch.float64) for a in (W, X, Xt))
    if algorithm == "optq":
        return pt.optq(W, X, lam=lam, grid=grid, **kw)
    if algorithm == "ldlq":
        return pt.ldlq(W, X, lam=lam, grid=grid, **kw)
    return pt.qronos(W, X, Xt, lam=lam, grid=grid, **kw)


def _np(a):
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


# -- 1. damping conventions ------------------------------------------------------------------------


@examples(40)
@given(
    seed=st.integers(0, 2**31 - 1),
    backend=st.sampled_from(["numpy", "torch"]),
    algorithm=st.sampled_from(["optq", "ldlq", "qronos"]),
    kind=st.sampled_from(["absolute", "percdamp", "lambda_max"]),
    value=st.floats(1e-4, 2.0),
    scale_exp=st.integers(-20, 20),
)
def test_every_damping_convention_resolves_to_its_definition(seed, backend, algorithm, kind, value,
                                                             scale_exp):
    # 40 examples: both backends, the three algorithms that damp, the three conventions.
    W, X, Xt = _instance(seed, 2, 9, 5)
    X, Xt = X * 2.0**scale_exp, Xt * 2.0**scale_exp
    sigma = np.linalg.svd(X, compute_uv=False)  # independent of X^T X and of the library
    expected = {"absolute": value, "percdamp": value * np.sum(X * X) / X.shape[1],
                "lambda_max": value * sigma[0] ** 2}[kind]
    damping = pt.Damping(kind, value)
    run = _run(backend, algorithm, W, X, Xt, damping, pt.Grid(0.1))
    assert run.lam == pytest.approx(expected, rel=1e-12)
    assert run.damping == damping.describe()
    if backend == "numpy":  # the statistics route of the numpy reference agrees
        acc = pt.Accumulator(X.shape[1])
        acc.update(X)
        H = acc.H(damping)
    else:
        tacc = TorchAccumulator(X.shape[1])
        tacc.update(torch.as_tensor(X))
        H = tacc.H(damping).numpy()
    # H = X^T X + lam I: its diagonal exceeds the column norms by lam (to the rounding of H).
    col = np.sum(X * X, axis=0)
    np.testing.assert_allclose(np.diag(H) - col, expected, rtol=1e-12, atol=1e-13 * np.max(np.diag(H)))


@examples(30)
@given(
    seed=st.integers(0, 2**31 - 1),
    backend=st.sampled_from(["numpy", "torch"]),
    algorithm=st.sampled_from(["optq", "ldlq", "qronos"]),
    kind=st.sampled_from(["absolute", "percdamp", "lambda_max"]),
    max_tries=st.integers(1, 5),
)
def test_auto_damping_follows_its_schedule(seed, backend, algorithm, kind, max_tries):
    # 30 examples. Rank-deficient data with value 0: H is singular at the resolved lam = 0, so auto
    # raises it once, to 1e-6 mean(diag(G)) (G the Gram matrix being factored), which is definite.
    W, X, Xt = _instance(seed, 2, 3, 6, rank=2)
    run = _run(backend, algorithm, W, X, Xt, pt.Damping(kind, 0.0, auto=True, max_tries=max_tries),
               pt.Grid(0.1))
    G = Xt if algorithm == "qronos" else X
    assert run.lam == pytest.approx(1e-6 * np.sum(G * G) / G.shape[1], rel=1e-12)
    assert "automatic damping raised lam" in " ".join(run.notes)
    with pytest.raises(pt.SingularHessianError):  # without auto the same input is refused
        _run(backend, algorithm, W, X, Xt, pt.Damping(kind, 0.0), pt.Grid(0.1))


# -- 2. extreme scales -------------------------------------------------------------------------


def _row_normalized(seed: int, n: int, m: int, N: int):
    # Largest magnitude exactly 1 - 2**-10 in every row of W and in X, Xt: scaling by 2**e then puts
    # them at a known binary order, so the range test below is exact.
    W, X, Xt = _instance(seed, n, m, N)
    W = W / np.max(np.abs(W), axis=1, keepdims=True) * (1 - 2.0**-10)
    top = max(np.max(np.abs(X)), np.max(np.abs(Xt)))
    return W, X / top * (1 - 2.0**-10), Xt / top * (1 - 2.0**-10)


@examples(60)
@given(
    seed=st.integers(0, 2**31 - 1),
    algorithm=st.sampled_from(["optq", "optq-iteration", "ldlq", "qronos", "gpfq", "rtn"]),
    rounding=st.sampled_from(["nearest", "stochastic"]),
    e_x=st.one_of(st.integers(-1100, 1100), st.integers(-185, 185)),
    e_w=st.one_of(st.integers(-1100, 1100), st.integers(-185, 185)),
    damped=st.booleans(),
)
def test_scaled_inputs_are_exact_inside_the_range_and_refused_outside(seed, algorithm, rounding, e_x,
                                                                     e_w, damped):
    # 60 examples, half of the exponents near the boundary 2**+-180 of the documented range.
    W0, X0, Xt0 = _row_normalized(seed, 2, 8, 5)
    with np.errstate(over="ignore", under="ignore"):
        W, X, Xt = np.ldexp(W0, e_w), np.ldexp(X0, e_x), np.ldexp(Xt0, e_x)
    if np.max(np.abs(X)) == 0 or np.max(np.abs(W)) == 0 or not (np.all(np.isfinite(X))
                                                                 and np.all(np.isfinite(W))):
        event("test data not representable in float64")
        return  # underflowed to zero (valid data of another kind) or overflowed (NaN/Inf: test_errors)
    lam = pt.Damping.percdamp(0.01) if damped else 0.0
    # The maxima are 2**e (1 - 2**-10): inside R1 iff -180 < e <= 180. RTN reads no X (its
    # certificate does).
    x_ok = -E_DATA < e_x <= E_DATA
    inside = (-E_DATA < e_w <= E_DATA) and (algorithm == "rtn" or x_ok)

    def call(W, X, Xt, grid):
        kw = dict(grid=grid, rounding=rounding, seed=seed)
        if algorithm.startswith("optq"):
            method = "iteration" if algorithm.endswith("iteration") else "blocked"
            return pt.optq(W, X, lam=lam, method=method, **kw), None
        if algorithm == "ldlq":
            return pt.ldlq(W, X, lam=lam, **kw), None
        if algorithm == "qronos":
            return pt.qronos(W, X, Xt, lam=lam, **kw), Xt
        if algorithm == "gpfq":
            return pt.gpfq(W, X, Xt, **kw), Xt
        return pt.rtn(W, **kw), None

    try:
        with np.errstate(over="ignore", under="ignore"):
            step = float(np.ldexp(0.05, e_w))
        if not 0 < step < np.inf:
            raise ValueError("the grid step itself overflows or underflows float64")
        run, xt = call(W, X, Xt, pt.Grid(step))
    except ValueError as exc:
        event("refused")
        assert not inside, str(exc)
        assert RANGE_WORDS.search(str(exc)), str(exc)
        return
    assert inside
    event("accepted")
    ref, _ = call(W0, X0, Xt0, pt.Grid(0.05))
    # Homogeneity is exact: powers of two commute with every rounding inside the range.
    np.testing.assert_array_equal(run.Q, np.ldexp(ref.Q, e_w))
    assert np.all(np.isfinite(run.Q))
    if not x_ok:  # RTN with X out of range: the certificate refuses X
        with pytest.raises(ValueError, match=r"^X is too (large|small)"):
            pt.certify(run, X, xt, p=1e-9)
        return
    c = pt.certify(run, X, xt, p=1e-9)
    assert c.holds(1e-9), (c.identity_gap, c.identity_atol)
    assert not c.violations, [(b.label, b.value, b.empirical) for b in c.violations]


@examples(40)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    algorithm=st.sampled_from(["optq", "ldlq", "qronos", "gpfq", "rtn"]),
    e_x=st.one_of(st.integers(-300, 300), st.integers(-130, 130)),
    e_w=st.one_of(st.integers(-300, 300), st.integers(-70, 70)),
)
def test_torch_scaled_inputs_are_exact_inside_the_range_and_refused_outside(seed, dtype, algorithm, e_x,
                                                                           e_w):
    # 40 examples on the torch backend, float64 and float32 working precision (W within 2**+-64 in
    # float32; X within 2**+-180, its statistics being float64). GPFQ in float32 forms its column
    # norms and state in float32 and may refuse more (its own range check).
    W0, X0, Xt0 = _row_normalized(seed, 2, 8, 5)
    with np.errstate(over="ignore", under="ignore"):
        W, X, Xt = (torch.as_tensor(np.ldexp(a, e), dtype=dtype)
                    for a, e in ((W0, e_w), (X0, e_x), (Xt0, e_x)))
    if not all(bool(torch.isfinite(a).all()) and float(a.abs().max()) > 0 for a in (W, X, Xt)):
        return  # not representable in the dtype: another class (non-finite or zero inputs)
    e_top = E_F32 if dtype == torch.float32 else E_DATA
    w_ok = -e_top < e_w <= e_top and float(np.ldexp(0.05, e_w)) >= 2.0 ** (-e_top - 48)
    inside = w_ok and (algorithm == "rtn" or -E_DATA < e_x <= E_DATA)

    def call(W, X, Xt, step):
        g = pt.Grid(step)
        return {"optq": lambda: pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=g),
                "ldlq": lambda: pt.ldlq(W, X, lam=pt.Damping.percdamp(0.01), grid=g),
                "qronos": lambda: pt.qronos(W, X, Xt, lam=pt.Damping.percdamp(0.01), grid=g),
                "gpfq": lambda: pt.gpfq(W, X, Xt, grid=g), "rtn": lambda: pt.rtn(W, grid=g)}[algorithm]()

    try:
        run = call(W, X, Xt, float(np.ldexp(0.05, e_w)))
    except ValueError as exc:
        event("refused")
        assert not inside or (algorithm == "gpfq" and dtype == torch.float32), str(exc)
        assert RANGE_WORDS.search(str(exc)), str(exc)
        return
    assert inside
    event("accepted")
    assert bool(torch.isfinite(run.Q).all())
    ref = call(*(torch.as_tensor(a, dtype=dtype) for a in (W0, X0, Xt0)), 0.05)
    np.testing.assert_array_equal(run.Q.double().numpy(), np.ldexp(ref.Q.double().numpy(), e_w))
    if algorithm == "rtn" and not -E_DATA < e_x <= E_DATA:
        return
    c = pt.certify(run, X, Xt if algorithm in ("qronos", "gpfq") else None)
    assert c.holds(1e-9 if dtype == torch.float64 else 1e-4)
    assert not c.violations, [(b.label, b.value, b.empirical) for b in c.violations]


@examples(30)
@given(e_x=st.integers(-700, 700), e_lam=st.integers(-1000, 1000), seed=st.integers(0, 2**31 - 1))
def test_absolute_lam_and_data_outside_the_range_are_refused_naming_them(e_x, e_lam, seed):
    # 30 examples: lam is in range iff 0 or in [2**-424, 2**424]; X iff its largest entry is in range.
    W, X, _ = _row_normalized(seed, 2, 8, 5)
    X = np.ldexp(X, e_x)
    lam = float(np.ldexp(1.0, e_lam))
    x_ok = -E_DATA < e_x <= E_DATA  # max |X| = 2**e_x (1 - 2**-10)
    lam_ok = -2 * E_DATA - 64 <= e_lam <= 2 * E_DATA + 64
    try:
        run = pt.optq(W, X, lam=lam, grid=pt.Grid(0.05))
    except ValueError as exc:
        event("refused")
        msg = str(exc)
        assert not (x_ok and lam_ok), msg
        assert RANGE_WORDS.search(msg) and ("X" in msg or "lam" in msg), msg
        return
    assert x_ok and lam_ok
    event("accepted")
    assert np.all(np.isfinite(run.Q))
    assert pt.certify(run, X).holds(1e-9)


def test_tiny_data_with_lam_zero_is_refused_not_certified_wrongly():
    W, X, _ = _instance(0, 3, 12, 5)
    with pytest.raises(ValueError, match=r"^X is too small.*underflow"):
        pt.optq(W, X * 1e-160, lam=0.0, grid=pt.Grid(0.1))
    with pytest.raises(ValueError, match=r"^X is too large.*overflow"):
        pt.gpfq(W, X * 1e160, X * 1e160, grid=pt.Grid(0.1))


# -- 3. no silent non-finite result ------------------------------------------------------------------


@st.composite
def grid_parameters(draw):
    # About half the draws are valid grids; the rest are the issue's classes: subnormal and huge
    # steps, empty alphabets (lo = inf, hi = -inf, lo > hi), NaN ends, codes beyond 2**41.
    delta = draw(st.one_of(st.floats(1e-3, 1.0), st.floats(1e-12, 1e3),
                           st.sampled_from([1e-320, 5e-324, 1e-300, 1e-10, 1e10, 1e300])))
    zero = draw(st.sampled_from([0.0, 0.0, 0.5, 3.0, -7.0, 2.0**45]))
    ends = [None, None, -3, 0, 7, 40, -np.inf, np.inf, 2**50, float("nan")]
    return delta, zero, draw(st.sampled_from(ends)), draw(st.sampled_from(ends))


@examples(150)
@given(
    seed=st.integers(0, 2**31 - 1),
    params=grid_parameters(),
    w_exp=st.one_of(st.integers(-3, 3), st.integers(-40, 40),
                    st.sampled_from([-330, -200, -60, 60, 200, 300])),
    backend=st.sampled_from(["numpy", "torch64", "torch32"]),
    algorithm=st.sampled_from(["optq", "ldlq", "qronos", "gpfq", "rtn"]),
    rounding=st.sampled_from(["nearest", "stochastic"]),
)
def test_no_run_returns_a_non_finite_Q(seed, params, w_exp, backend, algorithm, rounding):
    # 150 examples over steps (subnormal to huge), zero points, ends (empty, unbounded, NaN, 2**50),
    # weight scales and precisions: either a ValueError naming the argument, or a finite record.
    delta, zero, lo, hi = params
    W, X, Xt = _instance(seed, 2, 8, 4)
    with np.errstate(over="ignore", under="ignore"):
        W = W * 10.0**w_exp
    try:
        grid = pt.Grid(delta, zero, lo, hi)
        args = (W, X, Xt)
        if backend != "numpy":
            dtype = torch.float32 if backend == "torch32" else torch.float64
            with np.errstate(over="ignore"):
                if not np.all(np.isfinite(W.astype(np.float32 if backend == "torch32" else float))):
                    return  # not representable in the working dtype: nothing to run
            args = (torch.as_tensor(W, dtype=dtype), torch.as_tensor(X), torch.as_tensor(Xt))
        kw = dict(grid=grid, rounding=rounding, seed=seed)
        W_, X_, Xt_ = args
        run = {"optq": lambda: pt.optq(W_, X_, lam=1.0, **kw),
               "ldlq": lambda: pt.ldlq(W_, X_, lam=1.0, **kw),
               "qronos": lambda: pt.qronos(W_, X_, Xt_, lam=1.0, **kw),
               "gpfq": lambda: pt.gpfq(W_, X_, Xt_, **kw),
               "rtn": lambda: pt.rtn(W_, **kw)}[algorithm]()
    except ValueError as exc:
        event("refused")
        msg = str(exc)
        assert re.search(r"\b(W|X|Xt|grid|delta|lo|hi|zero|bits|lam)\b", msg), msg
        return
    event("ran, clipped" if _np(run.clipped).any() else "ran, no clip")
    for name in ("Q", "eta", "x"):
        assert np.all(np.isfinite(_np(getattr(run, name)))), name
    assert not np.any(_np(run.clipped) & ~np.isfinite(_np(run.x)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the injected inf/NaN propagates, by design
@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("algorithm", ["optq", "ldlq", "qronos", "gpfq", "rtn"])
@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_a_non_finite_rounding_inside_a_run_is_caught(backend, algorithm, bad, monkeypatch):
    # The last line of defence (R3): whatever happens inside a run (here a rounding that returns a
    # non-finite value at step 2), the run raises instead of returning a non-finite Q.
    import ptqtheory.engine as engine
    import ptqtheory.engine as tgrids

    module, name = (engine, "round_nearest") if backend == "numpy" else (tgrids, "round_nearest")
    original = getattr(module, name)
    calls = [0]

    def poisoned(x, *args):
        q, clipped = original(x, *args)
        calls[0] += 1
        if calls[0] == 3 or q.ndim == 2:  # the third column, or RTN's single call on all of them
            q = q * bad if backend == "numpy" else q * float(bad)
        return q, clipped

    monkeypatch.setattr(module, name, poisoned)
    W, X, Xt = _instance(0, 2, 8, 4)
    if backend == "torch":
        W, X, Xt = torch.as_tensor(W), torch.as_tensor(X), torch.as_tensor(Xt)
    g = pt.Grid(0.1)
    call = {"optq": lambda: pt.optq(W, X, lam=0.1, grid=g), "ldlq": lambda: pt.ldlq(W, X, lam=0.1, grid=g),
            "qronos": lambda: pt.qronos(W, X, Xt, lam=0.1, grid=g), "gpfq": lambda: pt.gpfq(W, X, Xt, grid=g),
            "rtn": lambda: pt.rtn(W, grid=g)}[algorithm]
    with pytest.raises(ValueError, match=r"non-finite|overflowed"):
        call()


def test_the_issue_examples_of_non_finite_results_are_refused():
    W, _, _ = _instance(0, 3, 4, 5)
    with pytest.raises(ValueError, match=r"grid delta must be a normal float64.*subnormal"):
        pt.rtn(W, grid=pt.Grid(1e-320))
    with pytest.raises(ValueError, match=r"W / grid delta"):
        pt.rtn(W * 1e50, grid=pt.Grid(1e-10))
    with pytest.raises(ValueError, match=r"empty alphabet"):
        pt.rtn(W, grid=pt.Grid(1, lo=-np.inf, hi=-np.inf))
    with pytest.raises(ValueError, match=r"^W is too large.*float32"):
        pt.optq(torch.as_tensor(W * 1e30, dtype=torch.float32), torch.ones(4, 5), lam=0.1,
                grid=pt.Grid(1e-10))


# -- 4. the bits limit -------------------------------------------------------------------------------


def _max_code(u: float) -> float:
    return math.floor(2.0**-10 / (5 * u))  # codes C = |k| + |z| + 1 with 5 u C <= 2**-10 of a step


@examples(60)
@given(bits=st.integers(1, 70), sym=st.booleans(), seed=st.integers(0, 2**31 - 1),
       precision=st.sampled_from(["float64", "float32"]))
def test_bits_are_refused_exactly_where_rounding_stops_being_exact(bits, sym, seed, precision):
    # 60 examples. The limit, from the error model: a min-max grid of b bits has codes up to 2**b - 1
    # and a zero point up to 2**b - 1, so C <= 2**(b+1) - 1 must not exceed floor(2**-10 / (5u)).
    u = U64 if precision == "float64" else U32
    allowed = 2.0 ** (bits + 1) - 1 <= _max_code(u)
    W, _, _ = _instance(seed, 3, 2, 40)
    try:
        if precision == "float64":
            g = pt.Grid.minmax(W, bits=bits, sym=sym)
            Wr = W
        else:
            Wt = torch.as_tensor(W, dtype=torch.float32)
            g = minmax_grid(Wt, bits=bits, sym=sym)
            Wr = Wt.double().numpy()
    except ValueError as exc:
        event("refused")
        assert not allowed and str(exc).startswith("bits must be an integer"), str(exc)
        return
    assert allowed
    event("accepted")
    # Adversarial inputs: the weights, and values a rounding error away from every tie.
    delta, zero, _, _ = g.expand(*W.shape)
    rng = np.random.default_rng(seed)
    k = rng.integers(0, 2**bits, size=W.shape)
    near_ties = delta * (k - zero + 0.5) * (1 + rng.choice([-1, 1], size=W.shape) * 2.0**-52)
    for x in (Wr, near_ties):
        q, clipped = g.round(x)
        C = np.abs(np.rint(q / delta + zero)) + np.abs(zero) + 1
        slack = 5 * U64 * C  # the grid's arithmetic is float64 (the rounding of a float32 run: below)
        err = np.abs(x - q)[~clipped]
        assert np.all(err <= (delta * (0.5 + slack))[~clipped]), np.max(err / delta[~clipped])
        assert np.all(slack <= 2.0**-10)


@examples(40)
@given(hi_exp=st.integers(0, 60), zero_exp=st.integers(0, 60), signed=st.booleans())
def test_explicit_code_ranges_are_refused_exactly_beyond_the_limit(hi_exp, zero_exp, signed):
    # 40 examples: Grid(delta, zero, lo, hi) with finite ends is accepted iff every code has
    # |k| + |z| + 1 <= floor(2**-10 / (5u)).
    hi = 2**hi_exp
    lo = -hi if signed else 0
    zero = float(2**zero_exp)
    ok = hi + zero + 1 <= _max_code(U64)
    try:
        pt.Grid(0.5, zero=zero, lo=lo, hi=hi)
    except ValueError as exc:
        msg = str(exc)
        assert not ok and re.search(r"\b(lo|hi|zero)\b", msg), msg
        assert "1759218604441" in msg or "2**53" in msg, msg  # the code limit, or not even an integer
        return
    assert ok


def test_bits_limit_values_match_the_docs():
    assert tolerances.max_code("float64") == _max_code(U64) == 1759218604441
    assert tolerances.max_code("float32") == _max_code(U32) == 3276
    assert tolerances.max_bits("float64") == 39 and tolerances.max_bits("float32") == 10
    with pytest.raises(ValueError, match=r"^bits must be an integer >= 1 and <= 39; got 64"):
        pt.Grid.minmax(np.ones((2, 3)), bits=64)


# -- 5. no false violation -----------------------------------------------------------------------


@examples(60)
@given(
    n=st.integers(1, 3), N=st.integers(1, 6), m=st.integers(1, 5),
    delta=st.one_of(st.sampled_from([0.25, 0.1, 1 / 3]), st.floats(1e-3, 10)),
    lam=st.one_of(st.sampled_from([3.0, 0.1, 1e-6]), st.floats(1e-8, 1e3)),
    seed=st.integers(0, 2**31 - 1),
    algorithm=st.sampled_from(["optq", "ldlq", "qronos-paper", "qronos-ls"]),
    backend=st.sampled_from(["numpy", "torch"]),
)
def test_bounds_that_are_exactly_zero_are_not_violated(n, N, m, delta, lam, seed, algorithm, backend):
    # 60 examples. X = 0: H = lam I, L = I, and weights at midpoints make B1 (and B9) exactly 0 in
    # exact arithmetic: (delta^2/4) sum_t D_t - lam ||w - q||^2 = 0.
    rng = np.random.default_rng(seed)
    W = delta * (rng.integers(-4, 4, size=(n, N)) + 0.5)
    X = np.zeros((m, N))
    if backend == "torch":
        W, X = torch.as_tensor(W), torch.as_tensor(X)
    if algorithm.startswith("qronos"):
        run = pt.qronos(W, X, X, lam=lam, grid=pt.Grid(delta), variant=algorithm.split("-")[1])
        c = pt.certify(run, X, X)
    else:
        run = getattr(pt, algorithm)(W, X, lam=lam, grid=pt.Grid(delta))
        c = pt.certify(run, X)
    assert not c.violations, [(b.label, b.value, b.empirical, b.atol) for b in c.violations]
    assert c.holds(1e-9)


def test_the_issue_example_of_a_zero_bound_is_not_violated():
    W, X = np.array([[0.125]]), np.array([[0.0]])
    c = pt.certify(pt.optq(W, X, lam=3, grid=pt.Grid(0.25)), X)
    assert c.bound("B1").value[0] == pytest.approx(0.0, abs=1e-16) and not c.violations
    c = pt.certify(pt.qronos(W, X, X, lam=3, grid=pt.Grid(0.25)), X, X)
    assert c.bound("B9").value[0] == pytest.approx(0.0, abs=1e-16) and not c.violations


@examples(80)
@given(
    seed=st.integers(0, 2**31 - 1),
    algorithm=st.sampled_from(["optq-iteration", "optq-blocked", "ldlq", "qronos-iteration",
                               "qronos-ls-iteration", "qronos-blocked", "torch-optq", "torch-ldlq",
                               "torch-qronos-paper", "torch-qronos-ls"]),
    lam_exp=st.floats(-14, -5),
)
def test_structure_relation_allows_for_the_conditioning(seed, algorithm, lam_exp):
    # 80 examples: duplicated and rescaled columns with tiny damping (kappa(H) up to ~1e14), the
    # case where the paper iteration's weight-space relation w - q = L eta is only as accurate as
    # eps kappa(H) while I2 holds to rounding, and where the torch certificate's refit of w_LS from
    # the statistics (normal equations) errs by eps kappa(Ht).
    rng = np.random.default_rng(seed)
    m, r, rep = int(rng.integers(1, 10)), int(rng.integers(1, 4)), int(rng.integers(2, 8))
    X0 = rng.standard_normal((m, r)) * 10 ** rng.uniform(-3, 3, size=r)
    X = np.column_stack([X0[:, rng.integers(r)] * 2.0 ** rng.integers(-3, 4) for _ in range(r * rep)])
    Xt = X + 1e-3 * np.std(X) * rng.standard_normal(X.shape)
    W = rng.standard_normal((2, X.shape[1]))
    lam = 10**lam_exp * np.max(X**2) * m
    grid = pt.Grid(10 ** rng.uniform(-3, 0))
    try:
        if algorithm.startswith("torch"):
            tW, tX, tXt = (torch.as_tensor(a) for a in (W, X, Xt))
            name = algorithm.split("-")[1]
            if name == "qronos":
                run = pt.qronos(tW, tX, tXt, lam=lam, grid=grid, variant=algorithm.split("-")[2])
                X, xt = tX, tXt
            else:
                run, X, xt = getattr(pt, name)(tW, tX, lam=lam, grid=grid), tX, None
        elif algorithm.startswith("optq"):
            run, xt = pt.optq(W, X, lam=lam, grid=grid, method=algorithm.split("-")[1]), None
        elif algorithm == "ldlq":
            run, xt = pt.ldlq(W, X, lam=lam, grid=grid), None
        else:
            variant = "ls" if "-ls-" in algorithm else "paper"
            run, xt = pt.qronos(W, X, Xt, lam=lam, grid=grid, variant=variant,
                                method=algorithm.rsplit("-", 1)[1]), Xt
    except pt.SingularHessianError:
        event("singular")
        return  # lam below the numerical singularity threshold: refused, which is correct
    c = pt.certify(run, X, xt)
    event(f"kappa(H) ~ 1e{int(np.log10(c.pivots.cond))}" if c.pivots.cond >= 1e10 else "kappa(H) < 1e10")
    assert c.holds(1e-9), (c.structure_residual, c.structure_atol, c.identity_gap)


# -- 6. argument types and values ------------------------------------------------------------------

_W, _X, _XT = _instance(1, 2, 6, 4)
_RUN = pt.optq(_W, _X, lam=0.1, grid=pt.Grid(0.1))


def _api_calls():
    """(argument name, call taking the bad value) across the public API of both backends."""
    g = pt.Grid(0.1)
    tW, tX = torch.as_tensor(_W), torch.as_tensor(_X)
    return [
        ("W", lambda v: pt.optq(v, _X, lam=0.1, grid=g)),
        ("X", lambda v: pt.optq(_W, v, lam=0.1, grid=g)),
        ("Xt", lambda v: pt.qronos(_W, _X, v, lam=0.1, grid=g)),
        ("lam", lambda v: pt.optq(_W, _X, lam=v, grid=g)),
        ("rounding", lambda v: pt.optq(_W, _X, lam=0.1, grid=g, rounding=v)),
        ("seed", lambda v: pt.optq(_W, _X, lam=0.1, grid=g, seed=v)),
        ("block_size", lambda v: pt.optq(_W, _X, lam=0.1, grid=g, block_size=v)),
        ("method", lambda v: pt.optq(_W, _X, lam=0.1, grid=g, method=v)),
        ("order", lambda v: pt.optq(_W, _X, lam=0.1, grid=g, order=v)),
        ("variant", lambda v: pt.qronos(_W, _X, _XT, lam=0.1, grid=g, variant=v)),
        ("start", lambda v: pt.qronos(_W, _X, _XT, lam=0.1, grid=g, start=v)),
        ("dead_columns", lambda v: pt.gpfq(_W, _X, _XT, grid=g, dead_columns=v)),
        ("incoherence", lambda v: pt.ldlq(_W, _X, lam=0.1, grid=g, incoherence=v, seed=0)),
        ("p", lambda v: pt.certify(_RUN, _X, p=v)),
        ("full_pivot_check", lambda v: pt.certify(_RUN, _X, full_pivot_check=v)),
        ("bounds", lambda v: pt.certify(_RUN, _X, bounds=v)),
        ("rtol", lambda v: pt.certify(_RUN, _X, bounds=False).holds(v)),
        ("p", lambda v: pt.Damping.percdamp(v)),
        ("alpha", lambda v: pt.Damping.lambda_max(v)),
        ("lam", lambda v: pt.Damping.absolute(v)),
        ("auto", lambda v: pt.Damping.percdamp(0.01, auto=v)),
        ("max_tries", lambda v: pt.Damping("percdamp", 0.01, True, v)),
        ("N", lambda v: pt.Accumulator(v)),
        ("with_mismatch", lambda v: pt.Accumulator(3, with_mismatch=v)),
        ("bits", lambda v: pt.Grid.minmax(_W, bits=v)),
        ("sym", lambda v: pt.Grid.minmax(_W, bits=4, sym=v)),
        ("group_size", lambda v: pt.Grid.minmax(_W, bits=4, group_size=v)),
        ("K", lambda v: pt.Grid.alphabet(0.1, v)),
        ("delta", lambda v: pt.Grid(v)),
        ("zero", lambda v: pt.Grid(0.1, zero=v)),
        ("lo", lambda v: pt.Grid(0.1, lo=v)),
        ("hi", lambda v: pt.Grid(0.1, hi=v)),
        ("H", lambda v: pt.pivots(v)),
        ("d", lambda v: pt.random_orthogonal(v, "kron", np.random.default_rng(0))),
        ("W", lambda v: pt.optq(v, tX, lam=0.1, grid=g)),
        ("N", lambda v: TorchAccumulator(v)),
        ("with_mismatch", lambda v: TorchAccumulator(3, with_mismatch=v)),
        ("allow_tf32", lambda v: pt.torch_backend.optq(tW, tX, lam=0.1, grid=g, allow_tf32=v)),
        ("bits", lambda v: minmax_grid(tW, bits=v)),
        ("sym", lambda v: minmax_grid(tW, bits=4, sym=v)),
        ("p", lambda v: pt.certify(pt.optq(tW, tX, lam=0.1, grid=g), tX, p=v)),
        ("budget", lambda v: hunt(budget=v)),
        ("max_instances", lambda v: hunt(budget=1.0, max_instances=v)),
    ]


_BAD = {  # values no argument of the API accepts as meant
    "a string": "abc",
    "True": True,
    "a numpy bool": np.bool_(False),
    "None-ish object": object(),
    "a complex": 1 + 2j,
    "NaN": float("nan"),
    "minus one": -1,
    "minus infinity": -float("inf"),
    "a bool array": np.ones((2, 4), dtype=bool),
}
_ACCEPTS = {  # (argument, value) pairs that are valid on purpose
    ("seed", "minus one"): False, ("lo", "minus one"): True, ("lo", "minus infinity"): True,
    ("hi", "minus one"): True,
    ("zero", "minus one"): True, ("order", "minus one"): False,
    ("full_pivot_check", "True"): True, ("bounds", "True"): True, ("auto", "True"): True,
    ("with_mismatch", "True"): True, ("sym", "True"): True, ("allow_tf32", "True"): True,
    ("full_pivot_check", "a numpy bool"): True, ("bounds", "a numpy bool"): True,
    ("auto", "a numpy bool"): True, ("with_mismatch", "a numpy bool"): True,
    ("sym", "a numpy bool"): True, ("allow_tf32", "a numpy bool"): True,
}


@examples(300)
@given(call=st.sampled_from(range(len(_api_calls()))), bad=st.sampled_from(sorted(_BAD)))
def test_bad_arguments_are_refused_naming_the_argument(call, bad):
    # 300 examples over 43 arguments of the public API (both backends, the hunt) x 9 wrong values.
    name, fn = _api_calls()[call]
    if _ACCEPTS.get((name, bad)):
        fn(_BAD[bad])  # a valid value: must work
        return
    with pytest.raises((TypeError, ValueError)) as info:
        fn(_BAD[bad])
    msg = str(info.value)
    assert not isinstance(info.value, AssertionError)
    assert re.search(rf"(^|\W){re.escape(name)}(\W|$)", msg), (name, bad, msg)


@examples(40)
@given(which=st.sampled_from(["W", "X", "Xt", "delta", "zero", "H"]),
       backend=st.sampled_from(["numpy", "torch"]), shape=st.tuples(st.integers(1, 3), st.integers(1, 4)))
def test_boolean_arrays_are_refused_on_both_backends(which, backend, shape):
    # 40 examples: booleans are never read as 0 and 1.
    n, N = shape
    W, X, Xt = _instance(3, n, 5, N)
    arrays = {"W": W, "X": X, "Xt": Xt}
    if which in arrays:
        arrays[which] = np.ones(arrays[which].shape, dtype=bool)
    if backend == "torch":
        arrays = {k: torch.as_tensor(v) for k, v in arrays.items()}
    with pytest.raises(TypeError, match=rf"^{which} has dtype (torch\.)?bool"):
        if which in ("W", "X", "Xt"):
            pt.qronos(arrays["W"], arrays["X"], arrays["Xt"], lam=0.1, grid=pt.Grid(0.1))
        elif which == "H":
            pt.pivots(np.eye(N, dtype=bool))
        else:
            pt.Grid(**({"delta": np.ones(n, bool)} if which == "delta" else
                       {"delta": 0.1, "zero": np.zeros(n, bool)}))


# -- 7. a check that checked nothing does not pass ---------------------------------------------


_FIXTURE = settings(max_examples=30 * SCALE, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])


@_FIXTURE
@given(budget=st.one_of(st.floats(max_value=0.0), st.sampled_from([float("nan"), float("inf"), -1e-300])))
def test_check_refuses_a_budget_that_can_check_nothing(budget, capsys):
    # 30 examples: a usage error, exit 2, one line on stderr.
    assert cli_main(["check", f"--budget={budget!r}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--budget" in err[0], err
    with pytest.raises(ValueError, match=r"^budget must be"):
        hunt(budget=budget)


@settings(_FIXTURE, max_examples=10 * SCALE)
@given(budget=st.floats(1e-12, 1e-9))
def test_a_hunt_that_completed_nothing_fails(budget, capsys):
    # 10 examples: budgets too short for one instance; exit 1 with a message, never 0.
    report = hunt(budget=budget)
    if not report.checked:
        assert "NOTHING WAS CHECKED" in report.table()
    code = cli_main(["check", f"--budget={budget!r}"])
    out = capsys.readouterr()
    if "nothing was checked" in out.err:
        assert code == 1
    else:
        assert code in (0, 1) and "violations" in out.out
