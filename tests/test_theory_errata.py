"""Counterexamples to three statements of THEORY.md as written, and the corrected statements.

1. B3 writes r_t = x_t - delta floor(x_t / delta); with a zero point z that is not an integer the
   grid is delta (k - z) and the right remainder is r_t = delta frac(x_t / delta + z).
2. I2 says GPTQ's accumulated loss is "half of" sum_t eta_t^2 D_t; GPTQ scales its Hessian by 2/m,
   so its loss is (1/m) sum_t eta_t^2 D_t (half of the sum in GPTQ's own scaling).
3. The stochastic bounds list "no clip" as a hypothesis. Conditioning on "this run did not clip"
   biases the rounding errors: the conditional mean can exceed B3. What holds on a finite grid is
   P(bound fails and no clip) <= p (the run equals the infinite-grid run when it does not clip).
"""

import numpy as np
import scipy.linalg
from peers import gptq_reference_loop

import ptqtheory as pt
from ptqtheory import bounds


def test_B3_remainder_needs_the_zero_point():
    delta, z, x = 1.0, 0.5, 0.1
    u = np.random.default_rng(0).random(400_000)
    q, clipped = pt.round_stochastic(np.full_like(u, x), delta, z, -np.inf, np.inf, u)
    assert not clipped.any()
    mc = np.mean((x - q) ** 2)
    se = np.std((x - q) ** 2) / np.sqrt(len(u))
    r_theory = x - delta * np.floor(x / delta)  # THEORY.md as written: 0.1
    r_right = delta * ((x / delta + z) % 1.0)  # with the zero point: 0.6
    assert abs(mc - r_right * (delta - r_right)) <= 5 * se  # 0.24
    assert abs(mc - r_theory * (delta - r_theory)) > 100 * se  # 0.09 is far off
    # the bound module uses the corrected remainder
    W = np.array([[x]])
    X = np.array([[1.0]])
    run = pt.optq(W, X, lam=0.0, grid=pt.Grid(delta, zero=z), rounding="stochastic", seed=1)
    V = bounds.conditional_variance(bounds.context(run, X))
    assert np.isclose(V[0], r_right * (delta - r_right))


def test_gptq_loss_is_one_over_m_not_one_half():
    X, w, delta = np.array([[1.0]]), np.array([[0.3]]), 1.0
    _, loss = gptq_reference_loop(w, X, damp_frac=0.0, grid_delta=delta)
    r = pt.optq(w, X, lam=0.0, grid=pt.Grid(delta))
    rhs = pt.certify(r, X).identity_rhs[0]  # sum_t eta_t^2 D_t = 0.09
    m = X.shape[0]
    assert np.isclose(loss[0], rhs / m) and not np.isclose(loss[0], rhs / 2)


def test_conditioning_on_no_clip_breaks_the_stochastic_mean_bound():
    H = np.array([[5.0, 2.0], [2.0, 1.0]])
    X = scipy.linalg.cholesky(H, lower=False)  # X^T X = H, lam = 0
    w = np.array([[0.1, 1.8]])
    grid = pt.Grid(1.0, lo=-1, hi=1)  # alphabet {-1, 0, 1}
    D = pt.pivots(H).D
    b3_value = 0.25 * np.sum(D)  # (delta^2 / 4) tr(D) = 0.5
    errs, no_clip = [], []
    for seed in range(4000):
        r = pt.optq(w, X, lam=0.0, grid=grid, rounding="stochastic", seed=seed)
        c = pt.certify(r, X, p=0.3)
        errs.append(c.identity_lhs[0])
        no_clip.append(r.n_clipped == 0)
        b4 = c.bound("B4")
        # what does hold: a failure together with no clip has probability <= p
        assert not (b4.applies[0] and not b4.holds[0])
    errs, no_clip = np.array(errs), np.array(no_clip)
    assert abs(no_clip.mean() - 0.1) < 0.03  # no clip iff q_1 = 1, probability 0.1
    assert np.allclose(errs[no_clip], 0.81)  # > 0.5: the conditional mean exceeds B3
    assert errs[no_clip].mean() > b3_value
