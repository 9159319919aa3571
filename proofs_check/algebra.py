r"""Exact symbolic linear algebra shared by the checks.

All rational identities are verified in an exact field of rational functions
:math:`\mathbb{Q}(s_1, \dots, s_k)` (a sympy ``FractionField`` domain, whose
elements are kept in canonical reduced form), so ``a == b`` is an exact test of
``cancel(a - b) == 0``.  Matrices are sympy ``DomainMatrix`` objects over such a
field; inverses are obtained with ``lu_solve`` (fraction-field ``inv`` is much
slower for polynomial entries).

Conventions (THEORY.md, "Notation"): indices are 0-based in code and 1-based in
THEORY.md; ``H`` is symmetric positive definite; the pivots are
:math:`D_t = H_{tt} - H_{t,>t} H_{>t,>t}^{-1} H_{>t,t}`; ``L`` is unit lower
triangular with :math:`H^{-1} = L D^{-1} L^T`, i.e. :math:`L = C\,\mathrm{diag}(C)^{-1}`
for the lower Cholesky factor :math:`C` of :math:`H^{-1}`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sympy as sp
from sympy.polys.matrices import DomainMatrix

__all__ = [
    "Elem",
    "Field",
    "col",
    "dm",
    "el",
    "eye",
    "fraction_field",
    "general_matrix",
    "gptq_fast",
    "inverse",
    "optq_iterates",
    "optq_paper",
    "reversed_cholesky",
    "schur_complement",
    "show",
    "solve",
    "spd_from_upper",
    "symbols",
    "symmetric_matrix",
    "to_sympy_matrix",
    "ul_factor",
    "unit_lower_inverse_factor",
]

#: A sympy fraction-field domain ``QQ(s1, ..., sk)``.
Field = Any
#: An element of such a field.
Elem = Any


def symbols(prefix: str, n: int, **assumptions: bool) -> list[sp.Symbol]:
    """Return ``n`` real symbols ``prefix1 .. prefixn``.

    Parameters
    ----------
    prefix : str
        Name stem.
    n : int
        Number of symbols.
    **assumptions : bool
        Extra sympy assumptions (``positive=True``, ...).

    Returns
    -------
    list[sympy.Symbol]
        The symbols.
    """
    return [sp.Symbol(f"{prefix}{i + 1}", real=True, **assumptions) for i in range(n)]


def symmetric_matrix(n: int, prefix: str = "h") -> sp.Matrix:
    r"""Generic symmetric :math:`n \times n` matrix with independent symbols ``h_ij`` (i <= j).

    Parameters
    ----------
    n : int
        Size.
    prefix : str
        Name stem of the entries.

    Returns
    -------
    sympy.Matrix
        The matrix; it is SPD on an open set of the symbols, so a rational identity
        verified for it holds for every SPD matrix where both sides are defined.
    """
    h = sp.zeros(n, n)
    for i in range(n):
        for j in range(i, n):
            s = sp.Symbol(f"{prefix}{i + 1}{j + 1}", real=True)
            h[i, j] = s
            h[j, i] = s
    return h


def general_matrix(rows: int, cols: int, prefix: str) -> sp.Matrix:
    """Generic matrix with independent real symbols ``prefix_ij``.

    Parameters
    ----------
    rows, cols : int
        Shape.
    prefix : str
        Name stem of the entries.

    Returns
    -------
    sympy.Matrix
        The matrix.
    """
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{prefix}{i + 1}{j + 1}", real=True))


def spd_from_upper(n: int, prefix: str = "r") -> tuple[sp.Matrix, sp.Matrix]:
    r"""Generic SPD matrix :math:`H = R R^T` with :math:`R` upper triangular, :math:`R_{tt} > 0`.

    Every SPD matrix has exactly one such factor, so identities verified with the
    entries of :math:`R` as free symbols hold for every SPD :math:`H`.  The
    parametrization keeps inverses cheap (denominators are monomials in :math:`R_{tt}`).

    Parameters
    ----------
    n : int
        Size.
    prefix : str
        Name stem of the entries of ``R``.

    Returns
    -------
    tuple[sympy.Matrix, sympy.Matrix]
        ``(H, R)``.
    """
    r = sp.zeros(n, n)
    for i in range(n):
        for j in range(i, n):
            r[i, j] = sp.Symbol(f"{prefix}{i + 1}{j + 1}", real=True, positive=(i == j))
    return r * r.T, r


def fraction_field(*exprs: Any) -> Field:
    """Return the field ``QQ(free symbols of exprs)``, symbols sorted by name.

    Parameters
    ----------
    *exprs : Any
        Sympy expressions, matrices or iterables of them.

    Returns
    -------
    Field
        The fraction field.
    """
    free: set[sp.Symbol] = set()
    stack: list[Any] = list(exprs)
    while stack:
        item = stack.pop()
        if isinstance(item, sp.Basic | sp.MatrixBase):
            free |= item.free_symbols
        elif isinstance(item, Iterable) and not isinstance(item, str | bytes):
            stack.extend(item)
    return sp.QQ.frac_field(*sorted(free, key=str))


def el(field: Field, expr: Any) -> Elem:
    """Convert a sympy expression into an element of ``field``.

    Parameters
    ----------
    field : Field
        Target field.
    expr : Any
        Rational expression in the generators of ``field``.

    Returns
    -------
    Elem
        The element (exact, canonical form).
    """
    return field.from_sympy(sp.sympify(expr))


def dm(mat: sp.Matrix, field: Field) -> DomainMatrix:
    """Convert a sympy matrix into a ``DomainMatrix`` over ``field``.

    Parameters
    ----------
    mat : sympy.Matrix
        Matrix with entries rational in the generators of ``field``.
    field : Field
        Target field.

    Returns
    -------
    DomainMatrix
        The converted matrix.
    """
    rows = [[el(field, mat[i, j]) for j in range(mat.cols)] for i in range(mat.rows)]
    return DomainMatrix(rows, mat.shape, field)


def col(values: Sequence[Elem], field: Field) -> DomainMatrix:
    """Column vector from field elements.

    Parameters
    ----------
    values : Sequence[Elem]
        Entries.
    field : Field
        Their field.

    Returns
    -------
    DomainMatrix
        ``len(values) x 1`` matrix.
    """
    return DomainMatrix([[v] for v in values], (len(values), 1), field)


def eye(n: int, field: Field) -> DomainMatrix:
    """Identity matrix of size ``n`` over ``field``.

    Parameters
    ----------
    n : int
        Size.
    field : Field
        Domain.

    Returns
    -------
    DomainMatrix
        The identity.
    """
    return DomainMatrix.eye(n, field).to_dense()


def solve(a: DomainMatrix, b: DomainMatrix) -> DomainMatrix:
    """Solve ``a x = b`` exactly (``a`` square and invertible over the field).

    Parameters
    ----------
    a : DomainMatrix
        Square matrix.
    b : DomainMatrix
        Right-hand side(s).

    Returns
    -------
    DomainMatrix
        The solution.
    """
    return a.to_dense().lu_solve(b.to_dense())


def inverse(a: DomainMatrix) -> DomainMatrix:
    """Exact inverse via ``lu_solve`` against the identity.

    Parameters
    ----------
    a : DomainMatrix
        Square invertible matrix.

    Returns
    -------
    DomainMatrix
        :math:`a^{-1}`.
    """
    return solve(a, eye(a.shape[0], a.domain))


def schur_complement(h: DomainMatrix, t: int) -> Elem:
    r"""Schur complement :math:`H_{tt} - H_{t,>t} H_{>t,>t}^{-1} H_{>t,t}` (THEORY.md I1).

    Parameters
    ----------
    h : DomainMatrix
        Symmetric matrix.
    t : int
        0-based column index.

    Returns
    -------
    Elem
        The Schur complement of the trailing block :math:`H_{>t,>t}` in :math:`H_{\ge t,\ge t}`.
    """
    n = h.shape[0]
    if t == n - 1:
        return h[t, t].element
    c = solve(h[t + 1 :, t + 1 :], h[t + 1 :, t : t + 1])
    return (h[t, t] - (h[t : t + 1, t + 1 :] * c)[0, 0]).element


def ul_factor(h: DomainMatrix) -> tuple[DomainMatrix, list[Elem]]:
    r"""Square-root-free "UL" factorization :math:`H = U_b\,\mathrm{diag}(d)\,U_b^T`, :math:`U_b` unit upper.

    Computed from the last column backwards (the order in which OPTQ's pivots are
    Schur complements of trailing blocks).

    Parameters
    ----------
    h : DomainMatrix
        Symmetric matrix with nonzero trailing pivots.

    Returns
    -------
    tuple[DomainMatrix, list[Elem]]
        ``(U_b, d)``.
    """
    field = h.domain
    n = h.shape[0]
    a = [[h[i, j].element for j in range(n)] for i in range(n)]
    u = [[field.zero] * n for _ in range(n)]
    d = [field.zero] * n
    for j in reversed(range(n)):
        d[j] = a[j][j] - sum((u[j][k] ** 2 * d[k] for k in range(j + 1, n)), field.zero)
        u[j][j] = field.one
        for i in reversed(range(j)):
            acc = sum((u[i][k] * u[j][k] * d[k] for k in range(j + 1, n)), field.zero)
            u[i][j] = (a[i][j] - acc) / d[j]
    return DomainMatrix(u, (n, n), field), d


def unit_lower_inverse_factor(h: DomainMatrix) -> tuple[DomainMatrix, list[Elem]]:
    r"""Candidate :math:`(L, D)` with :math:`H^{-1} = L D^{-1} L^T`, from :func:`ul_factor`.

    :math:`L = U_b^{-T}` and :math:`D = d`.  This is a *candidate*: the checks verify
    :math:`L^T H L = \mathrm{diag}(D)` exactly, and by uniqueness of the
    :math:`LDL^T` factorization of :math:`H^{-1}` this proves
    :math:`L = C\,\mathrm{diag}(C)^{-1}` and :math:`D_t = C_{tt}^{-2}`.

    Parameters
    ----------
    h : DomainMatrix
        SPD matrix.

    Returns
    -------
    tuple[DomainMatrix, list[Elem]]
        ``(L, D)``.
    """
    ub, d = ul_factor(h)
    return inverse(ub).transpose(), d


def reversed_cholesky(h: sp.Matrix) -> sp.Matrix:
    r"""Upper triangular :math:`U_H` with :math:`H = U_H U_H^T` (the "UL" Cholesky factor).

    Obtained from sympy's Cholesky factor of :math:`J H J` (``J`` the reversal
    permutation): if :math:`JHJ = GG^T` then :math:`U_H = JGJ`.

    Parameters
    ----------
    h : sympy.Matrix
        Symmetric (symbolic) matrix.

    Returns
    -------
    sympy.Matrix
        :math:`U_H` (entries contain square roots).
    """
    n = h.rows
    j = sp.Matrix(n, n, lambda a, b: 1 if a + b == n - 1 else 0)
    return j * (j * h * j).cholesky(hermitian=False) * j


def optq_iterates(h: DomainMatrix, w: Sequence[Elem], eta: Sequence[Elem]) -> list[list[Elem]]:
    r"""Full iterates :math:`w^{(0)}, \dots, w^{(N)}` of the OPTQ paper iteration (THEORY.md A2).

    :math:`w^{(t)}_{>t} = w^{(t-1)}_{>t} + \eta_t H_{>t,>t}^{-1} H_{>t,t}`; coordinates
    :math:`\le t` are left as they were (the quantized value of column ``t`` is
    :math:`q_t = w^{(t-1)}_t - \eta_t`).

    Parameters
    ----------
    h : DomainMatrix
        SPD matrix.
    w : Sequence[Elem]
        Initial weights.
    eta : Sequence[Elem]
        Rounding errors.

    Returns
    -------
    list[list[Elem]]
        ``N + 1`` iterates.
    """
    n = h.shape[0]
    cur = list(w)
    out = [list(cur)]
    for t in range(n):
        if t < n - 1:
            step = solve(h[t + 1 :, t + 1 :], h[t + 1 :, t : t + 1])
            for k in range(t + 1, n):
                cur[k] = cur[k] + eta[t] * step[k - t - 1, 0].element
        out.append(list(cur))
    return out


def optq_paper(h: DomainMatrix, w: Sequence[Elem], eta: Sequence[Elem]) -> tuple[list[Elem], list[Elem]]:
    r"""OPTQ paper iteration (THEORY.md A2) with free rounding errors.

    For :math:`t = 1..N`: :math:`x_t = w^{(t-1)}_t`, :math:`q_t = x_t - \eta_t`, and
    :math:`w^{(t)}_{>t} = w^{(t-1)}_{>t} + \eta_t H_{>t,>t}^{-1} H_{>t,t}`.

    Parameters
    ----------
    h : DomainMatrix
        SPD matrix :math:`H = \hat X^T \hat X`.
    w : Sequence[Elem]
        Initial weights.
    eta : Sequence[Elem]
        Rounding errors :math:`\eta_t = x_t - q_t` (free symbols: any quantizer).

    Returns
    -------
    tuple[list[Elem], list[Elem]]
        ``(x, q)``: the weight at the moment each column is rounded, and the result.
    """
    iterates = optq_iterates(h, w, eta)
    x = [iterates[t][t] for t in range(h.shape[0])]
    return x, [xt - e for xt, e in zip(x, eta, strict=True)]


def gptq_fast(
    ratio: DomainMatrix, w: Sequence[Elem], eta: Sequence[Elem], block: int
) -> tuple[list[Elem], list[Elem]]:
    r"""OPTQ fast form (THEORY.md A2', GPTQ) with lazy block updates of width ``block``.

    With :math:`H^{-1} = U^T U` (``U`` upper), ``ratio[t, k]`` must hold
    :math:`U_{tk}/U_{tt}`.  Inside a block, :math:`w_k \mathrel{-}= \eta_t U_{tk}/U_{tt}` is
    applied immediately to the block's columns; the columns after the block receive
    the accumulated update once the block is done (GPTQ's ``W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]``).

    Parameters
    ----------
    ratio : DomainMatrix
        :math:`U_{tk}/U_{tt}` (unit upper triangular).
    w : Sequence[Elem]
        Initial weights.
    eta : Sequence[Elem]
        Rounding errors.
    block : int
        Block width ``B >= 1``.

    Returns
    -------
    tuple[list[Elem], list[Elem]]
        ``(x, q)`` as in :func:`optq_paper`.
    """
    n = ratio.shape[0]
    cur = list(w)
    x: list[Elem] = [None] * n
    q: list[Elem] = [None] * n
    for i1 in range(0, n, block):
        i2 = min(i1 + block, n)
        for i in range(i1, i2):
            x[i] = cur[i]
            q[i] = cur[i] - eta[i]
            for k in range(i + 1, i2):
                cur[k] = cur[k] - eta[i] * ratio[i, k].element
        for k in range(i2, n):
            cur[k] = cur[k] - sum((eta[i] * ratio[i, k].element for i in range(i1, i2)), ratio.domain.zero)
    return x, q


def to_sympy_matrix(a: DomainMatrix) -> sp.Matrix:
    """Convert a ``DomainMatrix`` back to a sympy matrix.

    Parameters
    ----------
    a : DomainMatrix
        Matrix.

    Returns
    -------
    sympy.Matrix
        Same matrix with sympy expressions.
    """
    return a.to_Matrix()


def show(field: Field, value: Elem, limit: int = 120) -> str:
    """Short printable form of a field element (for failure details).

    Parameters
    ----------
    field : Field
        The element's field.
    value : Elem
        The element.
    limit : int
        Maximum length of the returned string.

    Returns
    -------
    str
        ``str`` of the sympy form, truncated to ``limit`` characters.
    """
    text = str(field.to_sympy(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
