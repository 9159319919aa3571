"""Peer conventions written from their papers, for comparisons in the tests (our code, not theirs)."""

import numpy as np


def gptq_reference_loop(W, X, damp_frac, grid_delta, block=128):
    """GPTQ's Algorithm 1 as published (Frantar et al. 2022), float64, written here from the paper:
    H = (2/m) X^T X + damp I, Hinv = Cholesky(H^-1) upper, lazy block updates; returns Q and the
    accumulated loss sum (w - q)^2 / Hinv_ii^2 / 2."""
    W = W.copy()
    m, N = X.shape
    H = 2.0 / m * X.T @ X
    H += damp_frac * np.mean(np.diag(H)) * np.eye(N)
    Hinv = np.linalg.cholesky(np.linalg.inv(H)).T
    Q = np.zeros_like(W)
    loss = np.zeros(W.shape[0])
    for i1 in range(0, N, block):
        i2 = min(i1 + block, N)
        W1 = W[:, i1:i2].copy()
        Err1 = np.zeros_like(W1)
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv[i1 + i, i1 + i]
            q = grid_delta * np.floor(w / grid_delta + 0.5)
            Q[:, i1 + i] = q
            loss += (w - q) ** 2 / d**2 / 2
            err = (w - q) / d
            W1[:, i:] -= np.outer(err, Hinv[i1 + i, i1 + i:i2])
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return Q, loss
