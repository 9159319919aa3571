r"""Concentration algebra behind B4, B5 and B6 (Hoeffding's lemma, Azuma-Hoeffding, union bounds).

Hoeffding's lemma.  For :math:`Z \in [a, b]`, :math:`a \le 0 \le b`, :math:`\mathbb EZ = 0`: convexity
gives :math:`e^{sZ} \le \frac{(b-Z)e^{sa} + (Z-a)e^{sb}}{b-a}` (the chord); the chord is affine
in :math:`Z`, so :math:`\mathbb Ee^{sZ} \le e^{\varphi(s)}` with
:math:`\varphi(s) = \log\frac{be^{sa} - ae^{sb}}{b-a}`, :math:`\varphi(0) = \varphi'(0) = 0` and
:math:`\varphi'' = (b-a)^2p(1-p) \le (b-a)^2/4` for :math:`p = -ae^{sb}/(be^{sa} - ae^{sb}) \in [0,1]`;
Taylor gives :math:`\varphi(s) \le s^2(b-a)^2/8`.  Azuma-Hoeffding for a martingale whose
increments lie in predictable intervals of lengths :math:`c_t`:
:math:`\mathbb P(M \ge u) \le \min_s e^{-su + s^2\sum c_t^2/8} = e^{-2u^2/\sum_t c_t^2}`.

B5.  :math:`(X(w-q))_i = \sum_t (XL)_{it}\eta_t` with deterministic :math:`L` and
:math:`\eta_t \in \{r_t, r_t - \delta\}`, an interval of length :math:`\delta`, so
:math:`c_t = |(XL)_{it}|\delta` and :math:`\sum_t c_t^2 = \delta^2S_i`.  Two-sided tail and union
over the ``m`` rows: :math:`2m\,e^{-2u^2/(\delta^2S_i)} = p \iff u = \delta\sqrt{S_i\log(2m/p)/2}`,
THEORY.md's constant.  (Using only :math:`|\text{increment}| \le |(XL)_{it}|\delta`, i.e. an interval
of length :math:`2|(XL)_{it}|\delta`, would give the 2x larger :math:`\delta\sqrt{2S_i\log(2m/p)}`.)
:math:`S_i \le \max_tD_t`: with :math:`Q = \hat XLD^{-1/2}` (orthonormal columns, I2),
:math:`S_i = \sum_t D_tQ_{it}^2 \le \max_tD_t\,P_{ii} \le \max_tD_t` where
:math:`P = QQ^T = \hat XH^{-1}\hat X^T` is an orthogonal projection.

B4.  :math:`\|\hat X(w-q)\|^2 = \sum_t\eta_t^2D_t` (I2).  Given :math:`\mathcal F_{t-1}`,
:math:`\eta_t^2 \in \{r_t^2, (\delta-r_t)^2\}`, an interval of length :math:`\delta|\delta - 2r_t| \le \delta^2`
(:math:`\delta^4 - \delta^2(\delta-2r)^2 = 4\delta^2r(\delta-r) \ge 0`), with conditional mean
:math:`r_t(\delta-r_t) \le \delta^2/4`.  One-sided Azuma with :math:`c_t = \delta^2D_t`:
:math:`e^{-2u^2/(\delta^4\|D\|_2^2)} = p \iff u = \delta^2\|D\|_2\sqrt{\log(1/p)/2}`, so
:math:`\|\hat X(w-q)\|^2 \le \sum_tr_t(\delta-r_t)D_t + u \le (\delta^2/4)\mathrm{tr}(D) + u` -- THEORY.md's B4
(:math:`\|D\|_2` is the Euclidean norm of :math:`(D_1,\dots,D_N)`).

B6.  :math:`(w-q)_j = \sum_sL_{js}\eta_s`: as B5 with :math:`S = (LL^T)_{jj}` and ``N`` coordinates.
:math:`H^{-1} = LD^{-1}L^T` gives :math:`(LL^T)_{jj} = \sum_sL_{js}^2 \le \max_sD_s\sum_sL_{js}^2/D_s
= \max_sD_s(H^{-1})_{jj}`, and :math:`(H^{-1})_{jj} = 1/D'_j \le 1/\lambda` where :math:`D'_j` is the
pivot of column ``j`` ordered first (I1), with :math:`\max_sD_s \le \max_t\|X_t\|^2 + \lambda`.

Not checked here (not algebraic identities): convexity of the exponential, the
martingale property itself, the maximal-inequality extension to intermediate iterates
(B6), the PSD orderings used in B12, B2's rank / :math:`\sigma_r` argument, B8's coupling
argument, the incoherence bound of B11, and the :math:`\sqrt{4\pi}` comparison with the
convex-order bound in B5.
"""

from __future__ import annotations

import sympy as sp

from .algebra import (
    dm,
    fraction_field,
    general_matrix,
    inverse,
    schur_complement,
    show,
    unit_lower_inverse_factor,
)
from .instances import generic_spd
from .registry import Verdict, expect_all, register, verdict

__all__ = [
    "b4_tail",
    "b4_theory",
    "b5_s_le_max_pivot",
    "b5_theory",
    "b5_union_bound",
    "b6_weights",
    "chernoff",
    "hoeffding_chord",
    "hoeffding_phi",
]

_A = sp.Symbol("a", negative=True)
_B = sp.Symbol("b", positive=True)
_S = sp.Symbol("s", real=True)
DELTA = sp.Symbol("delta", positive=True)
P = sp.Symbol("p", positive=True)  # failure probability, 0 < p < 1
M_ROWS = sp.Symbol("m", positive=True, integer=True)
S_I = sp.Symbol("S_i", positive=True)


@register(
    "HOEFF.chord",
    "the chord ((b-x)e^{sa} + (x-a)e^{sb})/(b-a) interpolates e^{sx} at a, b, is "
    "affine in x, and equals (b e^{sa} - a e^{sb})/(b-a) at the mean 0",
    "B4-B6",
)
def hoeffding_chord() -> Verdict:
    r"""The chord bound used in Hoeffding's lemma.

    Returns
    -------
    Verdict
        Passed iff the chord matches :math:`e^{sx}` at ``a`` and ``b``, has zero second
        derivative, and takes the value :math:`(be^{sa} - ae^{sb})/(b-a)` at ``x = 0``.
    """
    x = sp.Symbol("x", real=True)
    chord = ((_B - x) * sp.exp(_S * _A) + (x - _A) * sp.exp(_S * _B)) / (_B - _A)
    mean_value = (_B * sp.exp(_S * _A) - _A * sp.exp(_S * _B)) / (_B - _A)
    return expect_all(
        [
            ("chord(a) = e^{sa}", sp.simplify(chord.subs(x, _A) - sp.exp(_S * _A)) == 0),
            ("chord(b) = e^{sb}", sp.simplify(chord.subs(x, _B) - sp.exp(_S * _B)) == 0),
            ("chord affine", sp.diff(chord, x, 2) == 0),
            ("chord(0) = (b e^{sa} - a e^{sb})/(b-a)", sp.simplify(chord.subs(x, 0) - mean_value) == 0),
        ],
        "E[e^{sZ}] <= E[chord(Z)] = chord(0) = (b e^{sa} - a e^{sb})/(b-a)",
    )


@register(
    "HOEFF.phi",
    "phi(s) = log((b e^{sa} - a e^{sb})/(b-a)): phi(0) = phi'(0) = 0, "
    "phi'' = (b-a)^2 p(1-p) <= (b-a)^2/4, p in [0,1]",
    "B4-B6",
)
def hoeffding_phi() -> Verdict:
    r"""Derivatives of the log-moment bound :math:`\varphi` in Hoeffding's lemma.

    Returns
    -------
    Verdict
        Passed iff :math:`\varphi(0) = 0`, :math:`\varphi'(0) = 0`,
        :math:`\varphi'' - (b-a)^2p(1-p) = 0` identically, :math:`1 - p = be^{sa}/(be^{sa} - ae^{sb})`
        (so :math:`p \in [0,1]` for :math:`a < 0 < b`) and :math:`1/4 - p(1-p) = (p - 1/2)^2`.
    """
    den = _B * sp.exp(_S * _A) - _A * sp.exp(_S * _B)
    phi = sp.log(den / (_B - _A))
    p = -_A * sp.exp(_S * _B) / den
    d1 = sp.diff(phi, _S)
    d2 = sp.diff(phi, _S, 2)
    pp = sp.Symbol("pp", real=True)
    return expect_all(
        [
            ("phi(0) = 0", sp.simplify(phi.subs(_S, 0)) == 0),
            ("phi'(0) = 0", sp.simplify(d1.subs(_S, 0)) == 0),
            ("phi'' = (b-a)^2 p (1-p)", sp.simplify(d2 - (_B - _A) ** 2 * p * (1 - p)) == 0),
            ("1 - p = b e^{sa} / den", sp.simplify(1 - p - _B * sp.exp(_S * _A) / den) == 0),
            (
                "1/4 - p(1-p) = (p - 1/2)^2",
                sp.expand(sp.Rational(1, 4) - pp * (1 - pp) - (pp - sp.Rational(1, 2)) ** 2) == 0,
            ),
        ],
        "phi(s) <= s^2 (b-a)^2 / 8 by Taylor with phi'' <= (b-a)^2/4",
    )


@register(
    "HOEFF.chernoff",
    "min_s (-s u + s^2 c/8) = -2 u^2 / c at s = 4u/c, so P(M >= u) <= exp(-2u^2 / sum_t c_t^2)",
    "B4-B6",
)
def chernoff() -> Verdict:
    r"""Optimization of the Chernoff exponent.

    Returns
    -------
    Verdict
        Passed iff the unique critical point is :math:`4u/c`, it is a minimum, and the
        value there is :math:`-2u^2/c`.
    """
    u, c = sp.symbols("u c", positive=True)
    g = -_S * u + _S**2 * c / 8
    crit = sp.solve(sp.diff(g, _S), _S)
    return expect_all(
        [
            ("critical point s = 4u/c", crit == [4 * u / c]),
            ("g'' = c/4 > 0", sp.simplify(sp.diff(g, _S, 2) - c / 4) == 0),
            ("value -2u^2/c", bool(crit) and sp.simplify(g.subs(_S, crit[0]) + 2 * u**2 / c) == 0),
        ],
        "exp(min_s(-su + s^2 c/8)) = exp(-2u^2/c)",
    )


def _solve_tail(equation_lhs: sp.Expr, u: sp.Symbol) -> list[sp.Expr]:
    sols = sp.solve(sp.Eq(equation_lhs, P), u)
    return [s for s in sols if s.is_positive is not False]


def b5_union_bound(claimed: sp.Expr, count: sp.Symbol = M_ROWS) -> Verdict:
    r"""Derive B5's threshold and compare it with ``claimed``.

    Increment :math:`a_t\eta_t` with :math:`\eta_t \in [r_t - \delta, r_t]` has range length
    :math:`|a_t|\delta`; :math:`\sum_tc_t^2 = \delta^2S_i`; solve :math:`2m\,e^{-2u^2/(\delta^2S_i)} = p`.

    Parameters
    ----------
    claimed : sympy.Expr
        Claimed threshold in ``delta``, ``S_i``, ``count``, ``p`` (THEORY.md:
        :math:`\delta\sqrt{S_i\log(2m/p)/2}`).
    count : sympy.Symbol
        Number of events in the union bound (``m`` rows for B5, ``N`` coordinates for B6).

    Returns
    -------
    Verdict
        Passed iff the derived positive solution equals ``claimed``.
    """
    a, r = sp.Symbol("a_t", real=True), sp.Symbol("r", real=True)
    rng = sp.Abs(a * r - a * (r - DELTA))
    range_ok = sp.simplify(rng**2 - a**2 * DELTA**2) == 0
    u = sp.Symbol("u", positive=True)
    sols = _solve_tail(2 * count * sp.exp(-2 * u**2 / (DELTA**2 * S_I)), u)
    bad = [] if range_ok else ["range of a_t eta_t is not |a_t| delta"]
    if len(sols) != 1:
        bad.append(f"expected one positive solution, got {sols}")
    elif sp.simplify(sols[0] - claimed) != 0:
        bad.append(f"derived u = {sols[0]}, claimed {claimed}")
    return verdict(
        bad, f"c_t = |(XL)_it| delta, 2m exp(-2u^2/(delta^2 S_i)) = p  <=>  u = {sols[0] if sols else '?'}"
    )


@register(
    "B5.union_bound",
    "Azuma-Hoeffding (ranges |(XL)_it| delta) + union over m rows gives "
    "u = delta sqrt(S_i log(2m/p)/2), as in THEORY.md",
    "B5",
)
def b5_theory() -> Verdict:
    r"""B5 as stated in THEORY.md: :math:`u = \delta\sqrt{S_i\log(2m/p)/2}`.

    Returns
    -------
    Verdict
        See :func:`b5_union_bound`.
    """
    return b5_union_bound(DELTA * sp.sqrt(S_I * sp.log(2 * M_ROWS / P) / 2))


def b4_tail(claimed: sp.Expr) -> Verdict:
    r"""Derive B4's deviation term and compare it with ``claimed``.

    Parameters
    ----------
    claimed : sympy.Expr
        Claimed deviation in ``delta``, ``normD`` (:math:`\|D\|_2`) and ``p`` (THEORY.md:
        :math:`\delta^2\|D\|_2\sqrt{\log(1/p)/2}`).

    Returns
    -------
    Verdict
        Passed iff the conditional range of :math:`\eta_t^2` is at most :math:`\delta^2`, its
        conditional mean is :math:`r(\delta-r)`, and the solution of
        :math:`e^{-2u^2/(\delta^4\|D\|_2^2)} = p` equals ``claimed``.
    """
    r = sp.Symbol("r", nonnegative=True)
    norm_d = sp.Symbol("normD", positive=True)
    lo2, hi2 = r**2, (DELTA - r) ** 2
    length = sp.expand(hi2 - lo2)
    bad: list[str] = []
    if sp.expand(length - DELTA * (DELTA - 2 * r)) != 0:
        bad.append("range of eta^2 is not delta |delta - 2r|")
    if sp.expand(DELTA**4 - length**2 - 4 * DELTA**2 * r * (DELTA - r)) != 0:
        bad.append("delta^4 - range^2 != 4 delta^2 r (delta - r)")
    mean = sp.expand((1 - r / DELTA) * lo2 + (r / DELTA) * hi2)
    if sp.expand(mean - r * (DELTA - r)) != 0:
        bad.append("E[eta^2 | F] != r (delta - r)")
    u = sp.Symbol("u", positive=True)
    sols = _solve_tail(sp.exp(-2 * u**2 / (DELTA**4 * norm_d**2)), u)
    if len(sols) != 1:
        bad.append(f"expected one positive solution, got {sols}")
    elif sp.simplify(sols[0] - claimed) != 0:
        bad.append(f"derived u = {sols[0]}, claimed {claimed}")
    return verdict(
        bad,
        f"c_t = delta^2 D_t (range of eta_t^2 <= delta^2), "
        f"exp(-2u^2/(delta^4 |D|^2)) = p <=> u = {sols[0] if sols else '?'}",
    )


@register(
    "B4.l2_tail",
    "bounded differences on sum_t (eta_t^2 - r_t(delta-r_t)) D_t (ranges delta^2 "
    "D_t) give delta^2 ||D||_2 sqrt(log(1/p)/2), as in THEORY.md",
    "B4",
)
def b4_theory() -> Verdict:
    r"""B4 as stated in THEORY.md: deviation :math:`\delta^2\|D\|_2\sqrt{\log(1/p)/2}`.

    Returns
    -------
    Verdict
        See :func:`b4_tail`.
    """
    norm_d = sp.Symbol("normD", positive=True)
    return b4_tail(DELTA**2 * norm_d * sp.sqrt(sp.log(1 / P) / 2))


@register(
    "B5.S_le_maxD[m=2,N=3]",
    "sum_t (Xh L)_it^2 / D_t = P_ii with P = Xh H^-1 Xh^T an orthogonal "
    "projection, so S_i <= max_t D_t P_ii <= max_t D_t",
    "B5",
)
def b5_s_le_max_pivot() -> Verdict:
    r"""Algebra of :math:`S_i \le \max_tD_t` for symbolic ``X`` (2x3) and :math:`\lambda = s^2`.

    Returns
    -------
    Verdict
        Passed iff :math:`\sum_t(\hat XL)_{it}^2/D_t = P_{ii}` for every row ``i`` of :math:`\hat X`,
        :math:`P^2 = P`, :math:`P^T = P` (so :math:`0 \le P_{ii} \le 1`).
    """
    m, n = 2, 3
    x = general_matrix(m, n, "x")
    s = sp.Symbol("s", positive=True)
    xh = x.col_join(s * sp.eye(n))
    field = fraction_field(xh)
    xhd = dm(xh, field)
    hd = xhd.transpose() * xhd
    lo, d = unit_lower_inverse_factor(hd)
    v = xhd * lo
    proj = xhd * inverse(hd) * xhd.transpose()
    bad = []
    for i in range(m + n):
        lhs = sum((v[i, t].element ** 2 / d[t] for t in range(n)), field.zero)
        if lhs != proj[i, i].element:
            bad.append(f"row {i + 1}: sum_t V_it^2/D_t - P_ii = {show(field, lhs - proj[i, i].element)}")
    if proj * proj != proj:
        bad.append("P^2 != P")
    if proj.transpose() != proj:
        bad.append("P^T != P")
    return verdict(bad, "S_i = sum_t D_t Q_it^2 with sum_t Q_it^2 = P_ii in [0, 1] (P symmetric idempotent)")


@register(
    "B6.weights[N=3]",
    "H^-1 = L D^-1 L^T, (H^-1)_jj = 1/D'_j (pivot of j ordered first), and the "
    "union bound over N gives delta sqrt((LL^T)_jj log(2N/p)/2)",
    "B6",
)
def b6_weights() -> Verdict:
    r"""Algebra of B6 for a generic symmetric :math:`3\times 3` matrix.

    Verifies :math:`LD^{-1}L^T = H^{-1}` (hence :math:`(LL^T)_{jj} \le \max_sD_s(H^{-1})_{jj}`),
    :math:`(H^{-1})_{jj}\,D'_j = 1` where :math:`D'_j` is the Schur complement of the other
    columns (column ``j`` ordered first; :math:`D'_j \ge \lambda` by I1), and the union-bound
    threshold with ``N`` coordinates and :math:`S = (LL^T)_{jj}`.

    Returns
    -------
    Verdict
        Passed iff all three hold.
    """
    inst = generic_spd(3)
    field, n = inst.field, inst.n
    lo, d = unit_lower_inverse_factor(inst.hd)
    h_inv = inverse(inst.hd)
    recon = lo * dm(sp.diag(*[field.to_sympy(1 / dt) for dt in d]), field) * lo.transpose()
    bad = [] if recon == h_inv else ["L D^-1 L^T != H^-1"]
    for j in range(n):
        order = [j] + [k for k in range(n) if k != j]
        perm = dm(inst.h.extract(order, order), field)
        if h_inv[j, j].element * schur_complement(perm, 0) != field.one:
            bad.append(f"j={j + 1}: (H^-1)_jj * D'_j != 1")
    n_sym = sp.Symbol("N", positive=True, integer=True)
    union = b5_union_bound(DELTA * sp.sqrt(S_I * sp.log(2 * n_sym / P) / 2), count=n_sym)
    if not union.passed:
        bad.append("union bound: " + union.detail)
    return verdict(bad, "H^-1 = L D^-1 L^T; (H^-1)_jj = 1/D'_j <= 1/lam; u = delta sqrt((LL^T)_jj log(2N/p)/2)")
