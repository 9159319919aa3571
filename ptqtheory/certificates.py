r"""Exact a-posteriori certificates: both sides of THEORY.md I1-I6, per row, from a run and the data.

An identity's left side is computed *from the data* (``X``, ``Xt``, the weights and the quantized
weights), its right side from the run's rounding errors :math:`\eta_t` and the pivots :math:`D_t`;
their relative gap (:func:`relative_gap`) is ~1e-15..1e-10 in float64 and exactly 0 in rationals.
:func:`certify_numpy` hands the context of the data held whole to :func:`ptqtheory.identities.assemble`,
as the torch certificate (:func:`ptqtheory.torch_backend.certify`, statistics on a device) does;
``pt.certify`` (:func:`ptqtheory.api.certify`) picks one of the two from the run.
"""

from __future__ import annotations

from ._context import RunContext
from ._validate import as_matrix
from .bounds import evaluate
from .identities import Certificate, PivotCheck, assemble, check_options, relative_gap
from .records import Run
from .registry import entry, unwrap

__all__ = ["Certificate", "PivotCheck", "certify_numpy", "relative_gap"]


def certify_numpy(
    run: Run, X, Xt=None, p: float = 1e-3, full_pivot_check: bool | None = None,
    bounds: bool = True, *, samples=None,
) -> Certificate:
    r"""Certificate of ``run`` on the calibration data: identities I1-I6 and bounds B1-B12.

    Parameters
    ----------
    run : Run
        A record returned by one of the algorithms.
    X : array_like, shape (m, N)
        The float-model inputs the run was computed with.
    Xt : array_like, shape (m, N), optional
        The quantized-model inputs (required for the algorithms the registry marks ``X, Xt``:
        Qronos and GPFQ).
    p : float
        Failure probability of the high-probability bounds (B4-B6, B8 stochastic, B10).
    full_pivot_check : bool, optional
        Compute I1's projection and inverse forms of every pivot (``O(N^4)``); default when
        ``N <= 128``. The determinant and the bounds on :math:`D_t` are always checked.
    bounds : bool
        Also evaluate every a-priori bound that applies to the algorithm (:mod:`ptqtheory.bounds`).
    samples : callable, optional
        Torch runs certified from statistics or streamed batches only: ``samples()`` returns a fresh
        pass over the same data, read batch by batch for the per-sample bounds B5 and B10.sup
        (:func:`ptqtheory.torch_backend.certify`). Numpy runs always read the data whole.

    Returns
    -------
    Certificate

    Notes
    -----
    Cost of the float64 certificate, leading terms in flops (a multiply-add is 2), ``n`` rows,
    ``N`` columns, ``m`` samples:

    ==============================================  ===============================  ================
    quantity                                        runs                             flops
    ==============================================  ===============================  ================
    :math:`Xw - \tilde Xq` per sample (``out``)     every run; with ``Xt``:          :math:`2nNm`;
                                                    :math:`\tilde X(w-q) + \Delta w` :math:`4nNm`
    Gram matrix :math:`X_f^TX_f` (one triangle)     factored runs                    :math:`mN^2`
    :math:`\log\det H` (I1, Cholesky)               factored runs                    :math:`N^3/3`
    :math:`(w - q) - L\eta` (structure, ``trmm``)   OPTQ, LDLQ, Qronos-LS            :math:`nN^2`
    :math:`e^THe`, :math:`|e|^T|H||e|` (I3)         LDLQ                             :math:`4nN^2`
    QR of :math:`\hat{\tilde X}` with :math:`Q`     Qronos                           :math:`4(m+N)N^2`
    :math:`Q^T[\Delta w; 0]`, :math:`\tilde Xy`     Qronos                           :math:`4nNm`
    :math:`w^T\tilde Hw` (refit allowance)          Qronos                           :math:`2nN^2`
    ==============================================  ===============================  ================

    OPTQ and LDLQ reuse the run's factorization (I1 checks it against :math:`H` formed from the
    data); :math:`L = U_1^{-1}` costs :math:`N^3/3` if the run did not form it. At
    :math:`n = N = m` that is about :math:`4.3N^3` for OPTQ, :math:`8.3N^3` for LDLQ and
    :math:`19N^3` for Qronos (of which the independent QR is :math:`8N^3`); the blocked OPTQ run
    itself costs about :math:`mN^2 + N^3/3 + 2nN^2 \approx 3.3N^3`. The bounds add
    :math:`O(nN^2)` (B6-B8), B2's Cholesky of the Gram matrix (:math:`N^3/3`) and, for nearest LDLQ,
    B11's eigendecomposition of :math:`H` (about :math:`9N^3`).
    """
    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run returned by an algorithm; got {type(run).__name__}")
    p, full_pivot_check, bounds = check_options(p, full_pivot_check, bounds)
    if X is None:
        raise ValueError("X is required: the calibration inputs the run was computed with, shape (m, N)")
    if run.backend == "torch":
        raise TypeError("this is the numpy certificate; a torch run is certified by pt.certify "
                        "(ptqtheory.api.certify picks the backend from the run)")
    if samples is not None:
        raise ValueError("samples is for torch runs certified from statistics; a numpy run's certificate "
                         "reads the data X (and Xt) whole: leave samples out")
    inner, transform = unwrap(run)
    if transform is not None:
        V = transform.V
        Xv = as_matrix("X", X, V.shape[0]) @ V.T
        Xtv = None if Xt is None else as_matrix("Xt", Xt, V.shape[0]) @ V.T
        cert = certify_numpy(inner, Xv, Xtv, p, full_pivot_check, bounds)
        return Certificate(**{**cert.__dict__, "transformed": True})

    # Reuse the run's factorization unless the identity reads w_LS (Entry.least_squares).
    row = entry(run.algorithm)
    reuse = run.pivots if row.factor is not None and not row.least_squares else None
    ctx = RunContext.build(run, X, Xt, piv=reuse)
    checks = evaluate(ctx, p) if bounds else []
    return assemble(ctx, full_pivot_check=full_pivot_check, checks=checks)
