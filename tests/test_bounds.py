"""THEORY.md T2 and T3: the a-priori bounds B1-B12 on adversarial instances.

Deterministic bounds must show zero violations wherever their hypotheses held; hypotheses that fail
(clipping is generated on purpose through min-max grids) must make the bound not apply. Stochastic
bounds: B3 per run and in the Monte Carlo mean (CLT tolerance: 5 standard errors), B4-B6 and B10
with zero failures at p = 1e-6 over many seeds, and binomial tests that the failure rate at p = 0.2
is consistent with <= p.
"""

import dataclasses
import json

import numpy as np
import pytest
import scipy.stats
from hypothesis import assume, event, given
from hypothesis import strategies as st
from strategies import TIE_FREE_GRIDS, Case, cases, examples

import ptqtheory as pt
from ptqtheory import bounds
from ptqtheory.instances import make_instance
from ptqtheory.tightness import midpoint_weights

DAMPED = (1e-8, 1e-4, 1e-2, 1.0, 100.0)
P_TINY = 1e-6
Z = 5.0  # CLT tolerance in standard errors


def _applicable_violations(c: pt.Certificate, kinds=("deterministic", "per-run")):
    """Assert zero violations; report, per bound, whether it applied (hypothesis statistics)."""
    assert c.bounds, "no bound was evaluated"
    for b in c.bounds:
        if b.kind not in kinds:
            continue
        applies = b.applies
        event(f"{b.label}: {'applies' if applies.any() else 'not applicable'}")
        bad = applies & ~b.holds
        assert not bad.any(), (b.label, b.empirical[bad], b.value[bad], b.ratio[bad])
        # A failed hypothesis means nothing is claimed for that row.
        for rec in b.records():
            assert (rec["holds"] is None) == (not rec["applies"])


def _clipped_rows_do_not_apply(c: pt.Certificate, run: pt.Run):
    clipped = np.atleast_2d(run.clipped).any(axis=1)
    for b in c.bounds:
        if any(h.name == "no clip" for h in b.hypotheses):
            assert not np.any(b.applies & clipped), b.label


# About 7% of examples clip (min-max grids) and do not count: 1100 examples give each
# deterministic bound more than 1000 applicable ones (see --hypothesis-show-statistics).
@examples(1100)
@given(cases(lam_factors=DAMPED), st.integers(1, 40))
def test_deterministic_bounds_optq(case: Case, block_size):
    """B1, B1.data, B2, B7 (drift, pointwise, lam form), B8: no violation where they apply."""
    r = pt.optq(case.W, case.X, lam=case.lam, grid=case.grid, order=case.order, seed=case.seed,
                block_size=block_size)
    c = pt.certify(r, case.X, full_pivot_check=False)
    assert {"B1", "B1.data", "B2", "B7", "B7.drift", "B8"} <= {b.label for b in c.bounds}
    _applicable_violations(c)
    _clipped_rows_do_not_apply(c, r)


@examples(1100)
@given(cases(lam_factors=DAMPED))
def test_deterministic_bounds_ldlq(case: Case):
    """B11 worst case and incoherence form (and B1, B2, B7, B8): no violation where they apply."""
    r = pt.ldlq(case.W, case.X, lam=case.lam, grid=case.grid, order=case.order, seed=case.seed)
    c = pt.certify(r, case.X, full_pivot_check=False)
    assert {"B11", "B11.incoherence"} <= {b.label for b in c.bounds}
    _applicable_violations(c)
    _clipped_rows_do_not_apply(c, r)


@examples(1100)
@given(cases(lam_factors=DAMPED), st.sampled_from(["paper", "ls"]), st.sampled_from(["w", "ls"]))
def test_deterministic_bounds_qronos(case: Case, variant, start):
    """B9 (A4 and A4'), B2 on Xt: no violation."""
    r = pt.qronos(case.W, case.X, case.Xt, lam=case.lam, grid=case.grid, order=case.order,
                  seed=case.seed, variant=variant, start=start)
    c = pt.certify(r, case.X, case.Xt, full_pivot_check=False)
    assert {"B2", "B9"} <= {b.label for b in c.bounds}
    _applicable_violations(c)
    _clipped_rows_do_not_apply(c, r)


@examples(300)
@given(cases(lam_factors=(0.0, *DAMPED)), st.sampled_from(["nearest", "stochastic"]))
def test_rtn_comparison_bounds(case: Case, rounding):
    r = pt.rtn(case.W, grid=case.grid, rounding=rounding, seed=case.seed)
    c = pt.certify(r, case.X)
    _applicable_violations(c)


@examples(200)
@given(cases(lam_factors=(1e-4, 1e-2, 1.0), families=("gaussian", "outliers", "heavy_tailed"),
             grid_kinds=("scalar", "per_row", "per_entry")))
def test_B1_attained_by_midpoint_construction(case: Case):
    """Every x_t a hair below a midpoint: |eta_t| = (1/2 - eps) delta_t, so B1 is attained.

    The hair ``eps`` must exceed the sweep's own rounding, or an x_t lands on the other side of its
    midpoint, rounds the other way and moves every later x_s by a non-integer number of steps. That
    rounding is about N u max|w| / delta (the weights the construction needs grow like the factor L, so
    like 1/lam when m << N): ``eps`` is 64 times that, and at least 1e-12. Then
    ||X(w-q)||^2 + lam||w-q||^2 = (1 - 2 eps)^2 A with A = (1/4) sum_t delta_t^2 D_t, up to 1e-9.
    B1 as stated subtracts lam||w-q||^2 = B from both sides: its ratio is 1 - (1 - ratio) A/(A - B).
    """
    delta = case.grid.expand(*case.W.shape)[0]
    n = case.W.shape[0]
    W0 = midpoint_weights(case.X, case.lam, delta, n=n, order=case.order, seed=case.seed, offset=0.0)
    eps = max(1e-12, 64 * case.W.shape[1] * 2.0**-53 * float(np.max(np.abs(W0) / delta)))
    assume(eps < 1e-4)  # else the midpoints cannot be hit in float64 and there is nothing to attain
    event(f"midpoint hair eps {'<= 1e-9' if eps <= 1e-9 else '> 1e-9'}")
    W = midpoint_weights(case.X, case.lam, delta, n=n, order=case.order, seed=case.seed, offset=eps)
    r = pt.optq(W, case.X, lam=case.lam, grid=pt.Grid(delta), order=case.order, seed=case.seed)
    c = pt.certify(r, case.X, full_pivot_check=False)
    b1 = c.bound("B1")
    assert np.all(b1.applies) and b1.violations == 0
    A = 0.25 * (delta[:, r.order] ** 2) @ c.pivots.D
    full = c.identity_lhs / A  # (||X(w-q)||^2 + lam||w-q||^2) / A
    floor = (1 - 2 * eps) ** 2 - 1e-9
    assert np.all(full >= floor) and np.all(full <= 1 + 1e-9), (full, eps)
    assert np.all(b1.ratio >= 1 - (1 - floor) * A / b1.value), (b1.ratio, A / b1.value, eps)


def test_the_bound_check_can_fail():
    """Negative control: the midpoint run judged against a grid half as fine must violate B1."""
    inst = make_instance(3, "gaussian", m=30, N=12, n=2)
    W = midpoint_weights(inst.X, 1.0, 0.1, n=2)
    r = pt.optq(W, inst.X, lam=1.0, grid=pt.Grid(0.1))
    lying = dataclasses.replace(r, grid=pt.Grid(0.05))
    b1 = pt.certify(lying, inst.X).bound("B1")
    assert b1.violations == 2 and np.all(b1.ratio > 3.9)


@examples(300)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from(["optq", "ldlq"]))
def test_stochastic_bounds_never_fail_at_tiny_p(case: Case, algorithm):
    """B3 (per run), B4, B5, B6 (+ iterates, lam form), B8 stochastic: no failure at p = 1e-6."""
    fn = pt.optq if algorithm == "optq" else pt.ldlq
    r = fn(case.W, case.X, lam=case.lam, grid=case.grid, order=case.order, seed=case.seed,
           rounding="stochastic")
    c = pt.certify(r, case.X, p=P_TINY, full_pivot_check=False)
    assert {"B3", "B4", "B5", "B5.uniform", "B6", "B6.iterates", "B8.stochastic"} <= \
        {b.label for b in c.bounds}
    _applicable_violations(c, kinds=("deterministic", "per-run", "probability"))
    _clipped_rows_do_not_apply(c, r)


@examples(300)
@given(cases(lam_factors=DAMPED, grid_kinds=TIE_FREE_GRIDS), st.sampled_from(["paper", "ls"]))
def test_stochastic_qronos_B10_never_fails_at_tiny_p(case: Case, variant):
    r = pt.qronos(case.W, case.X, case.Xt, lam=case.lam, grid=case.grid, order=case.order,
                  seed=case.seed, rounding="stochastic", variant=variant)
    c = pt.certify(r, case.X, case.Xt, p=P_TINY, full_pivot_check=False)
    assert {"B10", "B10.sup"} <= {b.label for b in c.bounds}
    _applicable_violations(c, kinds=("deterministic", "per-run", "probability"))


def _mc_instance(seed, family="heavy_tailed", m=40, N=24, n=4, lam_factor=0.05):
    inst = make_instance(seed, family, m=m, N=N, n=n)
    lam = lam_factor * float(np.mean(np.sum(inst.X**2, axis=0)))
    return inst, lam, pt.Grid(0.3 * float(np.std(inst.W)))


@pytest.mark.parametrize("family", ["gaussian", "ill_conditioned", "heavy_tailed"])
def test_B3_mean_monte_carlo(family):
    """E||X_hat(w-q)||^2 = E[V] <= (delta^2/4) tr(D): the sample mean of lhs - V is within
    5 standard errors of 0, and the mean of lhs is below the bound plus 5 standard errors."""
    inst, lam, grid = _mc_instance(11, family)
    lhs, V, bound = [], [], None
    for seed in range(400):
        r = pt.optq(inst.W, inst.X, lam=lam, grid=grid, rounding="stochastic", seed=seed)
        b3 = pt.certify(r, inst.X, full_pivot_check=False).bound("B3")
        lhs.append(b3.extra["lhs"])
        V.append(b3.empirical)
        bound = b3.value
    lhs, V = np.array(lhs), np.array(V)  # (seeds, rows)
    diff = lhs - V
    se = diff.std(axis=0, ddof=1) / np.sqrt(len(diff))
    assert np.all(np.abs(diff.mean(axis=0)) <= Z * se), (diff.mean(axis=0), se)
    se_lhs = lhs.std(axis=0, ddof=1) / np.sqrt(len(lhs))
    assert np.all(lhs.mean(axis=0) <= bound + Z * se_lhs)
    # and the mean is a nontrivial fraction of the bound (the test could fail)
    assert np.all(lhs.mean(axis=0) >= 0.3 * bound)


def _failure_counts(labels, runs):
    fails = {lab: 0 for lab in labels}
    trials = 0
    for c in runs:
        trials += len(c.err_l2)
        for lab in labels:
            b = c.bound(lab)
            assert np.all(b.applies)
            fails[lab] += int(np.count_nonzero(~b.holds))
    return fails, trials


@pytest.mark.parametrize("family", ["gaussian", "heavy_tailed"])
def test_failure_rate_at_p_0_2_is_consistent_with_p(family):
    """Binomial test per bound: failures over independent (seed, row) trials, H0: rate <= 0.2;
    reject only if the one-sided p-value is below 1e-3."""
    inst, lam, grid = _mc_instance(12, family, n=8)
    runs = [pt.certify(pt.optq(inst.W, inst.X, lam=lam, grid=grid, rounding="stochastic", seed=s),
                       inst.X, p=0.2, full_pivot_check=False) for s in range(150)]
    fails, trials = _failure_counts(["B4", "B5", "B5.uniform", "B6", "B6.iterates"], runs)
    for lab, f in fails.items():
        pval = scipy.stats.binomtest(f, trials, 0.2, alternative="greater").pvalue
        assert pval >= 1e-3, (lab, f, trials)
    qruns = [pt.certify(pt.qronos(inst.W, inst.X, inst.Xt, lam=lam, grid=grid, rounding="stochastic",
                                  seed=s, variant="ls"), inst.X, inst.Xt, p=0.2, full_pivot_check=False)
             for s in range(150)]
    qfails, qtrials = _failure_counts(["B10.sup"], qruns)
    assert scipy.stats.binomtest(qfails["B10.sup"], qtrials, 0.2, alternative="greater").pvalue >= 1e-3


@pytest.mark.parametrize("rounding,c", [("nearest", 12.0), ("stochastic", 6.0)])
def test_B11_mean_over_uniform_weights(rounding, c):
    """B11's mean: with W uniform over many grid steps, E[proxy loss per row] = delta^2 tr(D) / c."""
    inst = make_instance(21, "outliers", m=48, N=16, n=1)
    lam = 0.1 * float(np.mean(np.sum(inst.X**2, axis=0)))
    delta = 0.01
    W = np.random.default_rng(0).uniform(-50 * delta, 50 * delta, size=(2000, 16))
    r = pt.ldlq(W, inst.X, lam=lam, grid=pt.Grid(delta), rounding=rounding, seed=1)
    cert = pt.certify(r, inst.X, full_pivot_check=False, bounds=False)
    trD = float(np.sum(cert.pivot_check.D))
    loss = cert.identity_lhs
    se = loss.std(ddof=1) / np.sqrt(len(loss))
    assert abs(loss.mean() - delta**2 * trD / c) <= Z * se


@examples(200)
@given(cases(lam_factors=(1e-2, 1.0), families=("gaussian", "heavy_tailed", "outliers"),
             grid_kinds=("scalar", "per_row")))
def test_B12_deterministic_generalization(case: Case):
    """B12 (deterministic): with lam >= m ||S - X^T X / m||_op, (w-q)^T S (w-q) <= sum delta^2 D/(4m)."""
    m = case.X.shape[0]
    rng = np.random.default_rng(case.seed)
    Xte = case.X + 0.1 * rng.standard_normal(case.X.shape) * np.std(case.X)
    S = Xte.T @ Xte / m
    lam = max(case.lam, 1.0001 * m * np.linalg.norm(S - case.X.T @ case.X / m, 2))
    r = pt.optq(case.W, case.X, lam=lam, grid=case.grid, order=case.order, seed=case.seed)
    ctx = bounds.context(r, case.X)
    det = next(b for b in bounds.b12(ctx, S) if b.label == "B12.det")
    assert np.all(det.applies) and not np.any(~det.holds)


def test_B12_stochastic_mean_monte_carlo():
    inst, lam, grid = _mc_instance(31, "heavy_tailed")
    Xte = make_instance(32, "heavy_tailed", m=40, N=24).X
    S = Xte.T @ Xte / Xte.shape[0]
    vals, bound = [], None
    for seed in range(300):
        r = pt.optq(inst.W, inst.X, lam=lam, grid=grid, rounding="stochastic", seed=seed)
        b = bounds.b12(bounds.context(r, inst.X), S)[0]
        vals.append(b.empirical)
        bound = b.value
    vals = np.array(vals)
    se = vals.std(axis=0, ddof=1) / np.sqrt(len(vals))
    assert np.all(vals.mean(axis=0) <= bound + Z * se)


def test_records_are_tidy_and_serializable():
    inst = make_instance(0, "ill_conditioned", m=30, N=16, n=4, cond=1e6)
    g = pt.Grid.minmax(inst.W, bits=2)  # coarse grid, little damping: some rows clip, some do not
    r = pt.optq(inst.W, inst.X, lam=1e-3, grid=g)
    c = pt.certify(r, inst.X)
    recs = c.to_records()
    json.dumps(recs)
    keys = {"row", "quantity", "value", "empirical", "holds"}
    assert all(keys <= rec.keys() for rec in recs)
    assert {rec["quantity"] for rec in recs} >= {"I2", "B1", "B2", "B7", "B8"}
    clipped = np.atleast_2d(r.clipped).any(axis=1)
    assert clipped.any() and not clipped.all(), "the instance was meant to clip on some rows"
    for rec in recs:
        if rec["quantity"] == "B1":
            assert (rec["holds"] is None) == bool(clipped[rec["row"]])
            if clipped[rec["row"]]:
                assert "no clip" in rec["failed_hypotheses"]
