"""The numpy and exact backend of :mod:`ptqtheory.engine` (:func:`setup`, :func:`finish`), and the paper
iteration A2 (:func:`optq_iteration`), the readable numpy/exact reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
import sympy

from .. import _linalg, engine
from .._validate import as_matrix, as_weights, check_weight_rows, is_exact
from ..alphabets import Alphabet
from ..calibration import Damping, _gram, resolve_lam
from ..engine import AlphabetRounder, Rounder, Trace, check_finite_run, damped, record
from ..factor import DataQR, Pivots, pivots, pivots_from_data
from ..grids import Grid, check_steps, check_values
from ..orders import columns_in, resolve_order
from ..random import uniforms
from ..records import Run

__all__ = ["Setup", "finish", "optq_iteration", "setup"]


_rational = np.vectorize(sympy.Rational, otypes=[object])  # each entry as an exact rational (a Rational stays)


@dataclass(kw_only=True)
class Setup(engine.Setup):
    """Validated numpy (or exact) inputs in processing order."""

    exact: bool
    Xp: np.ndarray | None = None
    Xtp: np.ndarray | None = None
    qr: DataQR | None = None  # kept when the caller needs least squares on the same data (Qronos)

    def rounder(self) -> Rounder:
        """The shared :class:`~ptqtheory.engine.Rounder` on numpy arrays (rationals when ``exact``)."""
        n, N = self.W.shape
        u = uniforms(self.seed, (n, N)) if self.rounding == "stochastic" else None
        clipped = np.zeros((n, N), dtype=bool, order="F")
        if isinstance(self.grid, Alphabet):  # one scale per row: the column order does not touch it
            return AlphabetRounder(self.grid.row_scale(n)[:, None], np.asarray(self.grid.values), self.rounding,
                                   u, clipped)
        delta, zero, lo, hi = self.grid.views(n, N)
        if self.exact:  # a binary float is a rational, so this conversion is exact
            delta, zero = _rational(delta), _rational(zero)
        delta, zero = (np.array(columns_in(a, self.order), order="F") for a in (delta, zero))
        lo, hi = (a if a.strides[1] == 0 else columns_in(a, self.order) for a in (lo, hi))
        return Rounder(delta, zero, lo, hi, self.grid.rule, self.grid.refits_groups, self.rounding, u, clipped)

    def augmented(self, Xp: np.ndarray) -> np.ndarray:
        r""":math:`\hat X = [X; \sqrt\lambda I]` in processing order."""
        return _linalg.augment(Xp, self.lam)


def setup(
    W, X, lam, grid, rounding, order, seed, *, Xt=None, factor: str | None = "H", keep_qr: bool = False
) -> Setup:
    """Check every input, resolve ``lam`` and ``order``, permute, and factor ``H`` (or ``Ht``)."""
    Wa, vector = as_weights(W)
    n, N = Wa.shape
    exact = is_exact(Wa)
    engine.check_options(grid, rounding, seed, " or pt.Grid.minmax(W, bits=4)")
    if exact and rounding != "nearest":
        raise ValueError("exact arithmetic supports rounding='nearest' only")
    if isinstance(grid, Alphabet):
        if exact:
            raise ValueError("exact arithmetic (sympy rationals) supports pt.Grid only; an Alphabet rounds in "
                             "float64: pass float arrays, or a pt.Grid")
        # shape check (naming the scale), then R1 on the step every bound reads, s_i G
        check_steps(grid.largest_steps(n), name="alphabet scale times its largest gap, s_i G")
        check_weight_rows(np.max(np.abs(Wa), axis=1))
    else:
        delta, zero, lo, hi = grid.views(n, N)  # shape check, with a message naming the grid parameter
        if not exact and delta.dtype != object and zero.dtype != object:
            # R1 and R2 before any work: the scales of W and the grid, and the codes of W itself.
            check_weight_rows(np.max(np.abs(Wa), axis=1))
            check_steps(grid.delta)
            check_values("W", Wa, delta, zero, lo, hi)
    Xa = Xta = None
    gram_X = gram_diag = None
    lam_abs, damping = 0.0, None
    if X is not None:
        Xa = as_matrix("X", X, N)
        if is_exact(Xa) != exact:
            raise ValueError("W and X must both be exact (object arrays of rationals) or both numeric")
        if Xt is not None:
            Xta = as_matrix("Xt", Xt, N, m=Xa.shape[0])
            if is_exact(Xta) != exact:
                raise ValueError("W and Xt must both be exact or both numeric")
        # The float path factors from the data (QR), so X^T X itself is formed only when something
        # needs more than its diagonal: exact arithmetic, Damping.lambda_max, the min-pivot order.
        if exact or (isinstance(lam, Damping) and lam.needs_gram):
            gram_X = _gram(Xa)
        gram_diag = np.diag(gram_X) if gram_X is not None else np.einsum("ij,ij->j", Xa, Xa)
        lam_abs, damping = resolve_lam(lam, gram_X if gram_X is not None else gram_diag, exact)
        gram_diag = np.asarray(gram_diag, float)
    H_for_order = None
    named = isinstance(order, str)
    if named and order == "min_pivot":
        # Xa is None only if X was not given, which nothing checks here (RTN uses the natural order).
        src = _gram(Xta) if Xta is not None else (gram_X if gram_X is not None else _gram(cast(np.ndarray, Xa)))
        H_for_order = np.asarray(src, float) + float(lam_abs) * np.eye(N)
        gram_diag = np.diag(np.asarray(src, float))
    elif Xta is not None and named and order.endswith("norm"):
        gram_diag = np.diag(np.asarray(_gram(Xta), float))
    perm = resolve_order(order, N, gram_diag=gram_diag, H=H_for_order, seed=seed)
    s = Setup(
        W=Wa, vector=vector, exact=exact, order=perm, lam=lam_abs,
        damping="absolute" if damping is None else damping.describe(), rounding=rounding,
        seed=seed, grid=grid, Wp=np.array(columns_in(Wa, perm), order="F"),
    )
    if Xa is not None:  # Xa and Xta are copies made by as_matrix: no copy for the natural order
        s.Xp = columns_in(Xa, perm)
        s.Xtp = None if Xta is None else columns_in(Xta, perm)
    if factor is not None:
        s.piv = _factor(s, damping, factor, keep_qr)
    return s


def _factor(s: Setup, damping: Damping | None, what: str, keep_qr: bool = False) -> Pivots:
    """Factor ``H`` (or ``Ht``) under :func:`ptqtheory.engine.damped`: the formed ``H`` when exact (kept
    as ``s.Hp``), else from the data by QR."""
    # None only without X, which nothing checks before this: src.shape then fails.
    src = cast(np.ndarray, s.Xtp if what == "Ht" else s.Xp)
    N = src.shape[1]
    G0 = _gram(src) if s.exact else None

    def attempt(lam):
        if s.exact:
            s.Hp = G0 + lam * np.eye(N, dtype=G0.dtype)
            return pivots(s.Hp, lam, what, columns=s.order)
        if not keep_qr:
            return pivots_from_data(src, lam, what, columns=s.order)
        s.qr = DataQR.of(_linalg.augment(src, lam))
        return Pivots.from_ul(s.qr.UH, np.sum(src * src, axis=0) + lam, lam, what, s.order)

    piv, s.lam, raised = damped(attempt, s.lam, damping, lambda: np.mean(np.einsum("ij,ij->j", src, src)))
    for old, new in raised:
        s.notes.append(f"automatic damping raised lam from {old:g} to {new:g}")
        s.damping += f" -> lam={new:g}"
    return piv


def finish(s: Setup, trace: Trace, rounder: Rounder, algorithm: str, variant: str, **extra) -> Run:
    """Undo the permutation and build the record."""
    inv = np.argsort(s.order)

    def back(a):
        out = columns_in(a, inv)
        return out[0] if s.vector else out

    grid: Grid | Alphabet
    if isinstance(s.grid, Alphabet):
        grid = s.grid.per_row(s.W.shape[0])
    else:
        # The grid keeps 2-D (n, N) arrays even for a single row w: a 1-D array would read as per-row.
        # lo and hi may be broadcast views: the record holds arrays of its own.
        lo, hi = (np.array(columns_in(a, inv)) for a in (rounder.lo, rounder.hi))
        grid = Grid.trusted(columns_in(rounder.delta, inv), columns_in(rounder.zero, inv), lo, hi,
                            rule=s.grid.rule)
    if not s.exact:
        check_finite_run(trace.x, trace.q, trace.eta, rounder.delta, rounder.zero, s.order, algorithm)
    return record(s, trace, rounder, back, algorithm, variant, grid=grid, notes=tuple(s.notes), pivots=s.piv,
                  precision="exact" if s.exact else "float64", **extra)


def optq_iteration(Wp: np.ndarray, Xhp: np.ndarray, rounder: Rounder, trace: Trace, t0: int = 0):
    r"""A2, the paper iteration of :func:`ptqtheory.optq`, from step ``t0``; ``Wp`` is the current iterate
    (updated in place). Its least-squares coefficients :math:`\hat X_{>t}^{+}\hat X_t` do not depend on
    the row, so all rows are updated at once."""
    N = Wp.shape[1]
    for t in range(t0, N):
        if rounder.group_start(t):
            rounder.refit(t, Wp[:, t : rounder.group_end(t)])
        x = Wp[:, t].copy()
        eta = trace.record(t, x, rounder(t, x))
        if t + 1 < N:
            c = _linalg.lstsq(Xhp[:, t + 1 :], Xhp[:, t])
            Wp[:, t + 1 :] += np.outer(eta, c)
