r"""The plain GPTQ-style blocked loop, as published: the baseline every fast path is measured against.

Written here from Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
Pre-trained Transformers" (ICLR 2023), Algorithm 1 and Section 3 ("lazy batch-updates",
"Cholesky reformulation"), in the form its reference implementation popularized:

* :math:`H = \frac{2}{m}X^TX` accumulated batch by batch as a running mean, in the working dtype;
* dead columns (:math:`H_{jj} = 0`) get :math:`H_{jj} = 1` and zero weights;
* damping :math:`H \mathrel{+}= p\cdot\operatorname{mean}\operatorname{diag}(H)\,I`;
* :math:`U = \operatorname{chol}(H^{-1})^T` (upper), via Cholesky, ``cholesky_inverse`` and Cholesky;
* for each block of ``block_size`` columns and each column :math:`i` in it:
  :math:`q = Q(w_i)`, :math:`e = (w_i - q)/U_{ii}`, :math:`W_{:, i:b} \mathrel{-}= e\,U_{i, i:b}`;
  then :math:`W_{:, b:} \mathrel{-}= E\,U_{block, b:}`.

The grid is the per-row (or per-entry) grid ``delta * (k - zero)``, ``k`` in ``[lo, hi]``, with
nearest rounding (``torch.round``: ties to even, as the reference's ``quantize``).
Everything runs in one dtype (float32 by default) on the device of ``W``.
"""

from __future__ import annotations

import math
import time

import torch

__all__ = ["gptq_loop"]


def gptq_loop(
    W: torch.Tensor,
    X: torch.Tensor,
    delta: torch.Tensor,
    zero: torch.Tensor,
    lo: float,
    hi: float,
    percdamp: float = 0.01,
    block_size: int = 128,
    batch_rows: int = 2048,
    phases: dict | None = None,
) -> torch.Tensor:
    """Quantize ``W`` (n, N) against inputs ``X`` (m, N) with GPTQ's published blocked loop.

    Parameters
    ----------
    W : torch.Tensor, shape (n, N)
        Weights; the working dtype and device are ``W``'s.
    X : torch.Tensor, shape (m, N)
        Calibration inputs, consumed in batches of ``batch_rows`` rows.
    delta, zero : torch.Tensor, shape (n,) or (n, N)
        Grid step and zero point per row (or per entry).
    lo, hi : float
        Integer code range.
    percdamp : float
        Relative damping (GPTQ's ``percdamp``).
    block_size : int
        Lazy-update block width (GPTQ's ``blocksize``).
    batch_rows : int
        Rows of ``X`` per Hessian update.
    phases : dict, optional
        Receives the seconds of each phase: ``statistics``, ``factorization``, ``sweep``
        (CPU timings; on a GPU pass ``None``, the phases are not synchronized).

    Returns
    -------
    torch.Tensor, shape (n, N)
        The quantized weights.
    """
    clock = _Clock(phases)
    dtype, device = W.dtype, W.device
    W = W.clone()
    n, N = W.shape
    H = torch.zeros(N, N, dtype=dtype, device=device)
    seen = 0
    for r0 in range(0, X.shape[0], batch_rows):
        xb = X[r0 : r0 + batch_rows].to(dtype)
        b = xb.shape[0]
        H *= seen / (seen + b)
        seen += b
        xb = math.sqrt(2.0 / seen) * xb
        H += xb.T @ xb
    clock("statistics")
    dead = torch.diagonal(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += percdamp * torch.mean(torch.diagonal(H)) * torch.eye(N, dtype=dtype, device=device)
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    clock("factorization")
    delta = delta.to(dtype).reshape(n, -1).expand(n, N)
    zero = zero.to(dtype).reshape(n, -1).expand(n, N)
    Q = torch.zeros_like(W)
    for i1 in range(0, N, block_size):
        i2 = min(i1 + block_size, N)
        W1 = W[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            d, z = delta[:, i1 + i], zero[:, i1 + i]
            q = d * (torch.clamp(torch.round(w / d) + z, lo, hi) - z)
            Q[:, i1 + i] = q
            e = (w - q) / U1[i, i]
            W1[:, i:] -= e.unsqueeze(1) @ U1[i, i:].unsqueeze(0)
            E1[:, i] = e
        W[:, i2:] -= E1 @ U[i1:i2, i2:]
    clock("sweep")
    return Q


class _Clock:
    """Records the seconds since the previous call under a phase name (nothing when ``phases`` is None)."""

    def __init__(self, phases: dict | None):
        self.phases = phases
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.phases is not None:
            now = time.perf_counter()
            self.phases[name] = now - self.t
            self.t = now
