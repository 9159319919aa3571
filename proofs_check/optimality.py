r"""How far from optimal: the algebra behind L1, OPTQ's optimality ratio and the exact search.

* :math:`G_N = \Gamma(N/2+1)^{2/N}/((N+2)\pi)` is the normalized second moment of the N-ball,
  :math:`G = \frac1N\,\frac{\int_B\|x\|^2dx}{V^{1+2/N}}`, with :math:`V = \pi^{N/2}r^N/\Gamma(N/2+1)` and
  :math:`\int_B\|x\|^2 = \frac{N}{N+2}r^2V`; :math:`G_1 = 1/12`, :math:`G_N \le 1/12`, and
  :math:`G_N \to 1/(2\pi e)`.
* The lattice :math:`\hat X\operatorname{diag}(\delta)\mathbb Z^N` has Gram determinant
  :math:`\prod_t\delta_t^2\det H`, and :math:`\det H = \prod_t D_t` (I1), so
  :math:`N G_N V^{2/N} = N G_N\operatorname{GM}(\delta_t^2D_t)` and OPTQ's mean over L1 is
  :math:`\operatorname{AM}/(12 G_N\operatorname{GM})`.
* The search's cost: with :math:`T` lower triangular and :math:`H = T^TT`,
  :math:`\|Te\|^2 = \sum_t T_{tt}^2(e_t + \sum_{s<t}(T_{ts}/T_{tt})e_s)^2`.
"""

from __future__ import annotations

import sympy as sp

from .registry import Verdict, expect_all, register

__all__ = ["ball_moment", "ball_moment_claim", "ball_moment_limit", "lattice_volume", "ratio_form",
           "search_cost"]

N_SYM = sp.Symbol("N", positive=True, integer=True)


def _G(N) -> sp.Expr:
    return sp.gamma(sp.Rational(N, 2) + 1) ** sp.Rational(2, N) / ((N + 2) * sp.pi)


@register("L1.ball_moment", "G_N = Gamma(N/2+1)^(2/N)/((N+2) pi) is the N-ball's normalized second moment "
          "(N = 1..8), G_1 = 1/12, G_2 = 1/(4 pi), G_N <= 1/12", "L1")
def ball_moment() -> Verdict:
    r"""The formula against the ball's volume and second moment, for N = 1..8, exactly."""
    return ball_moment_claim(_G)


def ball_moment_claim(formula) -> Verdict:
    r"""Compare ``formula(N)`` with the normalized second moment of the N-ball computed from its volume
    and radial integral, N = 1..8 (the tests also feed a wrong formula, which must fail)."""
    r = sp.Symbol("r", positive=True)
    claims = []
    for N in range(1, 9):
        V = sp.pi ** sp.Rational(N, 2) * r**N / sp.gamma(sp.Rational(N, 2) + 1)
        # second moment of the ball by the radial integral: int_0^r s^2 dV(s), dV(s) = N V(1) s^(N-1) ds
        V1 = V.subs(r, 1)
        s = sp.Symbol("s", positive=True)
        moment = sp.integrate(s**2 * N * V1 * s ** (N - 1), (s, 0, r))
        G = moment / (N * V ** (1 + sp.Rational(2, N)))
        claims.append((f"N={N}: G from the ball equals the formula", sp.simplify(G - formula(N)) == 0))
        claims.append((f"N={N}: G_N <= 1/12", bool(sp.N(_G(N), 30) <= sp.Rational(1, 12))))
    claims.append(("G_1 = 1/12", sp.simplify(_G(1) - sp.Rational(1, 12)) == 0))
    claims.append(("G_2 = 1/(4 pi)", sp.simplify(_G(2) - 1 / (4 * sp.pi)) == 0))
    return expect_all(claims, "ball moment formula verified for N = 1..8; G_1 = 1/12, G_2 = 1/(4 pi)")


@register("L1.limit", "G_N -> 1/(2 pi e) as N -> infinity (Stirling)", "L1")
def ball_moment_limit() -> Verdict:
    r""":math:`\log G_N + \log(2\pi e) \to 0`: by Stirling, :math:`\frac2N\log\Gamma(N/2+1) =
    \log(N/(2e)) + O(\log N/N)`."""
    expr = 2 / N_SYM * sp.loggamma(N_SYM / 2 + 1) - sp.log(N_SYM + 2) - sp.log(sp.pi) + sp.log(2 * sp.pi * sp.E)
    lim = sp.limit(expr, N_SYM, sp.oo)
    return expect_all([("lim (log G_N + log(2 pi e)) = 0", sp.simplify(lim) == 0)],
                      "log G_N + log(2 pi e) -> 0")


@register("L1.volume", "det(diag(delta) H diag(delta)) = prod delta_t^2 det H, and prod D_t = det H (N = 3)",
          "L1, I1")
def lattice_volume() -> Verdict:
    r"""The Gram determinant of the basis :math:`\hat X\operatorname{diag}(\delta)` and the pivot product,
    on a symbolic symmetric 3x3 :math:`H` (its :math:`LDL^T` pivots by Schur complements, last to first as
    OPTQ's :math:`D_t = 1/[(H_{\ge t,\ge t})^{-1}]_{11}`)."""
    h = sp.symbols("h11 h12 h13 h22 h23 h33", real=True)
    H = sp.Matrix([[h[0], h[1], h[2]], [h[1], h[3], h[4]], [h[2], h[4], h[5]]])
    d = sp.symbols("d1:4", positive=True)
    S = sp.diag(*d)
    gram = (S * H * S).det() - (d[0] * d[1] * d[2]) ** 2 * H.det()
    claims = [("det(S H S) = prod d^2 det H", sp.simplify(gram) == 0)]
    D = [1 / H[t:, t:].inv()[0, 0] for t in range(3)]
    claims.append(("prod_t D_t = det H", sp.simplify(sp.Mul(*D) - H.det()) == 0))
    return expect_all(claims, "Gram determinant and pivot product verified")


@register("L1.ratio", "(sum_t S_t / c) / (N G (prod_t S_t)^(1/N)) = AM(S) / (c G GM(S)) (N = 4)", "L1")
def ratio_form() -> Verdict:
    S = sp.symbols("S1:5", positive=True)
    c, G = sp.symbols("c G", positive=True)
    N = 4
    lhs = (sum(S) / c) / (N * G * sp.Mul(*S) ** sp.Rational(1, N))
    rhs = (sum(S) / N) / (c * G * sp.Mul(*S) ** sp.Rational(1, N))
    return expect_all([("ratio forms agree", sp.simplify(lhs - rhs) == 0)], "AM/GM form of the ratio verified")


@register("OPT.search_cost", "||T e||^2 = sum_t T_tt^2 (e_t + sum_{s<t} T_ts/T_tt e_s)^2 for lower T (N = 4)",
          "L1 (exact optimum)")
def search_cost() -> Verdict:
    N = 4
    T = sp.Matrix(N, N, lambda i, j: sp.Symbol(f"T{i}{j}", real=True) if j <= i else 0)
    for t in range(N):
        T[t, t] = sp.Symbol(f"T{t}{t}", positive=True)
    e = sp.Matrix(sp.symbols(f"e0:{N}", real=True))
    lhs = (T * e).dot(T * e)
    rhs = sum(T[t, t] ** 2 * (e[t] + sum(T[t, s] / T[t, t] * e[s] for s in range(t))) ** 2 for t in range(N))
    return expect_all([("decomposition", sp.expand(lhs - rhs) == 0)], "cost decomposition verified")
