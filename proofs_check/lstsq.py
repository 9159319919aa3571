r"""The OPTQ step is a least-squares minimizer (THEORY.md A2).

With :math:`a = \hat X_t` and :math:`B = \hat X_{>t}`, one OPTQ step replaces the
unquantized tail :math:`w_{>t}` by

.. math::

    v^\star = w_{>t} + \eta_t (B^T B)^{-1} B^T a ,\qquad \eta_t = x_t - q_t ,

and claims :math:`v^\star = \arg\min_v \|a x_t + B w_{>t} - a q_t - B v\|^2`.
The checks verify, with every entry a free symbol,

* the exact expansion :math:`f(v) - f(v^\star) = (v - v^\star)^T B^T B (v - v^\star)`
  (so the gradient vanishes at :math:`v^\star` and :math:`v^\star` is the global
  minimizer whenever :math:`B^T B \succ 0`);
* Cauchy-Binet, :math:`\det(B^TB) = \sum_{i<j} (b_{i1} b_{j2} - b_{i2} b_{j1})^2`, and
  :math:`(B^TB)_{11} = \|b_1\|^2`: by Sylvester's criterion :math:`B^TB \succ 0` iff
  :math:`B` has full column rank;
* for the ridge-augmented :math:`\hat X = [X; \sqrt{\lambda} I]` the step vector is
  :math:`\hat X_{>t}^+ \hat X_t = H_{>t,>t}^{-1} H_{>t,t}` with :math:`H = X^TX + \lambda I`,
  and :math:`v^T H v = \|Xv\|^2 + \lambda \|v\|^2` (so :math:`H \succ 0` for :math:`\lambda > 0`).
"""

from __future__ import annotations

import itertools

import sympy as sp

from .algebra import dm, fraction_field, general_matrix, inverse, symbols
from .registry import Verdict, expect_all, register, verdict

__all__ = ["ls_step_hessian_pd", "ls_step_is_minimizer", "ls_step_ridge"]


@register(
    "A2.ls_step",
    "v* = w_{>t} + eta_t (B^T B)^{-1} B^T a has zero gradient and f(v) - "
    "f(v*) = (v-v*)^T B^T B (v-v*) (a, B 4x2 symbolic)",
    "A2",
)
def ls_step_is_minimizer() -> Verdict:
    r"""Exact quadratic expansion of the OPTQ least-squares objective around the step.

    The objective :math:`f(v) = \|a x_t + B w_{>t} - a q_t - B v\|^2` is quadratic, so
    :math:`f(v) = f(p) + \nabla f(p)^T (v-p) + (v-p)^T B^TB (v-p)` for every point ``p``
    (verified with ``p`` symbolic).  At :math:`p = v^\star` the gradient
    :math:`-2B^T(a\eta_t + B(w_{>t} - v^\star))` vanishes: with
    :math:`(B^TB)^{-1} = \mathrm{adj}(B^TB)/\det(B^TB)` this is the polynomial identity
    :math:`B^T(\det(B^TB)\, a - B\,\mathrm{adj}(B^TB) B^T a) = 0`.

    Returns
    -------
    Verdict
        Passed iff both polynomial identities hold.
    """
    a = sp.Matrix(symbols("a", 4))
    b = general_matrix(4, 2, "b")
    w_rest = sp.Matrix(symbols("w", 2))
    v = sp.Matrix(symbols("v", 2))
    p = sp.Matrix(symbols("p", 2))
    x_t, q_t = sp.symbols("x_t q_t", real=True)
    gram = b.T * b

    def objective(vec: sp.Matrix) -> sp.Expr:
        res = a * x_t + b * w_rest - a * q_t - b * vec
        return (res.T * res)[0, 0]

    def gradient(vec: sp.Matrix) -> sp.Matrix:
        return -2 * b.T * (a * x_t + b * w_rest - a * q_t - b * vec)

    taylor = sp.expand(
        objective(v) - objective(p) - (gradient(p).T * (v - p))[0, 0] - ((v - p).T * gram * (v - p))[0, 0]
    )
    # det * grad(v*) with v* = w + eta adj(G) B^T a / det: a polynomial vector.
    det, adj = gram.det(), gram.adjugate()
    scaled_grad = (-2 * b.T * (a * (x_t - q_t) * det - b * adj * b.T * a * (x_t - q_t))).expand()
    bad = [f"Taylor remainder = {taylor}"] if taylor != 0 else []
    bad += [f"det * grad_{i}(v*) = {scaled_grad[i]}" for i in range(2) if scaled_grad[i] != 0]
    return verdict(
        bad, "exact quadratic Taylor expansion; gradient at v* is identically 0, so f(v)-f(v*) = |B(v-v*)|^2"
    )


@register(
    "A2.ls_hessian",
    "Hessian 2 B^T B is PD iff B has full column rank: det(B^T B) = sum of squared 2x2 minors (Cauchy-Binet)",
    "A2",
)
def ls_step_hessian_pd() -> Verdict:
    r"""Cauchy-Binet for a symbolic :math:`4\times 2` matrix.

    Returns
    -------
    Verdict
        Passed iff :math:`\det(B^TB)` equals the sum of squared :math:`2\times 2` minors
        and :math:`(B^TB)_{11} = \|b_1\|^2`.
    """
    b = general_matrix(4, 2, "b")
    gram = b.T * b
    minors = sum((b[i, 0] * b[j, 1] - b[i, 1] * b[j, 0]) ** 2 for i, j in itertools.combinations(range(4), 2))
    det_ok = sp.expand(gram.det() - minors) == 0
    corner_ok = sp.expand(gram[0, 0] - sum(b[i, 0] ** 2 for i in range(4))) == 0
    return expect_all(
        [("det(B^T B) = sum of squared minors", det_ok), ("(B^T B)_11 = ||b_1||^2", corner_ok)],
        "det(B^T B) = sum_{i<j} minor_ij^2 >= 0, = 0 iff rank B < 2; with (B^TB)_11 > 0 Sylvester gives PD",
    )


@register(
    "A2.ls_step_ridge",
    "with Xh=[X; sqrt(lam) I]: Xh_{>t}^+ Xh_t = H_{>t,>t}^{-1} H_{>t,t}, H = X^T X + lam I (X 2x3 symbolic)",
    "A2",
)
def ls_step_ridge() -> Verdict:
    r"""The augmented least-squares step only needs :math:`H` (every t, symbolic X and lambda).

    Returns
    -------
    Verdict
        Passed iff :math:`(\hat X_{>t}^T\hat X_{>t})^{-1}\hat X_{>t}^T \hat X_t
        = H_{>t,>t}^{-1}H_{>t,t}` for every ``t`` and
        :math:`v^T H v = \|Xv\|^2 + \lambda\|v\|^2`.
    """
    m, n = 2, 3
    x = general_matrix(m, n, "x")
    s = sp.Symbol("s", positive=True)  # s = sqrt(lam)
    xh = x.col_join(s * sp.eye(n))
    h = x.T * x + s**2 * sp.eye(n)
    v = sp.Matrix(symbols("v", n))
    field = fraction_field(xh, v)
    xhd, hd = dm(xh, field), dm(h, field)
    bad: list[str] = []
    for t in range(n - 1):
        bm = xhd[:, t + 1 :]
        pinv_step = inverse(bm.transpose() * bm) * (bm.transpose() * xhd[:, t : t + 1])
        h_step = inverse(hd[t + 1 :, t + 1 :]) * hd[t + 1 :, t : t + 1]
        if pinv_step != h_step:
            bad.append(f"t={t + 1}: pseudo-inverse step != H-step")
    quad = sp.expand((v.T * h * v)[0, 0] - ((x * v).T * (x * v))[0, 0] - s**2 * (v.T * v)[0, 0])
    if quad != 0:
        bad.append(f"v^T H v - ||Xv||^2 - lam||v||^2 = {quad}")
    return verdict(bad, "step vectors agree for t = 1, 2; v^T H v = ||Xv||^2 + lam ||v||^2")
