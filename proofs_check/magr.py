r"""MagR's duality-gap certificate: the algebra behind ``pt.magr``'s ``gap`` (docs/theory.md, M1).

With :math:`g(v) = \frac12(v-w)^T\hat G(v-w)`, :math:`e = v - w`, :math:`r = \hat Ge` and the dual point
:math:`u = -sr`:

* :math:`g^*(\hat Gz) = z^T\hat Gw + \frac12 z^T\hat Gz` (the supremum of :math:`y^Tv - g(v)` over
  :math:`v`, attained at :math:`v = w + z`), so :math:`g^*(-u) = s\,r^Tw + \frac{s^2}2e^T\hat Ge`;
* the gap :math:`P(v) - D(u)` is then :math:`\frac12e^T\hat Ge + \alpha\,\mathrm{pen}(v) + s\,r^Tw +
  \frac{s^2}2e^T\hat Ge`, for the per-row penalty :math:`\|v\|_\infty` and the group sum alike;
* at a point satisfying the optimality conditions (:math:`-r \in \alpha\,\partial\,\mathrm{pen}(v)`:
  :math:`\|r_g\|_1 \le \alpha` and :math:`-r_g^Tv_g = \alpha\|v_g\|_\infty` in every group), :math:`s = 1`
  and the gap is exactly 0.

Checked on a symbolic 3x3 :math:`\hat G = B^TB` (positive semidefinite by construction) and symbolic
:math:`w, v`. The negative control is a gap formula with :math:`s` in place of :math:`s^2`, which the
check rejects.
"""

from __future__ import annotations

import sympy as sp

from .registry import Verdict, expect_all, register

__all__ = ["conjugate", "gap_formula", "gap_formula_claim", "gap_zero_at_optimum"]


def _setup():
    b = sp.symbols("b0:9", real=True)
    B = sp.Matrix(3, 3, b)
    G = B.T * B
    w = sp.Matrix(sp.symbols("w0:3", real=True))
    v = sp.Matrix(sp.symbols("v0:3", real=True))
    return G, w, v


@register("M1.conjugate", "g*(G z) = z^T G w + z^T G z / 2 for g(v) = (v-w)^T G (v-w) / 2, at v = w + z", "M1")
def conjugate() -> Verdict:
    r"""The conjugate of the quadratic at a point of the range: the stationarity of :math:`y^Tv - g(v)` at
    :math:`v = w + z` (gradient :math:`y - G(v - w) = 0`) and its value, symbolically."""
    G, w, _ = _setup()
    z = sp.Matrix(sp.symbols("z0:3", real=True))
    y = G * z
    v = w + z
    value = (y.T * v)[0] - ((v - w).T * G * (v - w))[0] / 2
    grad = y - G * (v - w)
    claims = [("stationary at v = w + z", all(sp.expand(c) == 0 for c in grad)),
              ("value z^T G w + z^T G z / 2", sp.expand(value - (z.T * G * w)[0] - (z.T * G * z)[0] / 2) == 0)]
    return expect_all(claims, "g*(Gz) = z^T G w + z^T G z / 2 at its maximizer v = w + z")


def gap_formula_claim(power: int) -> Verdict:
    r"""``P(v) - D(-s r)`` against the implemented gap with :math:`s^{power}` in its last term (the module's
    formula has power 2; the tests also pass 1, which must fail)."""
    G, w, v = _setup()
    s, alpha, pen = sp.symbols("s alpha pen", real=True)
    e = v - w
    r = G * e
    quad = (e.T * G * e)[0]
    primal = quad / 2 + alpha * pen
    # D(u) = -g*(-u) - h*(u) with u = -s r feasible (h* = 0 there); -u = G (s e): conjugate at z = s e
    z = s * e
    dual = -((z.T * G * w)[0] + (z.T * G * z)[0] / 2)
    implemented = quad / 2 + alpha * pen + s * (r.T * w)[0] + s**power * quad / 2
    ok = sp.expand(primal - dual - implemented) == 0
    return expect_all([("P(v) - D(-s r) equals the implemented gap", ok)],
                      "gap = e^T G e / 2 + alpha pen(v) + s r^T w + s^2 e^T G e / 2")


@register("M1.gap", "P(v) - D(-s r) = e^T G e/2 + alpha pen(v) + s r^T w + s^2 e^T G e/2 (any penalty pen "
          "whose conjugate is an indicator; -s r feasible)", "M1")
def gap_formula() -> Verdict:
    return gap_formula_claim(2)


@register("M1.exact", "at v satisfying the optimality conditions, s = 1 and the gap is 0 (per row; and per "
          "group, two groups)", "M1")
def gap_zero_at_optimum() -> Verdict:
    r"""At an optimum :math:`-r \in \alpha\,\partial\,\mathrm{pen}(v)`: then :math:`-r^Tv = \alpha\,
    \mathrm{pen}(v)` (the subgradient identity, imposed here by eliminating :math:`\alpha\,\mathrm{pen}`)
    and :math:`s = 1`, so the gap is :math:`e^T\hat Ge - r^Tv + r^Tw = e^T\hat Ge - r^Te = 0`. Checked
    for one group and for two groups (:math:`\sum_g -r_g^Tv_g = \alpha\sum_g\|v_g\|_\infty`)."""
    G, w, v = _setup()
    e = v - w
    r = G * e
    quad = (e.T * G * e)[0]
    claims = []
    # One group: alpha pen(v) = -r^T v at the optimum.
    alpha_pen = -(r.T * v)[0]
    gap = quad / 2 + alpha_pen + (r.T * w)[0] + quad / 2
    claims.append(("one group: gap = 0 at the optimum", sp.expand(gap) == 0))
    # Two groups {0, 1} and {2}: alpha (||v_a|| + ||v_b||) = -(r_a^T v_a + r_b^T v_b) = -r^T v again.
    alpha_pen2 = -(r[0] * v[0] + r[1] * v[1]) - r[2] * v[2]
    gap2 = quad / 2 + alpha_pen2 + (r.T * w)[0] + quad / 2
    claims.append(("two groups: gap = 0 at the optimum", sp.expand(gap2) == 0))
    return expect_all(claims, "the certificate is exact: gap = 0 at every optimum")
