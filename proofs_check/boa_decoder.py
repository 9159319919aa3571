r"""BoA on decoder attention: the grouped-query sums and the rotary average (THEORY.md I7, "Decoders").

Setting. Generic symbols throughout (independent entries, so a polynomial identity verified here holds
for all real values).

* ``I7.gqa_sum``: a key (or value) head serving :math:`g` query heads. With the queries fixed, the
  logit errors of the query heads add up, :math:`\sum_h\lVert Q_hEX^T\rVert_F^2 =
  \operatorname{tr}\big((\sum_hQ_h^TQ_h)\,E\,X^TX\,E^T\big)`: the row factor is the sum of the Gram
  matrices (the stacked data); the value's :math:`\sum_h\lVert A_hXE^T\rVert_F^2 =
  \operatorname{tr}\big(E(\sum_h(A_hX)^T(A_hX))E^T\big)` is the same algebra with the roles of the
  factors exchanged. Checked for :math:`g = 2`, heads of width 2, 2 tokens, 2 features.
* ``I7.rope_average``: with :math:`R_t = \operatorname{diag}(c_t) + \operatorname{diag}(s_t)J`,
  :math:`J = [[0,-I],[I,0]]` (Hugging Face's ``rotate_half``), the mean over tokens of
  :math:`R_t^TGR_t` is :math:`G\circ M_{cc} + (G\circ M_{cs})J + ((G\circ M_{cs})J)^T + J^T(G\circ
  M_{ss})J`, :math:`M_{cc} = \frac1T\sum_tc_tc_t^T` etc. (``pt.rope_average``). Checked for head
  width 4 and 2 tokens, :math:`G` generic symmetric, :math:`c_t`, :math:`s_t` generic vectors.

Negative controls (``I7.negative_*``): the rotary average without its cross terms
:math:`(G\circ M_{cs})J + (\cdot)^T`, and the key head's factor from one query head of its group
instead of the sum, are rejected.
"""

from __future__ import annotations

import sympy as sp

from .algebra import general_matrix, symbols, symmetric_matrix
from .registry import Verdict, register, verdict

__all__ = ["gqa_sum", "negative_one_head", "negative_rope_no_cross", "rope_average"]


def _fro2(M: sp.Matrix) -> sp.Expr:
    return sum((e ** 2 for e in M), sp.Integer(0))


def gqa_sum(g: int = 2, one_head: bool = False) -> Verdict:
    """sum_h ||Q_h E X^T||^2 = tr((sum_h Q_h^T Q_h) E X^T X E^T), and the value's analogue."""
    dh, T, d = 2, 2, 2
    E = general_matrix(dh, d, "e")
    X = general_matrix(T, d, "x")
    Qs = [general_matrix(T, dh, f"q{h}") for h in range(g)]
    lhs = sum((_fro2(Q * E * X.T) for Q in Qs), sp.Integer(0))
    G = Qs[0].T * Qs[0] if one_head else sum((Q.T * Q for Q in Qs), sp.zeros(dh, dh))
    rhs = (G * E * X.T * X * E.T).trace()
    bad = [] if sp.expand(lhs - rhs) == 0 else ["key: sum_h ||Q_h E X^T||^2 != tr(G E X^T X E^T)"]
    # value: the probabilities A_h of the query heads h that read this value head
    As = [general_matrix(T, T, f"a{h}") for h in range(g)]
    lhs_v = sum((_fro2(A * X * E.T) for A in As), sp.Integer(0))
    H = (As[0] * X).T * (As[0] * X) if one_head else sum(((A * X).T * (A * X) for A in As), sp.zeros(d, d))
    if sp.expand(lhs_v - (E * H * E.T).trace()) != 0:
        bad.append("value: sum_h ||A_h X E^T||^2 != tr(E H_in E^T)")
    return verdict(bad, f"a key/value head serving {g} query heads: the objectives add up to the Kronecker "
                        "form with the summed Gram matrices")


def _J(d: int) -> sp.Matrix:
    h = d // 2
    J = sp.zeros(d, d)
    for i in range(h):
        J[i, h + i] = -1
        J[h + i, i] = 1
    return J


def rope_average(d: int = 4, T: int = 2, cross: bool = True) -> Verdict:
    """mean_t R_t^T G R_t = G o Mcc + (G o Mcs) J + ((G o Mcs) J)^T + J^T (G o Mss) J."""
    G = symmetric_matrix(d, "g")
    J = _J(d)
    cs = [sp.Matrix(symbols(f"c{t}_", d)) for t in range(T)]
    ss = [sp.Matrix(symbols(f"s{t}_", d)) for t in range(T)]
    lhs = sp.zeros(d, d)
    for c, s in zip(cs, ss, strict=True):
        R = sp.diag(*c) + sp.diag(*s) * J
        lhs += R.T * G * R
    lhs = lhs / T
    Mcc = sum((c * c.T for c in cs), sp.zeros(d, d)) / T
    Mcs = sum((c * s.T for c, s in zip(cs, ss, strict=True)), sp.zeros(d, d)) / T
    Mss = sum((s * s.T for s in ss), sp.zeros(d, d)) / T
    A = G.multiply_elementwise(Mcs) * J
    rhs = G.multiply_elementwise(Mcc) + J.T * G.multiply_elementwise(Mss) * J
    if cross:
        rhs += A + A.T
    bad = [f"entry ({i},{j})" for i in range(d) for j in range(d) if sp.expand(lhs[i, j] - rhs[i, j]) != 0]
    return verdict(bad, f"mean_t R_t^T G R_t = G o Mcc + (G o Mcs)J + ((G o Mcs)J)^T + J^T(G o Mss)J "
                        f"(head width {d}, {T} tokens)")


def negative_rope_no_cross() -> Verdict:
    """Control: the rotary average without the cross terms is rejected."""
    wrong = rope_average(cross=False)
    return Verdict(not wrong.passed, "rejected: without the cross terms the average differs" if not wrong.passed
                   else "the check accepted the average without its cross terms: it cannot fail")


def negative_one_head() -> Verdict:
    """Control: one query head's Gram matrix in place of the group's sum is rejected."""
    wrong = gqa_sum(one_head=True)
    return Verdict(not wrong.passed, "rejected: one head's Gram matrix is not the group's objective"
                   if not wrong.passed else "the check accepted one head's Gram matrix: it cannot fail")


register("I7.gqa_sum[g=2]",
         "GQA: a key/value head's objective is the Kronecker form with the summed Gram matrices of its "
         "query heads", "I7")(lambda: gqa_sum(2))
register("I7.rope_average[d=4,T=2]",
         "RoPE: mean_t R_t^T G R_t = G o Mcc + (G o Mcs)J + ((G o Mcs)J)^T + J^T (G o Mss) J", "I7"
         )(lambda: rope_average(4, 2))
register("I7.negative_rope_no_cross",
         "control: the rotary average without its cross terms is rejected (the check can fail)", "I7"
         )(negative_rope_no_cross)
register("I7.negative_one_head",
         "control: one query head's Gram matrix is not the group's objective (the check can fail)", "I7"
         )(negative_one_head)
