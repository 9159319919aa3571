r"""Rounding onto a general finite alphabet (docs/theory.md section 7, "General finite alphabets").

A point :math:`y` inside the alphabet interval :math:`[a, b]` (length :math:`g = b - a`) is written
:math:`y = a + \theta g`, :math:`\theta\in[0,1]`. Then

* nearest rounding has :math:`|\eta| = \min(\theta, 1-\theta)\,g \le g/2` (equality at :math:`\theta=1/2`);
* stochastic rounding (:math:`b` w.p. :math:`\theta`) has :math:`E q = y`,
  :math:`\mathrm{Var}\,q = E\eta^2 = \theta(1-\theta)g^2 = (y-a)(b-y) \le g^2/4`, and
  :math:`\eta\in[y-b, y-a]`, an interval of length :math:`g`;
* with :math:`g_t \le G` and :math:`D_t \ge 0`:
  :math:`\frac14\sum_t g_t^2 D_t \le \frac14\sum_t G^2 D_t`, so every bound proved with the step
  :math:`\delta` (which reads only :math:`|\eta_t|\le\delta/2`, or :math:`E[\eta_t|\mathcal F] = 0` with
  :math:`\eta_t` in an interval of length :math:`\le\delta`) holds with :math:`\delta = G`.

The variance is computed as an exact two-outcome expectation, so a wrong formula fails:
:func:`variance_claim` is fed a deliberately wrong claim by ``ALPH.negative`` (and by the tests).
"""

from __future__ import annotations

import sympy as sp

from .registry import Verdict, register, verdict

__all__ = ["nearest_claim", "variance_claim"]

A = sp.Symbol("a", real=True)
G = sp.Symbol("g", positive=True)
TH = sp.Symbol("theta", nonnegative=True)  # y = a + theta g, theta in [0, 1]
S = sp.Symbol("s", nonnegative=True)  # 1/2 - theta or theta - 1/2, a nonnegative slack


def _outcomes():
    """``(probability, q)`` of stochastic rounding of ``y = a + theta g`` onto ``{a, a + g}``."""
    return [(1 - TH, A), (TH, A + G)]


def _expect(f) -> sp.Expr:
    q = sp.Symbol("q", real=True)
    return sp.expand(sum(p * f(q).subs(q, v) for p, v in _outcomes()))


def variance_claim(claimed: sp.Expr) -> Verdict:
    """``Var q`` from the two outcomes against ``claimed`` (in ``a``, ``g``, ``theta``)."""
    y = A + TH * G
    mean = _expect(lambda q: q)
    var = sp.simplify(_expect(lambda q: q**2) - mean**2)
    bad = []
    if sp.simplify(mean - y) != 0:
        bad.append(f"E q - y = {sp.simplify(mean - y)}")
    if sp.simplify(var - claimed) != 0:
        bad.append(f"Var q = {sp.factor(var)}, claimed {claimed}")
    return verdict(bad, f"E q = y, Var q = {sp.factor(var)}")


def nearest_claim(bound: sp.Expr) -> Verdict:
    r"""``|eta| <= bound`` for nearest rounding on both halves of the interval: with
    :math:`\theta = 1/2 - s` the error is :math:`\theta g` (round down), with :math:`\theta = 1/2 + s`
    it is :math:`(1-\theta) g` (round up); ``bound - error`` must be a polynomial in ``s, g`` with
    nonnegative coefficients (so it is >= 0 for all ``s, g >= 0``), and 0 at ``s = 0`` (attained)."""
    bad = []
    for err in ((sp.Rational(1, 2) - S) * G, (1 - (sp.Rational(1, 2) + S)) * G):
        diff = sp.Poly(sp.expand(bound - err), S, G)
        if any(c < 0 for c in diff.coeffs()):
            bad.append(f"bound - |eta| = {diff.as_expr()} is not >= 0 for all s, g >= 0")
        if sp.simplify(diff.as_expr().subs(S, 0)) != 0:
            bad.append(f"not attained at the midpoint: {diff.as_expr().subs(S, 0)}")
    return verdict(bad, "|eta| <= g/2, equality at the midpoint")


@register("ALPH.nearest", "nearest rounding on an alphabet interval: |eta| <= g/2, attained at the midpoint",
          "B1 (alphabets)")
def nearest() -> Verdict:
    return nearest_claim(G / 2)


@register("ALPH.stochastic", "stochastic rounding on an alphabet interval: E q = y, Var q = (y-a)(b-y) "
          "<= g^2/4, eta in an interval of length g", "B3 B4 B5 (alphabets)")
def stochastic() -> Verdict:
    y = A + TH * G
    b = A + G
    var = variance_claim((y - A) * (b - y))
    # g^2/4 - (y - a)(b - y) = (y - (a + b)/2)^2
    gap = sp.expand(G**2 / 4 - (y - A) * (b - y) - (y - (A + b) / 2) ** 2)
    # eta = y - q takes the values y - a and y - b: the interval [y - b, y - a] has length g
    length = sp.simplify((y - A) - (y - b) - G)
    bad = [] if var.passed else [var.detail]
    bad += [] if gap == 0 else [f"g^2/4 - Var != (y - mid)^2: {gap}"]
    bad += [] if length == 0 else [f"range of eta has length {length} + g"]
    return verdict(bad, "E q = y; Var = (y-a)(b-y) = g^2/4 - (y - mid)^2; eta in [y-b, y-a]")


@register("ALPH.largest_gap", "(1/4) sum_t g_t^2 D_t <= (1/4) sum_t G^2 D_t for g_t <= G, D_t >= 0 (N = 4)",
          "B1 B3 (alphabets)")
def largest_gap() -> Verdict:
    N = 4
    g = sp.symbols(f"g0:{N}", positive=True)
    h = sp.symbols(f"h0:{N}", nonnegative=True)  # G = g_t + h_t
    D = sp.symbols(f"D0:{N}", nonnegative=True)
    bad = []
    for t in range(N):
        Gt = g[t] + h[t]
        diff = sp.Poly(sp.expand(sp.Rational(1, 4) * (Gt**2 - g[t] ** 2) * D[t]), *g, *h, *D)
        if any(c < 0 for c in diff.coeffs()):
            bad.append(f"term {t}: {diff.as_expr()}")
    # and the local form of B1: sum_t (g_t^2/4 - eta_t^2) D_t >= 0 with |eta_t| = (1/2 - s_t) g_t
    s = sp.symbols(f"s0:{N}", nonnegative=True)
    local = sp.expand(sum((g[t] ** 2 / 4 - ((sp.Rational(1, 2) - s[t]) * g[t]) ** 2) * D[t] for t in range(N)))
    # = sum_t (s_t - s_t^2) g_t^2 D_t: nonnegative for s_t in [0, 1/2]; substitute s_t = u_t / (1 + 2 u_t)
    u = sp.symbols(f"u0:{N}", nonnegative=True)
    sub = sp.together(local.subs({s[t]: u[t] / (1 + 2 * u[t]) for t in range(N)}))
    num, _den = sp.fraction(sub)  # the denominator is a product of (1 + 2 u_t) > 0
    if any(c < 0 for c in sp.Poly(sp.expand(num), *u, *g, *D).coeffs()):
        bad.append(f"local B1 numerator has a negative coefficient: {num}")
    return verdict(bad, "G^2 - g_t^2 >= 0 termwise; sum (g_t^2/4 - eta_t^2) D_t >= 0")


@register("ALPH.negative", "negative control: the wrong claims Var = g^2/4 and |eta| <= g/4 are rejected",
          "B1 B3 (alphabets)")
def negative() -> Verdict:
    wrong_var = variance_claim(G**2 / 4)
    wrong_near = nearest_claim(G / 4)
    bad = []
    if wrong_var.passed:
        bad.append("the wrong variance g^2/4 was accepted")
    if wrong_near.passed:
        bad.append("the wrong bound g/4 was accepted")
    return verdict(bad, "both wrong claims rejected")
