r"""Every numerical tolerance and range limit of ptqtheory, with its error model (docs/theory.md, "Numerics").

Error model
-----------
(E1) **Rounding.** Every operation on normal floating-point numbers is correctly rounded:
:math:`\mathrm{fl}(a\circ b) = (a\circ b)(1+d)`, :math:`|d|\le u`, with ``u`` the unit roundoff of
the working precision (:math:`2^{-53}` in float64, :math:`2^{-24}` in float32; numpy's
``finfo.eps`` is :math:`2u`). (E1) fails for results that overflow or are subnormal: R1-R3 below keep
every quantity of a run, its certificate and its bounds in the normal range, with room to spare.

(E2) **Accumulation.** A sum of ``k`` rounded terms errs by at most :math:`ku` times the sum of the
absolute terms (worst case, vacuous at LLM sizes), by about :math:`\sqrt k\,u` times it in practice
(the probabilistic model of Higham & Mary, SIAM J. Sci. Comput. 41, 2019). The allowances below are
first-order, :data:`GAMMA` :math:`\cdot\epsilon = 32u` times each size involved, which covers that growth here.

(E3) **Conditioning.** A solution of a linear system or least-squares problem inherits the condition
number: the forward error of :math:`\arg\min_c\|Ac - b\|` computed by a backward-stable QR is at most
:math:`\epsilon(\kappa\|c\| + \kappa^2\|r\|/\|A\|)` (Higham, *Accuracy and Stability*, Thm. 20.1),
:math:`\kappa = \kappa_2(A)`, :math:`r` the residual. Pivots from a QR of the data carry
:math:`\epsilon\sqrt{\kappa(H)}`, forms evaluated through the formed :math:`H`, :math:`\epsilon\,\kappa(H)`.

(E4) **Statistics.** A Gram matrix accumulated from ``m`` rows, in float64 or from float32 products
of row chunks added in float64 (the torch accumulator's ``gram="float32"``), errs entrywise by at most
:math:`\mathrm{rel}\,(|X|^T|X|)_{kl} + \mathrm{abs}`, a worst-case bound (:func:`gram_rounding`) that the
certificates read through :func:`gram_statistics_allowance` and :func:`formed_quadratic_allowance`.

Representable range
-------------------
(R1) Data ``X``, ``Xt`` and weights ``W``: largest magnitude in :math:`[2^{-E}, 2^{E}]` (or all zero),
:math:`E` = :data:`SCALE_EXP` (180 for float64; a float32 torch run keeps ``W`` within
:math:`2^{\pm 64}`). Grid steps may lie :data:`STEP_MARGIN_EXP` binary orders below that floor (codes
reach :math:`2^{41}`). Damping: :math:`\lambda = 0` or :math:`\lambda\in[2^{-2E-64}, 2^{2E+64}]`.
The certificates and bounds form products of degree at most four in these scales (e.g.
:math:`\delta_t^2D_t`, :math:`\|X(w-q)\|^2`, :math:`\lambda\|w-q\|^2`), all within :math:`2^{\pm 1000}`
for sizes up to :math:`2^{64}`: no overflow, and the smallest allowance (:math:`\epsilon` times a
degree-four product, :math:`\ge 2^{-920}`) stays above the subnormal range (:math:`2^{-1022}`) by far
more than the accumulated absolute error of gradual underflow. Everything is homogeneous
(:math:`X\to 2^kX`, :math:`\lambda\to 4^k\lambda` leaves ``Q`` unchanged; :math:`W, \delta\to 2^kW,
2^k\delta` scales ``Q`` by :math:`2^k`, exactly): data out of range are refused with that advice, not rescaled.

(R2) Rounding onto a grid: :math:`|k| + |z| + 1 \le` :func:`max_code` for every code ``k`` used, so the
integer arithmetic is exact and the rounding error at most :data:`ROUNDING_SLACK` of a step.

(R3) Nothing non-finite: inputs are checked, and every run checks that ``x``, ``q`` and
:math:`\eta` came out finite (the error feedback can still overflow on pathological, clipped runs).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "FLOAT32_GRAM_EXP",
    "GAMMA",
    "GRAM_CHUNK_ROWS",
    "HOMOGENEOUS_FIX",
    "RESOLVED",
    "ROUNDING_SLACK",
    "RTOL_BOUND",
    "RTOL_IDENTITY",
    "SCALE_EXP",
    "STATS_MATCH_RTOL",
    "STEP_MARGIN_EXP",
    "allowance_unit",
    "check_magnitude",
    "data_range",
    "evaluation_allowance",
    "formed_quadratic_allowance",
    "gamma",
    "gpfq_allowance",
    "gram_rounding",
    "gram_statistics_allowance",
    "h_tolerance",
    "identity_allowance",
    "lam_range",
    "least_squares_allowance",
    "max_bits",
    "max_code",
    "normal_equations_refit_allowance",
    "pivot_bounds_slack",
    "precision_name",
    "product_underflow",
    "qr_refit_allowance",
    "qronos_first_allowance",
    "quadratic_range",
    "rounding_slack",
    "singular_threshold",
    "step_range",
    "structure_allowance",
    "unit_roundoff",
    "weight_allowance",
    "weight_range",
]

# -- precision -------------------------------------------------------------------------------------

_UNIT = {"float64": 2.0**-53, "float32": 2.0**-24, "exact": 0.0}


def precision_name(precision) -> str:
    """``"float64"``, ``"float32"`` or ``"exact"`` from a name, a numpy dtype or a torch dtype."""
    if precision is None:
        return "float64"
    name = str(precision).removeprefix("torch.")
    name = {"double": "float64", "float": "float32", "float16": "float32", "bfloat16": "float32",
            "half": "float32"}.get(name, name)
    if name not in _UNIT:
        try:
            name = np.dtype(precision).name
        except TypeError:
            name = "float64"
    return name if name in _UNIT else "float64"


def unit_roundoff(precision="float64") -> float:
    """The unit roundoff ``u`` of (E1): half of ``finfo.eps``; 0 for exact (rational) arithmetic."""
    return _UNIT[precision_name(precision)]


GAMMA = 16.0
"""Multiplier of every first-order allowance: ``GAMMA * eps = 32 u`` per size involved (E2)."""


def allowance_unit(precision="float64") -> float:
    """``GAMMA * eps`` of ``precision`` (0 in exact arithmetic): the unit of every allowance."""
    return GAMMA * 2.0 * unit_roundoff(precision)


# -- relative tolerances (user knobs and report thresholds, not error bounds) ------------------------

RTOL_IDENTITY = 1e-10
"""Default ``rtol`` of the identities (:meth:`ptqtheory.Certificate.holds`): it absorbs the second-order
terms that each row's first-order allowance (``identity_atol``) omits, below :math:`10^{-14}` in float64."""

RTOL_BOUND = 1e-9
r"""Relative slack of every bound comparison, ``empirical <= value (1 + RTOL_BOUND) + atol``: as
:data:`RTOL_IDENTITY`, plus the accumulation beyond (E2) in long sums (:math:`k u \le 10^{-9}` for
``k`` up to :math:`10^{7}` terms)."""

RESOLVED = 1e-3
"""A row's identity is *resolved* when its allowance is at most this fraction of its sides; on the
other rows both sides are rounding noise and only the allowance judges them (a reporting threshold)."""


def reference_forward_rtol(unit: float) -> float:
    r"""Relative tolerance when a float64 reference forward pass (``pt.attention_heads``) is compared with
    a model's own pass computed at unit roundoff ``unit`` (e.g. :math:`2^{-24}` for float32):
    :math:`\sqrt{u}`. The model's rounding is a small multiple of :math:`u` relative (a few inner
    products and a softmax), far below :math:`\sqrt u`; an attention the reference does not model
    (another rotary layout, a window, a norm) differs at order 1, far above it (float32:
    :math:`2.4\times10^{-4}`)."""
    return math.sqrt(unit)


STATS_MATCH_RTOL = 1e-12
"""The torch certificate reuses a run's own statistics when the data given have the same squared
column norms to this relative tolerance (the same float64 sums in another chunking differ by
:math:`k u`, far below it). Not an error bound: declining only costs a recomputation."""


# -- factorizations ------------------------------------------------------------------------------


def singular_threshold(N: int, max_diag: float, precision="float64") -> float:
    r"""Pivots at or below ``N eps max diag(H)`` are rounding noise (``H`` is numerically singular): a
    Cholesky (or QR) factorization is backward stable with :math:`|\Delta H|\le (N+1)u|U||U^T|`, so a
    computed pivot can be off by about :math:`N\epsilon\max_t H_{tt}`; one below that has no correct digit."""
    return N * 2.0 * unit_roundoff(precision) * max_diag


def pivot_bounds_slack(N: int, max_diag: float, precision="float64") -> float:
    r"""Slack of I1's bounds :math:`\lambda\le D_t\le\|X_t\|^2+\lambda`: the computed :math:`D_t` errs by
    at most :math:`2\epsilon\|\hat X\|_2^2\le 2\epsilon N\max_t H_{tt}` (QR of the data: relative
    :math:`\epsilon\|\hat X\|_2/\sqrt{D_t}` on :math:`\sqrt{D_t}`; Cholesky: the backward error of
    :func:`singular_threshold`), and the slack is that bound with the constant :data:`GAMMA`."""
    return allowance_unit(precision) * N * max_diag


def h_tolerance(rtol: float, N: int, cond: float, precision="float64") -> float:
    r"""Tolerance of I1's forms read through the formed :math:`H` (inverse form, :math:`\log\det`):
    ``max(rtol, GAMMA N eps kappa(H))`` (E3). Infinite ``cond`` (exact inputs): 0."""
    if not np.isfinite(cond):
        return 0.0
    return max(rtol, allowance_unit(precision) * N * cond)


# -- allowances of the certificates and bounds (first order, E1-E3) ----------------------------------


def structure_allowance(unit: float, w_q, L_eta, extra=0.0):
    r"""Rounding allowance of :math:`\|(w - q) - L\eta\|` (weight units), per row: ``w - q`` and ``q``
    err by :math:`u(|w| + |q|)`, :math:`L\eta` by :math:`u\|L\|_F\|\eta\|` (E2). ``w_q`` is
    :math:`\|w\| + \|q\|`, ``L_eta`` is :math:`\|L\|_F\|\eta\|`; ``extra``: further sizes (Qronos'
    :math:`\|w_{LS}\|` and its least-squares error, :func:`least_squares_allowance`)."""
    return unit * (w_q + L_eta + extra)


def least_squares_allowance(unit: float, cond_H: float, L_fro: float, eta_norm, N: int):
    r"""Extra structure allowance of OPTQ and Qronos runs with ``method="iteration"``, per row.

    Step ``t`` computes :math:`c_t = \hat X_{>t}^+\hat X_t` (:math:`= -L_{>t,t}`) by QR. By (E3) its
    forward error is at most :math:`\epsilon(\kappa_t\|c_t\| + \kappa_t^2\sqrt{D_t}/\|\hat X_{>t}\|)`
    with :math:`\kappa_t = \kappa(\hat X_{>t}) \le \sqrt{\kappa(H)}`, :math:`\|c_t\|\le\|L\|_F` and
    :math:`\kappa_t^2\sqrt{D_t}/\|\hat X_{>t}\| \le \kappa(H)` (interlacing, :math:`D_t\le\|H\|`).
    Step ``t`` moves the weights by :math:`\eta_t c_t`, so :math:`w - q - L\eta` collects
    :math:`\sum_t|\eta_t|\,\|\Delta c_t\| \le \sqrt N\|\eta\|\,\epsilon(\sqrt{\kappa(H)}\|L\|_F + \kappa(H))`.
    The identities do not see this error (it lies along directions that :math:`\hat X` shrinks);
    the weight-space relation :math:`w - q = L\eta` does.
    """
    if not np.isfinite(cond_H):
        return np.zeros_like(np.asarray(eta_norm, float))
    return unit * math.sqrt(N) * np.asarray(eta_norm, float) * (math.sqrt(cond_H) * L_fro + cond_H)


def qr_refit_allowance(cond_H: float, w_ls_norm, r0_norm, a_norm: float, fitted_norm):
    r"""Qronos' :math:`w_{LS}` refitted from the data by QR (the numpy certificate), per row:
    ``(weights, fitted values)`` error sizes, in units of :func:`allowance_unit`.

    By (E3) with :math:`\kappa = \kappa(\hat{\tilde X}) = \sqrt{\kappa(\tilde H)}`, the run's and the
    certificate's :math:`w_{LS}` (read by the structure relation) differ by at most
    :math:`\epsilon(\kappa\|w_{LS}\| + \kappa^2\|r_0\|/\|\hat{\tilde X}\|)`, ``a_norm`` bounding
    :math:`\|\hat{\tilde X}\|_2` from below; the fitted values :math:`\hat{\tilde X}w_{LS}` (read by
    the identity) by about :math:`\epsilon\kappa\|\hat Xw\|` (``fitted_norm``)."""
    kappa = math.sqrt(cond_H) if np.isfinite(cond_H) else 0.0
    weights = kappa * np.asarray(w_ls_norm, float) + kappa**2 * np.asarray(r0_norm, float) / a_norm
    return weights, kappa * np.asarray(fitted_norm, float)


def normal_equations_refit_allowance(cond_H: float, N: int, trace_H: float, b_terms, y_norm, z_norm):
    r"""Qronos' :math:`w_{LS} = w + y`, :math:`\tilde Hy = b = \tilde X^T\Delta w`, refitted from the
    statistics by Cholesky (the torch certificate): error sizes as in :func:`qr_refit_allowance`.

    ``b`` is formed with error :math:`\epsilon\beta`, :math:`\beta = \|\tilde X^T\Delta\|_F\|w\|`
    (``b_terms``, E2), and :math:`\lambda_{\min}(\tilde H) = \lambda_{\max}/\kappa \ge
    \operatorname{tr}(\tilde H)/(N\kappa)`, :math:`\kappa = \kappa(\tilde H)`. So (E3) the weights
    err by :math:`\epsilon\kappa(\|y\| + N\beta/\operatorname{tr}\tilde H)` (solve, then data),
    and the fitted values :math:`\hat{\tilde X}y` (norm :math:`\|z\|`, :math:`z = U_{\tilde H}^{-1}b`)
    by :math:`\epsilon\sqrt\kappa(\|z\| + \beta\sqrt{N/\operatorname{tr}\tilde H})`; the same
    bounds :math:`z`'s own error. The normal equations square the QR route's conditioning.
    """
    if not np.isfinite(cond_H):
        return np.zeros_like(np.asarray(y_norm, float)), np.zeros_like(np.asarray(z_norm, float))
    b_terms = np.asarray(b_terms, float)
    weights = cond_H * (np.asarray(y_norm, float) + N * b_terms / trace_H)
    fitted = math.sqrt(cond_H) * (np.asarray(z_norm, float) + b_terms * math.sqrt(N / trace_H))
    return weights, fitted


def qronos_first_allowance(unit: float, first, ls_weights, D1: float):
    r"""I5's first term :math:`((w_{LS})_1 - q_1)^2\tilde D_1` when :math:`w_{LS}` carries the refit
    error ``unit * ls_weights``: :math:`\tilde D_1\,e(2|a| + e)`, :math:`a` = ``first``."""
    e = unit * np.asarray(ls_weights, float)
    return D1 * e * (2.0 * np.abs(np.asarray(first, float)) + e)


def identity_allowance(scale: float, s_atol, lhs, rhs):
    r"""Allowance of an identity between squared norms, per row:
    :math:`|\|\hat X a\|^2 - \|\hat X b\|^2| \le \|\hat X\nu\|(\|\hat Xa\| + \|\hat Xb\|)` with
    :math:`\nu = a - b` the rounding residual, :math:`\|\nu\|\le` ``s_atol`` and
    :math:`\|\hat X\|_2\le` ``scale`` (a Frobenius norm)."""
    return scale * s_atol * (np.sqrt(np.abs(np.asarray(lhs, float))) + np.sqrt(np.abs(np.asarray(rhs, float))))


def gpfq_allowance(unit: float, N: int, x_fro: float, w_norm, xt_fro: float, q_norm):
    r"""Allowance of I6, :math:`u_N = Xw - \tilde Xq`, per row: ``N`` rank-one steps, each rounded by
    :math:`u(|w_t|\|X_t\| + |q_t|\|\tilde X_t\|)` (E1-E2): ``unit N (||X||_F ||w|| + ||Xt||_F ||q||)``."""
    return unit * N * (x_fro * np.asarray(w_norm, float) + xt_fro * np.asarray(q_norm, float))


def formed_quadratic_allowance(unit: float, N: int, m: int, abs_quad, data_quad):
    r"""Extra allowance of I3, which reads the formed :math:`H`, per row: computing :math:`e^THe` errs
    by :math:`u(N|e|^T|H||e| + m\||X||e|\|^2)`, (E2) for the two products plus the rounding of
    :math:`X^TX` formed from ``m`` samples (entries err by :math:`mu(|X|^T|X|)_{st}`). ``abs_quad`` is
    :math:`|e|^T|H||e|`; ``data_quad`` is :math:`\||X||e|\|^2` or a bound of it (the certificates use
    :math:`\|X\|_F^2\|e\|^2`, Cauchy-Schwarz on each row of :math:`|X|`, which statistics alone give)."""
    return unit * (N * np.asarray(abs_quad, float) + m * np.asarray(data_quad, float))


def evaluation_allowance(unit: float, abs_terms):
    r"""Rounding of a signed sum of a few terms: ``unit`` times the sum of their absolute values (E1-E2).
    It matters when the terms cancel, e.g. B1's :math:`\frac14\sum_t\delta_t^2D_t - \lambda\|w-q\|^2`,
    exactly 0 at a midpoint (computed: :math:`\pm 10^{-17}`)."""
    return unit * np.asarray(abs_terms, float)


def weight_allowance(unit: float, w_norm, q_norm, L_fro: float, eta_norm, code_norm):
    r"""Rounding allowance of the weights a bound reads (:math:`w - q`, :math:`x_t`), per row: the
    structure allowance plus the grid's rounding slack (R2), which propagates through :math:`L` as
    :math:`\eta` does: :math:`|\eta_t| \le \delta_t(\tfrac12 + \rho_t)`,
    :math:`\rho_t = 5u(|k_t| + |z_t| + 1)` (:func:`rounding_slack`). ``code_norm`` is
    :math:`\|\delta\odot(|k| + |z| + 1)\|` per row."""
    return unit * (w_norm + q_norm + L_fro * (np.asarray(eta_norm, float) + np.asarray(code_norm, float)))


# -- statistics: the rounding of X^T X (E4) -------------------------------------------------------------

GRAM_CHUNK_ROWS = 1024
r"""Rows per float32 product of a chunked Gram matrix (:func:`gram_rounding`): each chunk's
:math:`X_c^TX_c` errs by at most :math:`\gamma_{1024}(u_{32})\approx 6.1\cdot 10^{-5}` of
:math:`|X_c|^T|X_c|` entrywise; smaller chunks tighten that but each adds an ``N x N`` float64 sum."""

FLOAT32_GRAM_EXP = 40
r"""A batch enters a float32 chunked Gram matrix only when its largest magnitude lies in
:math:`[2^{-40}, 2^{40}]` (or it is all zero); other batches are accumulated in float64. Then every
product is at most :math:`2^{80}` and every chunk sum at most :math:`2^{80}\cdot` :data:`GRAM_CHUNK_ROWS`
:math:`< 2^{127}`: no overflow; underflow is carried by :func:`product_underflow`."""


def gamma(k: int, u: float) -> float:
    r""":math:`\gamma_k(u) = ku/(1 - ku)` (Higham, *Accuracy and Stability*, Lemma 3.1): the worst-case
    relative error of ``k`` rounded operations in any order (requires :math:`ku < 1`)."""
    k = int(k)
    if k < 0:
        raise ValueError(f"k must be a nonnegative count; got {k}")
    if k * u >= 1.0:
        raise ValueError(f"gamma_k(u) needs k u < 1; got k = {k}, u = {u:.3g}: use fewer terms per sum")
    return k * u / (1.0 - k * u)


def product_underflow(precision="float32") -> float:
    r"""Largest absolute error of one product whose result underflows (gradual underflow:
    :math:`\mathrm{fl}(xy) = xy(1 + \delta) + \zeta`, :math:`|\zeta| \le` half the smallest subnormal,
    :math:`2^{-150}` in float32, :math:`2^{-1075}` in float64). Sums are exact where they underflow."""
    return 2.0**-150 if precision_name(precision) == "float32" else 2.0**-1075


def gram_rounding(chunk_rows: int, chunks32: int, rows32: int, rows64: int) -> tuple[float, float]:
    r"""(E4) Entrywise error of a Gram matrix :math:`\hat G \approx G = X^TX` accumulated in float64
    from float32 chunk products and float64 row products: ``(rel, abs)`` with

    .. math:: |\hat G_{kl} - G_{kl}| \le \mathrm{rel}\,(|X|^T|X|)_{kl} + \mathrm{abs}.

    Derivation. Entry :math:`(k, l)` is a sum of ``chunks32`` chunk products
    :math:`s_j = \sum_{i\in j}x_{ik}x_{il}` (at most ``chunk_rows`` = :math:`c` rows each, float32
    inputs, computed by a float32 GEMM) and of ``rows64`` float64 products :math:`x_{ik}x_{il}`.
    A float32 inner product of :math:`c` terms, in any order and with or without FMA, errs by at most
    :math:`\gamma_c(u_{32})\sum_{i\in j}|x_{ik}x_{il}|` (Higham, Thm. 3.5 / eq. (3.5)), plus
    :math:`(1 + \gamma_c(u_{32}))\,c\,` :func:`product_underflow` for products that underflow.
    Widening :math:`\hat s_j` to float64 is exact. The float64 sum of the
    :math:`T` = ``chunks32 + rows64`` terms (a float64 product has relative error :math:`u_{64}`), in any
    order, errs by at most :math:`\gamma_T(u_{64})` times the sum of their absolute values, each of which
    is at most :math:`(1 + \gamma_c(u_{32}))` times its exact absolute sum. Altogether

    .. math:: \mathrm{rel} = \gamma_c(u_{32}) + \gamma_T(u_{64})(1 + \gamma_c(u_{32})),\qquad
       \mathrm{abs} = (1 + \gamma_c(u_{32}))(1 + \gamma_T(u_{64}))\,m_{32}\,2^{-150},

    :math:`m_{32}` = ``rows32``; with no float32 chunks, :math:`\gamma_m(u_{64})`. Mirroring the upper
    triangle is exact. No input rounding enters: chunks hold data exact in float32 (float32, float16
    or bfloat16 activations), and float64 batches take the float64 route (``rows64``).
    An orthogonal change of basis :math:`S\to VSV^T` (incoherence) keeps the contracted form
    :func:`gram_statistics_allowance` (it reads :math:`\|X\|_F` and :math:`\|e\|`, both invariant).
    """
    u32, u64 = unit_roundoff("float32"), unit_roundoff("float64")
    g32 = gamma(chunk_rows, u32) if chunks32 else 0.0
    g64 = gamma(chunks32 + rows64, u64)
    rel = g32 + g64 * (1.0 + g32)
    abs_ = (1.0 + g32) * (1.0 + g64) * rows32 * product_underflow("float32")
    return rel, abs_


def gram_statistics_allowance(rel: float, abs_: float, data_sq: float, e_sq, N: int):
    r"""Allowance of a quadratic form :math:`e^T\hat Ge` read through statistics with the error of
    :func:`gram_rounding`, per row: :math:`|e^T(\hat G - G)e| \le \mathrm{rel}\,\||X||e|\|^2 +
    \mathrm{abs}\,(\sum_k|e_k|)^2 \le \mathrm{rel}\,\|X\|_F^2\|e\|^2 + \mathrm{abs}\,N\|e\|^2`
    (Cauchy-Schwarz on each row of :math:`|X|`, and on :math:`\sum_k|e_k|`). ``data_sq`` is
    :math:`\|X\|_F^2`, ``e_sq`` is :math:`\|e\|^2` per row."""
    e_sq = np.asarray(e_sq, float)
    return (rel * float(data_sq) + abs_ * N) * e_sq


# -- rounding onto a grid (R2) -------------------------------------------------------------------

ROUNDING_SLACK = 2.0**-10
r"""Largest rounding error, in steps, that a run may add to :math:`\delta/2` (nearest) or to the
probability of rounding up (stochastic); grids whose codes would exceed it are refused."""


def rounding_slack(code_size, precision="float64"):
    r""":math:`\rho = 5u\,C` for codes of size :math:`C = |k| + |z| + 1` (the error model of rounding).

    Nearest rounding computes :math:`k = \lfloor \mathrm{fl}(\mathrm{fl}(\mathrm{fl}(x/\delta) + z) +
    \tfrac12)\rfloor` and :math:`q = \mathrm{fl}(\delta\,\mathrm{fl}(k - z))`. For an entry that is not
    clipped, :math:`|x/\delta|\le C`, :math:`|x/\delta + z|\le C`, :math:`|x/\delta + z + \tfrac12|\le C`
    and :math:`|k - z|\le C` (codes :math:`|k|\le K`, :math:`C = K + |z| + 1`), so by (E1) each of the
    three sums and the two operations forming ``q`` errs by at most :math:`uC` steps:
    :math:`|x - q| \le \delta(\tfrac12 + 5uC)`. ``floor`` and the clip are exact on integers below
    :math:`2^{p}` (``p`` the significand bits), which :math:`C\le` :func:`max_code` guarantees.
    Stochastic rounding reads :math:`s - \lfloor s\rfloor` with error :math:`3uC`, so the probability
    of rounding up is off by at most that and :math:`|\eta|\le\delta(1 + 5uC)`.
    """
    return 5.0 * unit_roundoff(precision) * np.asarray(code_size, float)


def max_code(precision="float64") -> float:
    r"""Largest code size :math:`C = |k| + |z| + 1` whose rounding slack :math:`5uC` is at most
    :data:`ROUNDING_SLACK`: :math:`\lfloor 2^{-10}/(5u)\rfloor` = 1759218604441
    (:math:`\approx 2^{40.7}`) in float64, 3276 in float32. Every such code is an exact integer
    (:math:`< 2^{53}`, resp. :math:`2^{24}`)."""
    return float(math.floor(ROUNDING_SLACK / (5.0 * unit_roundoff(precision))))


def max_bits(precision="float64") -> int:
    r"""Largest ``bits`` of a min-max grid that :func:`max_code` admits: codes :math:`0..2^b-1` with a
    zero point :math:`z\le 2^b - 1` have :math:`C\le 2^{b+1} - 1` (a symmetric grid, :math:`z=2^{b-1}`,
    has :math:`C\le 1.5\cdot 2^b`): 39 in float64, 10 in float32."""
    limit = max_code(precision)
    b = 1
    while 2.0 ** (b + 2) - 1 <= limit:
        b += 1
    return b


# -- representable range (R1) ------------------------------------------------------------------------

SCALE_EXP = {"float64": 180, "float32": 64}
STEP_MARGIN_EXP = 48


def data_range() -> tuple[float, float]:
    """R1 for ``X`` and ``Xt`` (float64 statistics, whatever the data's dtype)."""
    e = SCALE_EXP["float64"]
    return 2.0**-e, 2.0**e


def weight_range(precision="float64") -> tuple[float, float]:
    """R1 for ``W`` (and the iterates) in the working precision."""
    e = SCALE_EXP["float32" if precision_name(precision) == "float32" else "float64"]
    return 2.0**-e, 2.0**e


def step_range(precision="float64") -> tuple[float, float]:
    """R1 for the grid steps in the working precision."""
    lo, hi = weight_range(precision)
    return lo * 2.0**-STEP_MARGIN_EXP, hi


def lam_range() -> tuple[float, float]:
    """R1 for a nonzero damping ``lam`` (it scales like ``X^T X``)."""
    e = 2 * SCALE_EXP["float64"] + 64
    return 2.0**-e, 2.0**e


def quadratic_range(precision="float64") -> tuple[float, float]:
    r"""R1 for quantities of degree two formed in ``precision``: the diagonal of ``H`` factored in
    float32 (``factor_dtype``), and GPFQ's :math:`\|\tilde X_t\|^2`, :math:`X_t^T\tilde X_t` and state
    products :math:`u^T\tilde X_t` in a float32 run. As ``lam`` in float64; within :math:`2^{\pm100}` in
    float32 (normal range :math:`2^{\pm126}`): nothing overflows or is subnormal, and pivots down to
    the singularity threshold :math:`N\epsilon\max_tH_{tt}` stay normal for :math:`N` up to :math:`2^{24}`."""
    if precision_name(precision) == "float32":
        return 2.0**-100, 2.0**100
    return lam_range()


# The fix a range error proposes for each input: the rescaling under which Q is unchanged or scales exactly.
HOMOGENEOUS_FIX = {
    "X": "scale X (and Xt) by a power of two, 2.0**k: Q is unchanged when lam is scaled by 4.0**k",
    "W": "scale W and the grid step by the same power of two, 2.0**k: Q scales by exactly 2.0**k",
    "lam": "lam scales like X^T X: rescale X and lam together (X * 2.0**k, lam * 4.0**k)",
}


def check_magnitude(name: str, largest: float, bounds: tuple[float, float], fix: str | None = None,
                    what: str | None = None, precision: str = "float64") -> None:
    """Refuse ``largest`` (the largest magnitude of argument ``name``) outside ``bounds`` (R1), saying
    how to rescale exactly; zero (an all-zero array has no scale) passes."""
    lo, hi = bounds
    largest = float(largest)
    if largest == 0.0 or lo <= largest <= hi:
        return
    fix = fix or HOMOGENEOUS_FIX.get(name.split()[0], "rescale it by a power of two")
    what = what or f"max |{name}|"
    if not largest < hi:  # also NaN and inf, which the finiteness checks report first
        raise ValueError(
            f"{name} is too large: {what} = {largest:.4g} exceeds 2**{math.log2(hi):.0f} ~ {hi:.3g}; "
            "the statistics and certificates (degree four in the scales, e.g. ||X(w-q)||^2) "
            f"would overflow {precision}. Fix: {fix}"
        )
    raise ValueError(
        f"{name} is too small: {what} = {largest:.4g} is below 2**-{-math.log2(lo):.0f} ~ {lo:.3g}; "
        "the statistics and certificates (degree four in the scales) would underflow into the "
        f"subnormal range of {precision}, where rounding is no longer relative. Fix: {fix}"
    )
