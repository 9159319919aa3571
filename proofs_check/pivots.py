r"""Pivot identities of THEORY.md I1.

For SPD :math:`H` (generic symbolic, :math:`N = 3, 4`) and every column ``t``:

.. math::

    D_t = (U_H)_{tt}^2
        = H_{tt} - H_{t,>t} H_{>t,>t}^{-1} H_{>t,t}
        = \frac{1}{[(H_{\ge t,\ge t})^{-1}]_{11}}
        = C_{tt}^{-2},\qquad \prod_t D_t = \det H,

where :math:`H = U_H U_H^T` (:math:`U_H` upper) and :math:`H^{-1} = CC^T` (:math:`C` lower).
With :math:`H = X^TX + \lambda I` (symbolic ``X`` and :math:`\lambda`):

.. math::

    D_t = \lambda + \min_c \|X_t - X_{>t}c\|^2 + \lambda\|c\|^2
        = \|P^\perp_{\mathrm{span}(\hat X_{>t})} \hat X_t\|^2 ,\qquad
    \frac{\partial D_t}{\partial\lambda} = 1 + \|c^\star\|^2 \ge 1 ,

with :math:`c^\star = (X_{>t}^TX_{>t} + \lambda I)^{-1}X_{>t}^TX_t`.  The bounds
:math:`\lambda \le D_t \le \|X_t\|^2 + \lambda` follow from the least-squares form
(the objective is :math:`\ge 0` and equals :math:`\|X_t\|^2` at :math:`c = 0`).

Two routes to :math:`C` are used.  *Direct*: sympy's Cholesky factor of
:math:`H^{-1}` (generic :math:`N = 3`; for :math:`N = 4` with :math:`H = RR^T`, because
the direct route on a generic 4x4 symmetric matrix costs minutes of gcd work).
*LDL*: a candidate :math:`(L, D)` from the square-root-free UL factorization of
:math:`H`, certified by the exact identity :math:`L^THL = \mathrm{diag}(D)` with
:math:`L` unit lower; uniqueness of :math:`H^{-1} = LD^{-1}L^T` then gives
:math:`C = LD^{-1/2}`, :math:`D_t = C_{tt}^{-2}` (generic :math:`N = 3, 4`).
"""

from __future__ import annotations

import sympy as sp

from .algebra import (
    dm,
    el,
    fraction_field,
    general_matrix,
    inverse,
    reversed_cholesky,
    schur_complement,
    show,
    solve,
    unit_lower_inverse_factor,
)
from .instances import SpdInstance, generic_spd, upper_param_spd
from .registry import Verdict, register, verdict

__all__ = [
    "cholesky_pivot",
    "det_product",
    "direct_inverse_cholesky",
    "inverse_corner",
    "inverse_ldl",
    "least_squares_form",
    "monotone_in_lambda",
    "projection_form",
]


def cholesky_pivot(inst: SpdInstance) -> Verdict:
    r"""Check :math:`(U_H)_{tt}^2 = D_t` (Schur complement) for every ``t``.

    Parameters
    ----------
    inst : SpdInstance
        Symbolic SPD instance.

    Returns
    -------
    Verdict
        Passed iff the squared diagonal of the UL Cholesky factor equals the Schur complements.
    """
    u_h = reversed_cholesky(inst.h)
    bad = []
    for t in range(inst.n):
        lhs = el(inst.field, sp.together(u_h[t, t] ** 2))
        if lhs != inst.pivots[t]:
            bad.append(f"t={t + 1}: U_tt^2 - Schur = {show(inst.field, lhs - inst.pivots[t])}")
    return verdict(bad, f"U_H[t,t]^2 = H_tt - H_t,>t H_>t,>t^-1 H_>t,t for t = 1..{inst.n}")


def inverse_corner(inst: SpdInstance) -> Verdict:
    r"""Check :math:`D_t \, [(H_{\ge t,\ge t})^{-1}]_{11} = 1` for every ``t``.

    Parameters
    ----------
    inst : SpdInstance
        Symbolic SPD instance.

    Returns
    -------
    Verdict
        Passed iff every pivot is the reciprocal of the corner of the trailing inverse.
    """
    bad = []
    for t in range(inst.n):
        corner = inverse(inst.hd[t:, t:])[0, 0].element
        if corner * inst.pivots[t] != inst.field.one:
            bad.append(f"t={t + 1}: D_t * corner = {show(inst.field, corner * inst.pivots[t])}")
    return verdict(bad, f"1/[(H_>=t,>=t)^-1]_11 = D_t for t = 1..{inst.n}")


def direct_inverse_cholesky(inst: SpdInstance) -> Verdict:
    r"""Check :math:`C_{tt}^{-2} = D_t` with :math:`C` sympy's Cholesky factor of :math:`H^{-1}`.

    Parameters
    ----------
    inst : SpdInstance
        Symbolic SPD instance.

    Returns
    -------
    Verdict
        Passed iff the squared reciprocal diagonal of the Cholesky factor of the
        inverse equals the Schur complements.
    """
    h_inv = inverse(inst.hd).to_Matrix()
    c = h_inv.cholesky(hermitian=False)
    bad = []
    for t in range(inst.n):
        lhs = el(inst.field, sp.together(c[t, t] ** -2))
        if lhs != inst.pivots[t]:
            bad.append(f"t={t + 1}: C_tt^-2 - D_t = {show(inst.field, lhs - inst.pivots[t])}")
    return verdict(bad, f"H^-1 = C C^T (sympy Cholesky): C_tt^-2 = D_t for t = 1..{inst.n}")


def inverse_ldl(inst: SpdInstance) -> Verdict:
    r"""Certify :math:`H^{-1} = L D^{-1} L^T` with :math:`L` unit lower and :math:`D_t` the Schur complements.

    Parameters
    ----------
    inst : SpdInstance
        Symbolic SPD instance.

    Returns
    -------
    Verdict
        Passed iff :math:`L` is unit lower triangular, :math:`L^THL = \mathrm{diag}(D)` and
        the diagonal factor equals the Schur complements.
    """
    lo, d = unit_lower_inverse_factor(inst.hd)
    field, n = inst.field, inst.n
    bad = []
    for i in range(n):
        for j in range(i, n):
            want = field.one if i == j else field.zero
            if lo[i, j].element != want:
                bad.append(f"L[{i + 1},{j + 1}] = {show(field, lo[i, j].element)} (not unit lower)")
    gram = lo.transpose() * inst.hd * lo
    for i in range(n):
        for j in range(n):
            want = d[i] if i == j else field.zero
            if gram[i, j].element != want:
                bad.append(f"(L^T H L)[{i + 1},{j + 1}] wrong")
    bad += [f"d_{t + 1} != Schur" for t in range(n) if d[t] != inst.pivots[t]]
    return verdict(bad, "L unit lower, L^T H L = diag(D), D = Schur complements => C = L D^-1/2, C_tt^-2 = D_t")


def det_product(inst: SpdInstance) -> Verdict:
    r"""Check :math:`\prod_t D_t = \det H`.

    Parameters
    ----------
    inst : SpdInstance
        Symbolic SPD instance.

    Returns
    -------
    Verdict
        Passed iff the product of the pivots is the determinant.
    """
    prod = inst.field.one
    for d in inst.pivots:
        prod *= d
    det = inst.hd.det()
    bad = [] if prod == det else [f"prod D - det H = {show(inst.field, prod - det)}"]
    return verdict(bad, "prod_t D_t = det H")


for _n in (3, 4):
    register(
        f"I1.cholesky_pivot[N={_n}]",
        "D_t = U_H[t,t]^2 (H = U_H U_H^T, U_H upper) equals the Schur "
        "complement H_tt - H_t,>t H_>t,>t^-1 H_>t,t",
        "I1",
    )(lambda _n=_n: cholesky_pivot(generic_spd(_n)))
    register(
        f"I1.inverse_corner[N={_n}]",
        "D_t = 1 / [(H_>=t,>=t)^-1]_11 for every t (generic symmetric H)",
        "I1",
    )(lambda _n=_n: inverse_corner(generic_spd(_n)))
    register(
        f"I1.inverse_ldl[N={_n}]",
        "H^-1 = L D^-1 L^T, L unit lower, D_t = Schur complement; hence L = C diag(C)^-1, D_t = C_tt^-2",
        "I1",
    )(lambda _n=_n: inverse_ldl(generic_spd(_n)))
    register(
        f"I1.det[N={_n}]",
        "prod_t D_t = det H (generic symmetric H)",
        "I1",
    )(lambda _n=_n: det_product(generic_spd(_n)))

register(
    "I1.inverse_cholesky[N=3]",
    "H^-1 = C C^T with C sympy's lower Cholesky factor: C_tt^-2 = D_t (generic symmetric H)",
    "I1",
)(lambda: direct_inverse_cholesky(generic_spd(3)))
register(
    "I1.inverse_cholesky[N=4,H=RR^T]",
    "H^-1 = C C^T with C sympy's lower Cholesky factor: C_tt^-2 = D_t (H = R R^T, R generic upper)",
    "I1",
)(lambda: direct_inverse_cholesky(upper_param_spd(4)))


def _ridge_instance(m: int, n: int) -> tuple[sp.Matrix, sp.Symbol, sp.Matrix]:
    x = general_matrix(m, n, "x")
    lam = sp.Symbol("lam", positive=True)
    return x, lam, x.T * x + lam * sp.eye(n)


@register(
    "I1.least_squares[m=3,N=3]",
    "D_t = lam + min_c ||X_t - X_>t c||^2 + lam ||c||^2, attained at c* (exact quadratic expansion)",
    "I1",
)
def least_squares_form() -> Verdict:
    r"""Least-squares form of the pivots for symbolic :math:`X \in \mathbb{R}^{3\times 3}` and :math:`\lambda`.

    For every ``t`` with a nonempty tail, with :math:`M = X_{>t}^TX_{>t} + \lambda I` and
    :math:`c^\star = M^{-1}X_{>t}^TX_t`, verifies exactly

    * :math:`g(c) - g(c^\star) = (c - c^\star)^T M (c - c^\star)` for symbolic ``c``, where
      :math:`g(c) = \|X_t - X_{>t}c\|^2 + \lambda\|c\|^2` (so :math:`c^\star` is the minimizer);
    * :math:`\lambda + g(c^\star) = D_t`; and :math:`g(0) = \|X_t\|^2`, so
      :math:`\lambda \le D_t \le \|X_t\|^2 + \lambda`.

    Returns
    -------
    Verdict
        Passed iff all identities hold for ``t = 1, 2, 3``.
    """
    m, n = 3, 3
    x, lam, h = _ridge_instance(m, n)
    cvec = sp.Matrix(sp.symbols(f"c1:{n}", real=True))
    field = fraction_field(x, lam, cvec)
    xd, hd, lm = dm(x, field), dm(h, field), el(field, lam)
    bad = []
    for t in range(n):
        d_t = schur_complement(hd, t)
        if t == n - 1:
            norm2 = (xd[:, t : t + 1].transpose() * xd[:, t : t + 1])[0, 0].element
            if d_t != lm + norm2:
                bad.append("last column: D_N != ||X_N||^2 + lam")
            continue
        k = n - 1 - t
        tail, xt = xd[:, t + 1 :], xd[:, t : t + 1]
        mat = tail.transpose() * tail + dm(sp.eye(k), field) * lm
        cstar = solve(mat, tail.transpose() * xt)
        cv = dm(cvec[:k, :], field)

        def g(c: object, tail: object = tail, xt: object = xt) -> object:
            res = xt - tail * c
            return (res.transpose() * res)[0, 0].element + lm * (c.transpose() * c)[0, 0].element

        diff = cv - cstar
        if g(cv) - g(cstar) != (diff.transpose() * mat * diff)[0, 0].element:
            bad.append(f"t={t + 1}: g(c) - g(c*) is not (c-c*)^T M (c-c*)")
        if lm + g(cstar) != d_t:
            bad.append(f"t={t + 1}: lam + g(c*) - D_t = {show(field, lm + g(cstar) - d_t)}")
        zero = dm(sp.zeros(k, 1), field)
        if g(zero) != (xt.transpose() * xt)[0, 0].element:
            bad.append(f"t={t + 1}: g(0) != ||X_t||^2")
    return verdict(bad, "exact for t = 1..3: minimizer c*, D_t = lam + g(c*), g(0) = ||X_t||^2 (bounds)")


@register(
    "I1.projection[m=2,N=3]",
    "D_t = || proj onto span(Xh_>t)^perp of Xh_t ||^2 with Xh = [X; sqrt(lam) I] (rank-deficient X: m < N)",
    "I1",
)
def projection_form() -> Verdict:
    r"""Projection form of the pivots, :math:`\hat X = [X; sI]`, :math:`s^2 = \lambda`, symbolic ``X`` (2x3).

    Returns
    -------
    Verdict
        Passed iff
        :math:`\|\hat X_t - \hat X_{>t}(\hat X_{>t}^T\hat X_{>t})^{-1}\hat X_{>t}^T\hat X_t\|^2 = D_t`
        for every ``t``.
    """
    m, n = 2, 3
    x = general_matrix(m, n, "x")
    s = sp.Symbol("s", positive=True)
    xh = x.col_join(s * sp.eye(n))
    field = fraction_field(xh)
    xhd = dm(xh, field)
    hd = xhd.transpose() * xhd
    bad = []
    for t in range(n):
        a = xhd[:, t : t + 1]
        if t < n - 1:
            b = xhd[:, t + 1 :]
            a = a - b * solve(b.transpose() * b, b.transpose() * a)
        if (a.transpose() * a)[0, 0].element != schur_complement(hd, t):
            bad.append(f"t={t + 1}: ||P_perp Xh_t||^2 != D_t")
    return verdict(bad, "||P_perp Xh_t||^2 = D_t for t = 1..3 (X 2x3, lam = s^2 symbolic)")


@register(
    "I1.monotone_lam[m=3,N=3]",
    "d D_t / d lam = 1 + ||c*||^2 >= 1 (envelope theorem), so each D_t is nondecreasing in lam",
    "I1",
)
def monotone_in_lambda() -> Verdict:
    r"""Envelope-theorem derivative of the pivots in :math:`\lambda` for symbolic ``X`` (3x3).

    Returns
    -------
    Verdict
        Passed iff :math:`\partial D_t/\partial\lambda = 1 + c^{\star T}c^\star` for every ``t``
        (:math:`c^\star = 0` for the last column).
    """
    m, n = 3, 3
    x, lam, h = _ridge_instance(m, n)
    field = fraction_field(x, lam)
    hd = dm(h, field)
    bad = []
    for t in range(n):
        deriv = schur_complement(hd, t).diff(el(field, lam))
        if t < n - 1:
            cstar = solve(hd[t + 1 :, t + 1 :], hd[t + 1 :, t : t + 1])
            want = field.one + (cstar.transpose() * cstar)[0, 0].element
        else:
            want = field.one
        if deriv != want:
            bad.append(f"t={t + 1}: dD/dlam - (1 + |c*|^2) = {show(field, deriv - want)}")
    return verdict(bad, "dD_t/dlam = 1 + ||c*||^2 for t = 1..3")
