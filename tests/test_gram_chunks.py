"""The chunked float32 Gram matrix (TorchAccumulator(gram="float32")) and its error model E4.

The bound of ``tolerances.gram_rounding`` is checked against exact Gram matrices (rationals on a tiny
case; float64 products of float32-exact inputs, whose own error is bounded and added, on larger
ones), shown not to be vacuous (within 100x of the observed error at 64-row chunks), and a bound with
a too small gamma is shown to fail (negative control). The certificate's "statistics" allowance is
shown to be needed: without it a float64 run on float32-chunk statistics fails its identity.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import ptqtheory as pt
from ptqtheory.tolerances import GRAM_CHUNK_ROWS, gamma, gram_rounding, unit_roundoff
from ptqtheory.torch_backend.stats import TorchAccumulator, add_gram_chunked_

U32, U64 = unit_roundoff("float32"), unit_roundoff("float64")


def _exactish(X: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float]:
    """``(G, |X|^T|X|, rel)``: float64 products of float32-exact data (each product exact), summed in
    float64 with relative error at most ``rel = gamma_m(u64)`` of ``|X|^T|X|``."""
    Xd = X.double().numpy()
    return Xd.T @ Xd, np.abs(Xd).T @ np.abs(Xd), gamma(Xd.shape[0], U64)


def test_bound_holds_against_rationals():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.standard_normal((40, 5)), dtype=torch.float32)
    S = torch.zeros(5, 5, dtype=torch.float64)
    chunks = add_gram_chunked_(S, X, chunk=8)
    assert chunks == 5
    rel, abs_ = gram_rounding(8, chunks, 40, 0)
    Xf = [[Fraction(float(v)) for v in row] for row in X.tolist()]
    for k in range(5):
        for j in range(5):
            exact = sum(r[k] * r[j] for r in Xf)
            absum = sum(abs(r[k] * r[j]) for r in Xf)
            err = abs(Fraction(float(S[k, j])) - exact)
            assert err <= Fraction(rel) * absum + Fraction(abs_)
    assert torch.equal(S, S.T)


@pytest.mark.parametrize("dist", ["normal", "uniform"])
def test_bound_holds_and_is_not_vacuous(dist):
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(2048, 48, generator=gen) if dist == "normal" else torch.rand(2048, 48, generator=gen)
    G, A, ref_rel = _exactish(X)
    for chunk in (64, GRAM_CHUNK_ROWS):
        S = torch.zeros(48, 48, dtype=torch.float64)
        chunks = add_gram_chunked_(S, X, chunk=chunk)
        rel, abs_ = gram_rounding(chunk, chunks, X.shape[0], 0)
        err = np.abs(S.numpy() - G)
        assert np.all(err <= (rel + ref_rel) * A + abs_)
        observed = float(np.max(err / A))
        assert observed > 0  # float32 products do round here
        if chunk == 64:
            # not vacuous: the worst-case gamma_64(u32) is within 100x of the largest observed error
            assert rel <= 100 * observed
        # negative control: one rounding per entry (gamma_1) is too small a bound for these sums
        assert np.any(err > gamma(1, U32) * A)


@pytest.mark.parametrize("N", [2, 64])
def test_bound_is_nearly_attained_and_a_smaller_gamma_fails(N):
    # Adversarial: a column of ones against one whose first entry is 2^24 (float32's ulp there is 2):
    # in a float32 sum, 2^24 + 1 rounds back to 2^24 (ties to even), so every later term of the
    # chunk is lost until the partial sums are flushed: the error is (nearly) gamma_c itself.
    m = 1024
    x = torch.ones(m, N)
    x[0, 1] = 2.0**24
    S = torch.zeros(N, N, dtype=torch.float64)
    chunks = add_gram_chunked_(S, x, chunk=m)
    G, A, ref_rel = _exactish(x)
    err = np.abs(S.numpy() - G)
    rel, abs_ = gram_rounding(m, chunks, m, 0)
    assert np.all(err <= (rel + ref_rel) * A + abs_)
    ratio = rel * A[0, 1] / err[0, 1]
    assert ratio <= 10  # the worst case is (nearly) attained: the bound is sharp, not only safe
    # negative control: a bound with gamma_64 in place of gamma_1024 is violated on this case
    assert err[0, 1] > (gamma(64, U32) + ref_rel) * A[0, 1]


def test_accumulator_routes():
    gen = torch.Generator().manual_seed(2)
    X32 = torch.randn(300, 20, generator=gen)
    acc = TorchAccumulator(20, gram="float32")
    acc.update(X32[:200])
    acc.update(X32[200:].double())  # float64 batches are never rounded: the float64 route
    acc.update(X32[:10].half().float() * 2.0**50)  # outside the float32 Gram's range: float64
    acc.update(X32[:10].half())  # float16 is exact in float32
    assert (acc.rows32, acc.rows64, acc.chunks32) == (210, 110, 2)
    rel, abs_ = acc.gram_rounding
    assert rel == gram_rounding(GRAM_CHUNK_ROWS, 2, 210, 110)[0]
    data = torch.cat([X32[:200], X32[200:], X32[:10].half().float() * 2.0**50, X32[:10].half().float()])
    G, A, ref_rel = _exactish(data)
    assert np.all(np.abs(acc.gram_X.numpy() - G) <= (rel + ref_rel) * A + abs_)
    plain = TorchAccumulator(20)
    plain.update(X32)
    assert plain.gram_rounding is None and plain.chunks32 == 0
    saved = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")  # fast float32 modes: products would not be IEEE
        fast = TorchAccumulator(20, gram="float32")
        fast.update(X32)
        assert fast.chunks32 == 0 and fast.rows64 == 300
    finally:
        torch.set_float32_matmul_precision(saved)
    with pytest.raises(ValueError, match="gram must be one of"):
        TorchAccumulator(20, gram="float16")
    with pytest.raises(ValueError, match="with_mismatch=False"):
        TorchAccumulator(20, gram="float32").update(X32, X32)


def _float64_run_on_chunked_stats():
    rng = np.random.default_rng(3)
    N = 64
    A = np.eye(N) + 0.3 * rng.standard_normal((N, N)) / 8
    X = (rng.standard_normal((2048, N)) @ A).astype(np.float32)
    W = rng.standard_normal((16, N)) * 0.02
    X32 = torch.tensor(X)
    acc = TorchAccumulator.from_data(X32, gram="float32")
    grid = pt.Grid.minmax(W, bits=4)
    run = pt.optq(torch.tensor(W), acc, lam=pt.Damping.percdamp(0.01), grid=grid)
    return run, X32.double()


def test_certificate_carries_the_statistics_error():
    run, X64 = _float64_run_on_chunked_stats()
    cert = pt.certify(run, X64)  # the run's own statistics are reused (matched within their bound)
    assert cert.holds()
    from ptqtheory.identities import i2
    from ptqtheory.torch_backend.certify import _device_context

    ctx = _device_context(run, X64, None, None)
    check = i2(ctx)
    assert "statistics" in check.allowance
    # The term is needed: without it the float64 run's identity, read against the data, fails.
    gap = np.abs(check.lhs - check.rhs)
    without = check.atol - check.allowance["statistics"]
    assert np.any(gap > 1e-10 * np.maximum(np.abs(check.lhs), np.abs(check.rhs)) + without)
    assert np.all(gap <= 1e-10 * np.maximum(np.abs(check.lhs), np.abs(check.rhs)) + check.atol)
