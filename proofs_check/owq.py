r"""OWQ: OPTQ with kept columns (docs/theory.md section 7, OWQ; ``ptqtheory.owq``).

The columns are in processing order, the kept set :math:`K` last. The sweep is A2 (least squares on
:math:`\hat X = [X; \sqrt\lambda I]`) with :math:`q_t = x_t - \eta_t` on the quantized columns and
:math:`q_t = x_t` on :math:`K`. Checked here, for ``N = 3`` and ``K = {3}`` with the weights
:math:`w`, the rounding errors :math:`\eta_1, \eta_2` and :math:`\lambda` symbolic and a fixed rational
``X`` (2 x 3):

* ``OWQ.identity``: :math:`\|\hat X(w - q)\|^2 = \eta_1^2D_1 + \eta_2^2D_2` with the pivots of the full
  :math:`H` in this order, :math:`D_t = H_{tt} - H_{t,>t}H_{>t,>t}^{-1}H_{>t,t}` (I2 with :math:`\eta_3 = 0`);
* ``OWQ.pivot_gain``: the kept column lowers the pivots of the quantized ones:
  :math:`D_2(H_{SS}) - D_2 = (\hat X_3^T\hat X_2)^2/\|\hat X_3\|^2` and
  :math:`D_1(H_{SS}) - D_1 = (r^T\hat X_1)^2/\|r\|^2`, :math:`r = P^\perp_{\hat X_2}\hat X_3`, both squares
  over positive numbers;
* ``OWQ.midpoint``: with :math:`\eta_t = -\delta_t/2` on the quantized columns the identity gives
  :math:`\frac14\sum_{t\notin K}\delta_t^2D_t` exactly (the restricted B1 is attained).

The negative controls (:func:`identity_claim` with ``kept="original"``, :func:`pivot_claim` with
``restricted=True``) state the plausible wrong variants (the kept weights stored as the original
:math:`w_3`; the pivots of :math:`H_{SS}` in the identity) and fail.
"""

from __future__ import annotations

from functools import cache

import sympy as sp

from .registry import Verdict, register, verdict

__all__ = ["identity_claim", "midpoint_claim", "pivot_claim", "pivot_gain_claim"]

LAM = sp.Symbol("lam", positive=True)
W = sp.symbols("w1:4", real=True)
ETA = sp.symbols("eta1:3", real=True)
DELTA = sp.symbols("delta1:3", positive=True)
X = sp.Matrix([[1, 2, -1], [3, -1, 2]])  # rank 2 < N = 3: lam > 0 makes H definite


@cache
def _xhat() -> sp.Matrix:
    return X.col_join(sp.sqrt(LAM) * sp.eye(3))


def _H(cols: list[int]) -> sp.Matrix:
    Xh = _xhat()
    sub = Xh[:, cols]
    return (sub.T * sub).applyfunc(sp.expand)


def _pivot(cols: list[int], t: int) -> sp.Expr:
    """Pivot of column ``t`` (an index into ``cols``) of ``H`` on ``cols``: the Schur complement of the
    later columns, :math:`H_{tt} - H_{t,>t}H_{>t,>t}^{-1}H_{>t,t}`."""
    H = _H(cols)
    n = len(cols)
    if t == n - 1:
        return sp.simplify(H[t, t])
    rest = list(range(t + 1, n))
    Hrr = H.extract(rest, rest)
    h = H.extract([t], rest)
    return sp.simplify(H[t, t] - (h * Hrr.inv() * h.T)[0, 0])


def _sweep(eta1, eta2, kept: str) -> list[sp.Expr]:
    """A2 on ``(w1, w2, w3)``: round columns 1 and 2 with errors ``eta1, eta2``; column 3 is kept as its
    updated value (``kept="updated"``, OWQ) or as the original ``w3`` (``"original"``, wrong)."""
    Xh = _xhat()
    w = sp.Matrix(W)
    q = [None, None, None]
    for t, eta in ((0, eta1), (1, eta2)):
        x = w[t]
        q[t] = x - eta
        later = Xh[:, t + 1:]
        coef = (later.T * later).inv() * later.T * Xh[:, t]
        for j in range(t + 1, 3):
            w[j] = w[j] + eta * coef[j - t - 1]
    q[2] = w[2] if kept == "updated" else W[2]
    return q


def identity_claim(kept: str = "updated", pivots: str = "full") -> Verdict:
    r""":math:`\|\hat X(w - q)\|^2 = \eta_1^2D_1 + \eta_2^2D_2` for the sweep with the kept column stored as
    ``kept``, the pivots those of the full :math:`H` (``"full"``) or of :math:`H_{SS}` (``"restricted"``)."""
    q = _sweep(ETA[0], ETA[1], kept)
    e = sp.Matrix([W[i] - q[i] for i in range(3)])
    lhs = (e.T * _H([0, 1, 2]) * e)[0, 0]
    cols = [0, 1, 2] if pivots == "full" else [0, 1]
    rhs = ETA[0] ** 2 * _pivot(cols, 0) + ETA[1] ** 2 * _pivot(cols, 1)
    gap = sp.simplify(sp.together(lhs - rhs))
    bad = [] if gap == 0 else [f"lhs - rhs = {sp.sstr(gap)[:160]}"]
    return verdict(bad, f"||Xh(w-q)||^2 = eta1^2 D1 + eta2^2 D2 (kept={kept}, pivots={pivots})")


def pivot_claim(restricted: bool = False) -> Verdict:
    """The identity with the pivots of :math:`H_{SS}` (``restricted=True``, wrong) or of the full H."""
    return identity_claim("updated", "restricted" if restricted else "full")


def pivot_gain_claim() -> Verdict:
    r""":math:`D_2(H_{SS}) - D_2 = (\hat X_3^T\hat X_2)^2/\|\hat X_3\|^2` and
    :math:`D_1(H_{SS}) - D_1 = (r^T\hat X_1)^2/\|r\|^2` with :math:`r = P^\perp_{\hat X_2}\hat X_3`."""
    Xh = _xhat()
    x1, x2, x3 = (Xh[:, i] for i in range(3))
    bad = []
    g2 = _pivot([0, 1], 1) - _pivot([0, 1, 2], 1)
    c2 = (x3.T * x2)[0, 0] ** 2 / (x3.T * x3)[0, 0]
    if sp.simplify(sp.together(g2 - c2)) != 0:
        bad.append("D2 gain")
    r = x3 - x2 * ((x2.T * x3)[0, 0] / (x2.T * x2)[0, 0])
    g1 = _pivot([0, 1], 0) - _pivot([0, 1, 2], 0)
    c1 = (r.T * x1)[0, 0] ** 2 / (r.T * r)[0, 0]
    if sp.simplify(sp.together(g1 - c1)) != 0:
        bad.append("D1 gain")
    return verdict(bad, "D_t(H_SS) - D_t = a square over a positive number (t = 1, 2)")


QUARTER = sp.Rational(1, 4)


def midpoint_claim(scale: sp.Expr = QUARTER) -> Verdict:
    r"""With :math:`\eta_t = -\delta_t/2` (t = 1, 2) the identity's right side is ``scale`` times
    :math:`\sum_{t\le2}\delta_t^2D_t` (true for ``scale = 1/4``)."""
    q = _sweep(-DELTA[0] / 2, -DELTA[1] / 2, "updated")
    e = sp.Matrix([W[i] - q[i] for i in range(3)])
    lhs = (e.T * _H([0, 1, 2]) * e)[0, 0]
    rhs = scale * (DELTA[0] ** 2 * _pivot([0, 1, 2], 0) + DELTA[1] ** 2 * _pivot([0, 1, 2], 1))
    gap = sp.simplify(sp.together(lhs - rhs))
    return verdict([] if gap == 0 else [f"gap {sp.sstr(gap)[:120]}"],
                   f"midpoints: ||Xh(w-q)||^2 = {scale} sum_(t quantized) delta_t^2 D_t")


@register("OWQ.identity[N=3,K={3}]",
          "OWQ sweep (kept column last, stored updated): ||Xh(w-q)||^2 = sum over quantized t of eta_t^2 D_t",
          "I2 OWQ")
def identity() -> Verdict:
    return identity_claim()


@register("OWQ.pivot_gain[N=3,K={3}]",
          "kept columns last lower the pivots of the quantized ones: D_t(H_SS) - D_t is a square / positive",
          "B1 B2 OWQ")
def pivot_gain() -> Verdict:
    return pivot_gain_claim()


@register("OWQ.midpoint[N=3,K={3}]",
          "restricted B1 is attained: eta_t = -delta_t/2 on quantized t gives (1/4) sum delta_t^2 D_t",
          "B1 OWQ")
def midpoint() -> Verdict:
    return midpoint_claim()
