r"""LDLQ (QuIP) is OPTQ (THEORY.md A3, I3).

With :math:`H^{-1} = CC^T`, :math:`L = C\,\mathrm{diag}(C)^{-1}` and :math:`D = \mathrm{diag}(C)^{-2}`,
QuIP's factorization is :math:`H = (U_0 + I) D (U_0 + I)^T` with :math:`U_0 + I = L^{-T}`
(:math:`U_0` strictly upper).  LDLQ rounds column by column
:math:`x_k = w_k + \sum_{j<k} (w_j - q_j) (U_0)_{jk}`, :math:`q_k = Q(x_k)`.

Derivation: OPTQ has :math:`x = w - (L - I)\eta` and :math:`\eta = L^{-1}(w - q)`, so
:math:`x = w - (I - L^{-1})(w-q) = w + U_0^T(w - q)` because :math:`L^{-1} = (U_0 + I)^T`;
this is LDLQ's recursion.  The checks run both recursions with free rounding errors.
"""

from __future__ import annotations

from sympy.polys.matrices import DomainMatrix

from .algebra import dm, fraction_field, inverse, optq_paper, show, symbols, unit_lower_inverse_factor
from .instances import SpdInstance, generic_spd, inverse_factor, with_weights
from .registry import Verdict, register, verdict

__all__ = ["ldl_factors", "ldlq_equals_optq", "ldlq_proxy_loss", "ldlq_run"]


def ldlq_run(u0: DomainMatrix, w: list[object], eta: list[object]) -> tuple[list[object], list[object]]:
    r"""LDLQ column recursion with free rounding errors.

    Parameters
    ----------
    u0 : DomainMatrix
        Strictly upper triangular :math:`U_0`.
    w : list
        Weights of one row.
    eta : list
        Rounding errors :math:`\eta_k = x_k - q_k`.

    Returns
    -------
    tuple[list, list]
        ``(x, q)`` with :math:`x_k = w_k + \sum_{j<k}(w_j - q_j)(U_0)_{jk}`.
    """
    n = u0.shape[0]
    zero = u0.domain.zero
    x: list[object] = []
    q: list[object] = []
    for k in range(n):
        xk = w[k] + sum(((w[j] - q[j]) * u0[j, k].element for j in range(k)), zero)
        x.append(xk)
        q.append(xk - eta[k])
    return x, q


def _u0(inst: SpdInstance, lo: DomainMatrix) -> DomainMatrix:
    n = inst.n
    return inverse(lo).transpose() - DomainMatrix.eye(n, inst.field).to_dense()


def ldl_factors(n: int) -> Verdict:
    r"""Check :math:`U_0 = L^{-T} - I` is strictly upper and :math:`(U_0+I)D(U_0+I)^T = H`.

    Parameters
    ----------
    n : int
        Size (generic symmetric H).

    Returns
    -------
    Verdict
        Passed iff both hold with :math:`D_t` the Schur complements (:math:`= C_{tt}^{-2}`, I1).
    """
    inst, _, _ = with_weights("generic", n)
    lo, _ = inverse_factor("generic", n)
    field = inst.field
    u0 = _u0(inst, lo)
    bad = [
        f"U0[{i + 1},{j + 1}] != 0" for i in range(n) for j in range(i + 1) if u0[i, j].element != field.zero
    ]
    d = DomainMatrix.diag(list(inst.pivots), field).to_dense()
    one = DomainMatrix.eye(n, field).to_dense()
    if (u0 + one) * d * (u0 + one).transpose() != inst.hd:
        bad.append("(U0 + I) D (U0 + I)^T != H")
    return verdict(bad, "U0 = L^-T - I strictly upper, H = (U0 + I) D (U0 + I)^T with D_t = C_tt^-2")


def ldlq_equals_optq(n: int) -> Verdict:
    r"""Check LDLQ's :math:`x_k` equals OPTQ's for symbolic ``w``, ``eta`` and generic ``H``.

    Parameters
    ----------
    n : int
        Size.

    Returns
    -------
    Verdict
        Passed iff every :math:`x_k` (hence :math:`q_k`) agrees.
    """
    inst, w, eta = with_weights("generic", n)
    lo, _ = inverse_factor("generic", n)
    x_ldlq, _ = ldlq_run(_u0(inst, lo), w, eta)
    x_optq, _ = optq_paper(inst.hd, w, eta)
    bad = [f"k={k + 1}: {show(inst.field, x_ldlq[k] - x_optq[k])}" for k in range(n) if x_ldlq[k] != x_optq[k]]
    return verdict(bad, f"x_k(LDLQ) = x_k(OPTQ) for k = 1..{n}")


for _n in (3, 4):
    register(
        f"A3.ldl_factors[N={_n}]",
        "H = (U0 + I) D (U0 + I)^T with U0 + I = L^-T strictly-upper-plus-identity and D = diag(C)^-2",
        "A3",
    )(lambda _n=_n: ldl_factors(_n))
    register(
        f"A3.ldlq_equals_optq[N={_n}]",
        "LDLQ x_k = w_k + sum_j<k (w_j - q_j) U0_jk equals OPTQ's x_k for symbolic w, eta (LDLQ is OPTQ)",
        "A3, T4",
    )(lambda _n=_n: ldlq_equals_optq(_n))


@register(
    "I3.proxy_loss[n=2,N=3]",
    "LDLQ on 2 rows: tr((W_hat - W) H (W_hat - W)^T) = sum_rows sum_t eta_t^2 D_t (symbolic W, eta, H)",
    "I3",
)
def ldlq_proxy_loss() -> Verdict:
    r"""QuIP's proxy loss identity for two rows with independent weights and rounding errors.

    Returns
    -------
    Verdict
        Passed iff the trace equals the pivot-weighted sum of squared rounding errors.
    """
    n = 3
    h = generic_spd(n).h
    w_rows = [symbols("w", n), symbols("v", n)]
    e_rows = [symbols("eta", n), symbols("eps", n)]
    field = fraction_field(h, w_rows, e_rows)
    hd = dm(h, field)
    lo, d = unit_lower_inverse_factor(hd)
    u0 = inverse(lo).transpose() - DomainMatrix.eye(n, field).to_dense()
    total = field.zero
    rhs = field.zero
    for ws, es in zip(w_rows, e_rows, strict=True):
        w = [field.from_sympy(s) for s in ws]
        eta = [field.from_sympy(s) for s in es]
        _, q = ldlq_run(u0, w, eta)
        err = DomainMatrix([[q[t] - w[t]] for t in range(n)], (n, 1), field)
        total += (err.transpose() * hd * err)[0, 0].element
        rhs += sum((eta[t] ** 2 * d[t] for t in range(n)), field.zero)
    bad = [] if total == rhs else [f"difference {show(field, total - rhs)}"]
    return verdict(bad, "tr((W_hat-W) H (W_hat-W)^T) = sum_rows sum_t eta_t^2 D_t exactly")
