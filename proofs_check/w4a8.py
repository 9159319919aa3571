r"""W4A8: the algebra behind activation quantization and AQAS's scaled problem (theory.md §7).

* **Scaled problem.** For :math:`S = \operatorname{diag}(s)`, :math:`s > 0`:
  :math:`(XS^{-1})(WS)^T = XW^T`; :math:`H_s = (XS^{-1})^T(XS^{-1}) = S^{-1}HS^{-1}`; the pivots of
  :math:`H_s` are :math:`D_t/s_t^2` and its unit lower factor is :math:`S^{-1}LS`; and
  :math:`XS^{-1}(Sw - q) = X(w - S^{-1}q)` (the scaled error is the layer's error with weights
  :math:`S^{-1}q`).
* **Activation rounding.** For :math:`x = \Delta(k + f)`, :math:`k\in\{-K..K\}`,
  :math:`|f|\le\frac12`: round-to-nearest returns :math:`k\Delta` (or, at a tie, a neighbour at the
  same distance), so :math:`|x - Q_a(x)| = |f|\Delta \le \Delta/2`; with the dynamic step
  :math:`\Delta = \max|x|/K` every entry is in range.
* **Folding a group's scales** (theory.md W4A8.4). A positive row scale :math:`c` maps the per-row
  min-max grid of :math:`w` to that of :math:`cw` (step :math:`c\delta`, the same zero point and codes),
  so :math:`S^{-1}` folds into a preceding quantized layer's output rows without changing its codes; the
  fold passes through the attention product :math:`P(VS^{-1}) = (PV)S^{-1}` and the gated MLP
  :math:`\mathrm{SiLU}(g)\odot(S^{-1}u) = S^{-1}(\mathrm{SiLU}(g)\odot u)`, not through GELU.
* **Error split.** :math:`XW^T - \tilde XQ^T = X(W - Q)^T + (X - \tilde X)Q^T` and
  :math:`Xw - \tilde Xq = \tilde X(w - q) + (X - \tilde X)w`.
"""

from __future__ import annotations

import sympy as sp

from .registry import Verdict, expect_all, register

__all__ = ["act_rounding", "act_rounding_claim", "error_split", "error_split_claim", "row_fold",
           "row_fold_claim", "scaled_identity", "scaled_pivots", "scaled_pivots_claim"]

N = 3


def _sym(name: str, rows: int, cols: int) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}{i}{j}", real=True))


@register("W4A8.scaled_identity", "X S^-1 (W S)^T = X W^T and X S^-1 (S w - q) = X (w - S^-1 q), "
          "S = diag(s) > 0 (2x3 X, 2x3 W)", "W4A8 (scaled problem)")
def scaled_identity() -> Verdict:
    X, W = _sym("x", 2, N), _sym("w", 2, N)
    s = sp.symbols(f"s0:{N}", positive=True)
    S = sp.diag(*s)
    w, q = _sym("v", N, 1), _sym("q", N, 1)
    claims = [("X S^-1 (W S)^T = X W^T", sp.simplify(X * S.inv() * (W * S).T - X * W.T) == sp.zeros(2, 2)),
              ("X S^-1 (S w - q) = X (w - S^-1 q)",
               sp.simplify(X * S.inv() * (S * w - q) - X * (w - S.inv() * q)) == sp.zeros(2, 1))]
    return expect_all(claims, "scaled layer computes the same product; scaled error = error of S^-1 q")


def scaled_pivots_claim(power: int) -> Verdict:
    r"""The pivots of :math:`S^{-1}HS^{-1}` are :math:`D_t/s_t^{power}` (true for ``power = 2``; the tests
    feed 1, which must fail). Pivots by OPTQ's formula :math:`D_t = 1/[(H_{\ge t,\ge t})^{-1}]_{11}` on a
    symbolic symmetric 3x3 :math:`H`; and :math:`S^{-1}HS^{-1} = (S^{-1}LS)(S^{-1}DS^{-1})(S^{-1}LS)^T` with
    :math:`S^{-1}LS` unit lower triangular, for :math:`H = LDL^T` with symbolic :math:`L, D`."""
    h = sp.symbols("h11 h12 h13 h22 h23 h33", real=True)
    H = sp.Matrix([[h[0], h[1], h[2]], [h[1], h[3], h[4]], [h[2], h[4], h[5]]])
    s = sp.symbols(f"s0:{N}", positive=True)
    S = sp.diag(*s)
    Hs = S.inv() * H * S.inv()
    claims = []
    for t in range(N):
        D = 1 / H[t:, t:].inv()[0, 0]
        Ds = 1 / Hs[t:, t:].inv()[0, 0]
        claims.append((f"D_s[{t}] = D[{t}] / s_{t}^{power}", sp.simplify(Ds - D / s[t] ** power) == 0))
    L = sp.Matrix(N, N, lambda i, j: 1 if i == j else (sp.Symbol(f"l{i}{j}", real=True) if j < i else 0))
    d = sp.symbols(f"d0:{N}", positive=True)
    Ls = S.inv() * L * S
    unit_lower = all(Ls[i, i] == 1 for i in range(N)) and \
        all(Ls[i, j] == 0 for i in range(N) for j in range(i + 1, N))
    factor = sp.simplify(Ls * sp.diag(*[d[t] / s[t] ** power for t in range(N)]) * Ls.T
                         - S.inv() * L * sp.diag(*d) * L.T * S.inv())
    claims += [("S^-1 L S is unit lower triangular", unit_lower),
               (f"S^-1 L D L^T S^-1 = (S^-1 L S) diag(d / s^{power}) (S^-1 L S)^T", factor == sp.zeros(N, N))]
    return expect_all(claims, "pivots of S^-1 H S^-1 are D_t / s_t^2, unit factor S^-1 L S")


@register("W4A8.scaled_pivots", "the pivots of S^-1 H S^-1 are D_t / s_t^2 and its unit factor is S^-1 L S "
          "(N = 3)",
          "W4A8 (scaled problem), I1")
def scaled_pivots() -> Verdict:
    return scaled_pivots_claim(2)


def act_rounding_claim(half: sp.Rational, K: int = 3) -> Verdict:
    r""":math:`|x - Q_a(x)| \le` ``half`` :math:`\cdot\Delta` for every :math:`x = \Delta(k+f)`,
    :math:`k\in\{-K..K\}`, :math:`f` on a grid of rationals in :math:`[-\frac12, \frac12]` (ties included),
    :math:`Q_a` round-half-to-even of :math:`x/\Delta` clipped to :math:`[-K, K]`, exactly; true for
    ``half = 1/2`` (the tests feed 1/4, which must fail)."""
    delta = sp.Rational(3, 7)
    fs = [sp.Rational(i, 12) for i in range(-6, 7)]
    bad = []
    for k in range(-K, K + 1):
        for f in fs:
            x = delta * (k + f)
            y = x / delta
            r = sp.floor(y + sp.Rational(1, 2))
            if y + sp.Rational(1, 2) == r and r % 2 == 1:  # an exact tie: to even
                r -= 1
            r = max(-K, min(K, int(r)))
            if abs(x - r * delta) > half * delta:
                bad.append((k, f))
    # the dynamic step puts max|x| exactly on the last level
    xs = [sp.Rational(5, 3), sp.Rational(-7, 2), sp.Rational(1, 9)]
    dyn = max(abs(v) for v in xs) / K
    in_range = all(abs(v) / dyn <= K for v in xs)
    return expect_all([(f"|x - Q(x)| <= {half} Delta on {(2 * K + 1) * len(fs)} points", not bad),
                       ("dynamic step: |x| / Delta <= K for every entry", in_range)],
                      "activation rounding error at most Delta/2 when unclipped")


@register("W4A8.act_rounding", "|x - Q_a(x)| <= Delta/2 for |x| <= (K + 1/2) Delta, exactly on a rational "
          "grid; the dynamic step never clips", "W4A8 (activation quantization)")
def act_rounding() -> Verdict:
    return act_rounding_claim(sp.Rational(1, 2))


def error_split_claim(sign: int) -> Verdict:
    r""":math:`XW^T - \tilde XQ^T = X(W-Q)^T + \text{sign}\,(X-\tilde X)Q^T` (true for ``sign = 1``)."""
    X, Xt, W, Q = _sym("x", 2, N), _sym("y", 2, N), _sym("w", 2, N), _sym("q", 2, N)
    lhs = X * W.T - Xt * Q.T
    rhs = X * (W - Q).T + sign * (X - Xt) * Q.T
    w, q = _sym("v", N, 1), _sym("u", N, 1)
    rhs2 = Xt * (w - q) + sign * (X - Xt) * w
    claims = [("XW^T - Xt Q^T = X(W-Q)^T + (X-Xt)Q^T", sp.expand(lhs - rhs) == sp.zeros(2, 2)),
              ("Xw - Xt q = Xt(w-q) + (X-Xt)w", sp.expand(X * w - Xt * q - rhs2) == sp.zeros(2, 1))]
    return expect_all(claims, "W4A8 layer error split into the weight and the activation parts")


@register("W4A8.error_split", "X W^T - Xt Q^T = X (W - Q)^T + (X - Xt) Q^T, and "
          "Xw - Xt q = Xt (w - q) + (X - Xt) w",
          "W4A8 (layer error)")
def error_split() -> Verdict:
    return error_split_claim(1)


def row_fold_claim(through: str) -> Verdict:
    r"""Folding :math:`S^{-1}` into the previous layer's output rows (W4A8.4), through ``through``:
    ``"gated"`` (:math:`\mathrm{SiLU}(g)\odot u`, Llama's MLP: true) or ``"gelu"`` (BERT's MLP: false, the
    negative control). Also: the min-max grid of :math:`cw`, :math:`c > 0`, is :math:`c` times that of
    :math:`w` with the same zero-point argument and codes (symbolic :math:`lo < 0 < hi`, 4 bits), and
    :math:`P(VS^{-1}) = (PV)S^{-1}` (symbolic 2x2 :math:`P`, 2x3 :math:`V`)."""
    c = sp.Symbol("c", positive=True)
    lo, hi, w = sp.Symbol("lo", negative=True), sp.Symbol("hi", positive=True), sp.Symbol("w", real=True)
    maxq = 15
    delta, delta_c = (hi - lo) / maxq, (c * hi - c * lo) / maxq
    s = sp.symbols(f"s0:{N}", positive=True)
    S = sp.diag(*s)
    P, V = _sym("p", 2, 2), _sym("v", 2, N)
    g, u = _sym("g", N, 1), _sym("u", N, 1)

    def act(gv, uv):
        if through == "gated":
            return sp.Matrix(N, 1, lambda i, _j: gv[i] / (1 + sp.exp(-gv[i])) * uv[i])
        return sp.Matrix(N, 1, lambda i, _j: uv[i] * (1 + sp.erf(uv[i] / sp.sqrt(2))) / 2)

    fold = sp.simplify(act(g, S.inv() * u) - S.inv() * act(g, u))
    claims = [("step of c w is c delta", sp.simplify(delta_c - c * delta) == 0),
              ("zero-point argument -lo/delta unchanged", sp.simplify(-c * lo / delta_c + lo / delta) == 0),
              ("codes w/delta unchanged", sp.simplify(c * w / delta_c - w / delta) == 0),
              ("P (V S^-1) = (P V) S^-1", sp.expand(P * (V * S.inv()) - (P * V) * S.inv()) == sp.zeros(2, N)),
              (f"{through}(g, S^-1 u) = S^-1 {through}(g, u)", fold == sp.zeros(N, 1))]
    return expect_all(claims, f"S^-1 folds into the previous layer's rows through {through}, codes unchanged")


@register("W4A8.row_fold", "the min-max grid of c w (c > 0) is c times that of w, same codes; S^-1 folds "
          "through P V and SiLU(g) * u into the previous layer's rows", "W4A8.4 (folding AQAS scales)")
def row_fold() -> Verdict:
    return row_fold_claim("gated")
