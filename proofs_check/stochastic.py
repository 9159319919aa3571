r"""Stochastic rounding moments (THEORY.md "Rounding", B3, B11).

With :math:`r = x - \delta\lfloor x/\delta\rfloor \in [0,\delta)` and
:math:`q = \delta\lfloor x/\delta\rfloor + \delta B`, :math:`B \sim \mathrm{Bernoulli}(r/\delta)`:

.. math::

    \mathbb E[q] = x,\qquad \mathrm{Var}[q] = \mathbb E[\eta^2] = r(\delta - r) \le \delta^2/4,

with equality iff :math:`r = \delta/2`, because :math:`\delta^2/4 - r(\delta - r) = (r - \delta/2)^2`.
For OPTQ, :math:`x_t` is :math:`\mathcal F_{t-1}`-measurable, so
:math:`\mathbb E[\eta_t\mid\mathcal F_{t-1}] = 0` and
:math:`\mathbb E[\eta_t^2\mid\mathcal F_{t-1}] = r_t(\delta - r_t)`; cross terms
:math:`\mathbb E[\eta_s\eta_t] = \mathbb E[\eta_s\,\mathbb E[\eta_t\mid\mathcal F_{t-1}]] = 0` vanish and
I2 gives B3.  B11's constants are the uniform averages :math:`\delta^2/12` (nearest) and
:math:`\delta^2/6` (stochastic).

Expectations are computed exactly as finite sums over the two outcomes (or as
integrals for B11), so a wrong formula is reported as a failure: see
:func:`variance_claim`, which the test-suite also feeds a deliberately wrong claim.
"""

from __future__ import annotations

import sympy as sp

from .registry import Verdict, expect_all, register, verdict

__all__ = ["conditional_moments", "max_variance", "unbiased", "uniform_means", "variance", "variance_claim"]

DELTA = sp.Symbol("delta", positive=True)
R = sp.Symbol("r", nonnegative=True)
BASE = sp.Symbol("b", real=True)  # delta * floor(x / delta)


def _outcomes() -> list[tuple[sp.Expr, sp.Expr]]:
    """Outcomes ``(probability, q)`` of stochastic rounding of ``x = b + r``."""
    p = R / DELTA
    return [(1 - p, BASE), (p, BASE + DELTA)]


def _expect(f: sp.Expr, q: sp.Symbol) -> sp.Expr:
    return sp.expand(sum(prob * f.subs(q, value) for prob, value in _outcomes()))


def variance_claim(claimed: sp.Expr) -> Verdict:
    r"""Compare :math:`\mathrm{Var}[q]` computed from the two outcomes with ``claimed``.

    Parameters
    ----------
    claimed : sympy.Expr
        Claimed variance in the symbols :data:`R` and :data:`DELTA` (THEORY.md: :math:`r(\delta - r)`).

    Returns
    -------
    Verdict
        Passed iff ``simplify(Var[q] - claimed) == 0``.
    """
    q = sp.Symbol("q", real=True)
    mean = _expect(q, q)
    var = sp.simplify(_expect(q**2, q) - mean**2)
    diff = sp.simplify(var - claimed)
    return verdict(
        [] if diff == 0 else [f"Var[q] = {sp.factor(var)}, claimed {claimed}, difference {diff}"],
        f"Var[q] = {sp.factor(var)}",
    )


@register("SR.unbiased", "stochastic rounding is unbiased: E[q] = delta floor(x/delta) + r = x", "Rounding, B3")
def unbiased() -> Verdict:
    r"""Check :math:`\mathbb E[q] = x` exactly.

    Returns
    -------
    Verdict
        Passed iff the two-outcome mean equals :math:`b + r`.
    """
    q = sp.Symbol("q", real=True)
    diff = sp.simplify(_expect(q, q) - (BASE + R))
    return verdict([] if diff == 0 else [f"E[q] - x = {diff}"], "E[q] = x")


@register("SR.variance", "Var[q] = E[eta^2] = r (delta - r) for stochastic rounding", "Rounding, B3")
def variance() -> Verdict:
    r"""Check THEORY.md's variance :math:`r(\delta - r)` (see :func:`variance_claim`).

    Returns
    -------
    Verdict
        Passed iff the variance is :math:`r(\delta - r)`.
    """
    return variance_claim(R * (DELTA - R))


@register(
    "SR.max_variance",
    "r (delta - r) <= delta^2/4 on [0, delta], equality iff r = "
    "delta/2 (delta^2/4 - r(delta-r) = (r - delta/2)^2)",
    "B3",
)
def max_variance() -> Verdict:
    r"""Maximum of :math:`r(\delta - r)` over :math:`r\in[0,\delta]`.

    Returns
    -------
    Verdict
        Passed iff the perfect-square identity holds, the unique critical point is
        :math:`\delta/2` with negative curvature, and sympy's ``maximum`` over the interval is
        :math:`\delta^2/4`.
    """
    f = R * (DELTA - R)
    square = sp.expand(DELTA**2 / 4 - f - (R - DELTA / 2) ** 2) == 0
    crit = sp.solve(sp.diff(f, R), R)
    maximum = sp.maximum(f, R, sp.Interval(0, DELTA))
    return expect_all(
        [
            ("delta^2/4 - r(delta - r) = (r - delta/2)^2", square),
            ("unique critical point r = delta/2", crit == [DELTA / 2]),
            ("second derivative < 0", sp.diff(f, R, 2) == -2),
            ("max over [0, delta] is delta^2/4", sp.simplify(maximum - DELTA**2 / 4) == 0),
        ],
        "max_{r in [0,delta]} r(delta - r) = delta^2/4 at r = delta/2",
    )


@register(
    "B3.conditional_moments",
    "eta = x - q in {r, r - delta}: E[eta | F] = 0 and E[eta^2 | F] = r "
    "(delta - r), so E||Xh(w-q)||^2 = sum E[r_t(delta-r_t)] D_t",
    "B3",
)
def conditional_moments() -> Verdict:
    r"""Conditional mean and second moment of the rounding error :math:`\eta = x - q`.

    Returns
    -------
    Verdict
        Passed iff :math:`\mathbb E\eta = 0` and :math:`\mathbb E\eta^2 = r(\delta - r)` exactly.
    """
    q = sp.Symbol("q", real=True)
    eta = BASE + R - q
    m1 = sp.simplify(_expect(eta, q))
    m2 = sp.simplify(_expect(eta**2, q) - R * (DELTA - R))
    return expect_all(
        [("E[eta | F] = 0", m1 == 0), ("E[eta^2 | F] = r(delta - r)", m2 == 0)],
        "E[eta|F] = 0, E[eta^2|F] = r(delta - r); with I2 and vanishing cross terms this is B3",
    )


@register(
    "B11.uniform_means",
    "uniform residuals: E eta^2 = delta^2/12 (nearest), E r(delta - r) "
    "= delta^2/6 (stochastic); worst case delta^2/4",
    "B11",
)
def uniform_means() -> Verdict:
    r"""The constants ``c = 12`` (nearest) and ``c = 6`` (stochastic) of B11, and the worst case 4.

    Returns
    -------
    Verdict
        Passed iff the integrals and the maximum take the stated values.
    """
    e = sp.Symbol("e", real=True)
    nearest = sp.integrate(e**2, (e, -DELTA / 2, DELTA / 2)) / DELTA
    stoch = sp.integrate(R * (DELTA - R), (R, 0, DELTA)) / DELTA
    worst = sp.maximum(e**2, e, sp.Interval(-DELTA / 2, DELTA / 2))
    return expect_all(
        [
            ("nearest mean = delta^2/12", sp.simplify(nearest - DELTA**2 / 12) == 0),
            ("stochastic mean = delta^2/6", sp.simplify(stoch - DELTA**2 / 6) == 0),
            ("nearest worst case = delta^2/4", sp.simplify(worst - DELTA**2 / 4) == 0),
        ],
        "c = 12 (nearest), c = 6 (stochastic), worst case 1/4",
    )
