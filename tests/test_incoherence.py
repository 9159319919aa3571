"""Incoherence processing (THEORY.md A3i): random orthogonal transforms, exact undo, invariance of the
proxy loss, reduction of mu(H), certificates in the transformed coordinates."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import ptqtheory as pt


def _orth_err(Q):
    return np.max(np.abs(Q.T @ Q - np.eye(Q.shape[0])))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 30, 31, 64])
def test_kron_is_orthogonal(d):
    Q = pt.random_orthogonal(d, "kron", np.random.default_rng(d))
    assert Q.shape == (d, d)
    assert _orth_err(Q) < 1e-12
    assert np.max(np.abs(Q @ Q.T - np.eye(d))) < 1e-12


def test_kron_size_one_is_a_sign():
    Q = pt.random_orthogonal(1, "kron", np.random.default_rng(0))
    assert Q.shape == (1, 1) and abs(Q[0, 0]) == 1.0


def test_kron_of_composite_size_is_a_kronecker_product():
    # d = 12 = 3 * 4: Q = A kron B, so every 4x4 block of Q is a multiple of one orthogonal B.
    Q = pt.random_orthogonal(12, "kron", np.random.default_rng(1))
    blocks = [Q[4 * i : 4 * i + 4, 4 * j : 4 * j + 4] for i in range(3) for j in range(3)]
    ref = max(blocks, key=lambda b: np.linalg.norm(b))
    B = ref / (np.linalg.norm(ref) / 2)  # ||c B||_F = |c| * 2 for 4x4 orthogonal B
    assert _orth_err(B) < 1e-10
    for b in blocks:
        c = np.sum(b * B) / 4
        np.testing.assert_allclose(b, c * B, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 4, 8, 16, 128])
def test_hadamard_is_orthogonal_with_flat_entries(d):
    Q = pt.random_orthogonal(d, "hadamard", np.random.default_rng(d))
    assert _orth_err(Q) < 1e-12
    np.testing.assert_allclose(np.abs(Q), np.full((d, d), 1 / np.sqrt(d)), rtol=1e-15)


@pytest.mark.parametrize("d", [3, 6, 12, 24, 100])
def test_hadamard_needs_power_of_two(d):
    with pytest.raises(ValueError, match="power"):
        pt.random_orthogonal(d, "hadamard", np.random.default_rng(0))
    rng = np.random.default_rng(0)
    W, X = rng.standard_normal((4, d)), rng.standard_normal((2 * d, d))
    with pytest.raises(ValueError, match="power"):
        pt.ldlq(W, X, lam=0.1, grid=pt.Grid(0.1), incoherence="hadamard", seed=0)


def test_unknown_transform_raises():
    with pytest.raises(ValueError, match="incoherence"):
        pt.random_orthogonal(4, "dct", np.random.default_rng(0))


# -- the incoherence measure mu ----------------------------------------------------------------------


def test_mu_by_hand():
    # diagonal H with distinct entries: eigenvectors are the standard basis, mu = sqrt(N)
    assert pt.incoherence(np.diag([1.0, 2.0, 3.0, 4.0])) == pytest.approx(2.0, rel=1e-14)
    # H = Had diag(d) Had^T / N: eigenvectors are Hadamard columns, entries 1/sqrt(N), mu = 1
    Had = scipy.linalg.hadamard(8) / np.sqrt(8)
    H = Had @ np.diag(np.arange(1.0, 9.0)) @ Had.T
    assert pt.incoherence(H) == pytest.approx(1.0, rel=1e-12)


# -- incoherence processing in LDLQ --------------------------------------------------------------------


def _problem(seed=0, n=8, m=64, N=16):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, N))
    X = rng.standard_normal((m, N)) @ (np.eye(N) + 0.4 * rng.standard_normal((N, N)))
    return W, X


KINDS = [("kron", 6, 15), ("kron", 5, 7), ("hadamard", 8, 16), ("hadamard", 4, 32)]


@pytest.mark.parametrize(("kind", "n", "N"), KINDS)
def test_tiny_delta_undo_recovers_W(kind, n, N):
    W, X = _problem(1, n=n, m=3 * N, N=N)
    run = pt.ldlq(W, X, lam=0.1, grid=pt.Grid(1e-9), incoherence=kind, seed=3)
    assert run.transform is not None and run.transform.kind == kind
    assert run.Q.shape == W.shape
    # each inner entry moves by at most delta/2 plus feedback; in total ||Q - W|| is of order delta
    assert np.linalg.norm(run.Q - W) < 1e-7 * np.linalg.norm(W)
    np.testing.assert_array_equal(run.W, W)


@pytest.mark.parametrize(("kind", "n", "N"), KINDS)
@pytest.mark.parametrize("grid_kind", ["delta", "minmax"])
def test_undo_and_proxy_loss_invariance(kind, n, N, grid_kind):
    W, X = _problem(2, n=n, m=3 * N, N=N)
    lam = 0.05
    grid = pt.Grid(0.3) if grid_kind == "delta" else pt.Grid.minmax(W, bits=3)
    run = pt.ldlq(W, X, lam=lam, grid=grid, incoherence=kind, seed=5)
    U, V = run.transform.U, run.transform.V
    assert U.shape == (n, n) and V.shape == (N, N)
    assert _orth_err(U) < 1e-12 and _orth_err(V) < 1e-12
    inner = run.inner
    # the inner problem is W' = U W V^T (checked here from U, V directly)
    np.testing.assert_allclose(inner.W, U @ W @ V.T, rtol=0, atol=1e-12)
    # the inner run lies on its grid (a min-max grid is refitted to W')
    k = inner.Q / inner.grid.expand(n, N)[0] + inner.grid.expand(n, N)[1]
    assert np.max(np.abs(k - np.rint(k))) < 1e-9
    if grid_kind == "minmax":
        ref = pt.Grid.minmax(U @ W @ V.T, bits=3)
        np.testing.assert_allclose(np.ravel(inner.grid.expand(n, N)[0][:, 0]), np.ravel(ref.delta), rtol=1e-12)
    # undo: Q = U^T Q' V
    np.testing.assert_allclose(run.Q, U.T @ inner.Q @ V, rtol=0, atol=1e-12)
    # proxy loss in original coordinates equals the inner one with H' = V H V^T
    H = X.T @ X + lam * np.eye(N)
    E = run.Q - W
    E_in = inner.Q - inner.W
    outer_loss = np.trace(E @ H @ E.T)
    inner_loss = np.trace(E_in @ (V @ H @ V.T) @ E_in.T)
    assert outer_loss > 0
    assert abs(outer_loss - inner_loss) <= 1e-10 * outer_loss
    # and it equals I3's right side sum_rows sum_t eta_t^2 D_t of H' (D from its own factorization)
    order = inner.order
    Hp = (V @ H @ V.T)[np.ix_(order, order)]
    D = pt.pivots(Hp).D
    rhs = np.sum((inner.eta[:, order] ** 2) @ D)
    assert abs(outer_loss - rhs) <= 1e-10 * outer_loss


@pytest.mark.parametrize(("kind", "n", "N"), KINDS)
def test_certificate_of_incoherent_run(kind, n, N):
    W, X = _problem(3, n=n, m=3 * N, N=N)
    run = pt.ldlq(W, X, lam=0.02, grid=pt.Grid.minmax(W, bits=4), incoherence=kind, seed=9)
    cert = pt.certify(run, X)
    assert cert.transformed
    assert cert.identity == "I3"
    assert np.max(cert.identity_gap) < 1e-10
    assert cert.max_gap < 1e-10
    # the certificate's I3 left side, summed over rows, is the proxy loss in original coordinates
    H = X.T @ X + 0.02 * np.eye(N)
    E = run.Q - W
    assert float(cert.total_lhs) == pytest.approx(np.trace(E @ H @ E.T), rel=1e-10)


def test_incoherence_with_order_and_stochastic_rounding():
    W, X = _problem(4, n=4, m=40, N=16)
    run = pt.ldlq(
        W, X, lam=0.1, grid=pt.Grid(0.2), incoherence="hadamard", seed=1,
        rounding="stochastic", order="decreasing_norm",
    )
    V = run.transform.V
    gram_diag = np.sum((X @ V.T) ** 2, axis=0)  # act-order is on the transformed inputs
    np.testing.assert_array_equal(run.inner.order, np.argsort(-gram_diag, kind="stable"))
    cert = pt.certify(run, X)
    assert cert.transformed and cert.max_gap < 1e-10


@pytest.mark.parametrize("kind", ["kron", "hadamard"])
def test_processing_lowers_mu_on_outlier_columns(kind):
    rng = np.random.default_rng(7)
    N = 64
    X = rng.standard_normal((256, N))
    X[:, [3, 20, 41]] *= [50.0, 200.0, 1000.0]  # a few huge outlier features
    W = rng.standard_normal((8, N))
    lam = 0.1
    H = X.T @ X + lam * np.eye(N)
    run = pt.ldlq(W, X, lam=lam, grid=pt.Grid(0.1), incoherence=kind, seed=11)
    V = run.transform.V
    mu_before = pt.incoherence(H)
    mu_after = pt.incoherence(V @ H @ V.T)
    # the outliers' eigenvectors are nearly standard basis vectors: mu(H) is near its maximum sqrt(N)
    assert mu_before > 0.99 * np.sqrt(N)
    assert mu_after < 0.7 * mu_before
    # mu computed directly from the eigenvectors agrees with pt.incoherence
    _, Qe = np.linalg.eigh(V @ H @ V.T)
    assert mu_after == pytest.approx(np.sqrt(N) * np.max(np.abs(Qe)), rel=1e-12)


def test_incoherence_rejects_exact_inputs():
    from fractions import Fraction

    W = np.array([[Fraction(1, 2), Fraction(1, 3)]], dtype=object)
    X = np.array([[Fraction(1), Fraction(0)], [Fraction(0), Fraction(1)]], dtype=object)
    with pytest.raises(ValueError, match="exact"):
        pt.ldlq(W, X, lam=0, grid=pt.Grid(0.5), incoherence="kron", seed=0)
