"""What every column-by-column algorithm shares: input checks, permutation, rounding, the record.

The algorithms run in *processing order*: ``_setup`` permutes the columns of ``W``, ``X`` (``Xt``)
and the statistics by ``order``; ``_finish`` undoes it and builds the :class:`~ptqtheory.Run`.
The two OPTQ engines (paper iteration A2, blocked fast form A2') live here because Qronos reuses
them for its steps ``t >= 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _linalg
from .._validate import (
    as_matrix,
    as_weights,
    check_choice,
    check_lam,
    check_positive_int,
    check_seed,
    check_weight_rows,
    is_exact,
)
from ..calibration import Damping, _gram, resolve_lam
from ..factor import DataQR, Pivots, SingularHessianError, pivots, pivots_from_data
from ..grids import Grid, check_codes, check_steps, check_values
from ..grids import _round_nearest as round_nearest
from ..grids import _round_stochastic as round_stochastic
from ..orders import columns_in, resolve_order
from ..random import uniforms
from ..records import Run

ROUNDINGS = ("nearest", "stochastic")


class Rounder:
    """Rounds column ``t`` (processing order) of every row; owns the grid and the clip record.

    When the grid carries a min-max rule with groups, ``refit`` replaces the step and zero point
    of a whole group from the current weights, as GPTQ does when it reaches a group's first column.
    """

    def __init__(
        self, grid: Grid, n: int, N: int, order: np.ndarray, rounding: str, seed,
        exact: bool = False,
    ):
        delta, zero, lo, hi = grid.views(n, N)
        if exact:  # a binary float is a rational, so this conversion is exact
            delta, zero = _rational(delta), _rational(zero)
        # Column-major copies: the sweeps read and write one column of every row per step, and a
        # group refit writes delta and zero. lo and hi are only read: broadcast views suffice.
        self.delta, self.zero = (np.array(columns_in(a, order), order="F") for a in (delta, zero))
        self.lo, self.hi = (a if a.strides[1] == 0 else columns_in(a, order) for a in (lo, hi))
        self.group_size = grid.rule.group_size if grid.refits_groups else None
        self.rule = grid.rule
        self.rounding = rounding
        self.u = uniforms(seed, (n, N)) if rounding == "stochastic" else None
        self.clipped = np.zeros((n, N), dtype=bool, order="F")

    def group_start(self, t: int) -> bool:
        return self.group_size is not None and t % self.group_size == 0

    def group_end(self, t: int) -> int:
        return min(t + self.group_size, self.delta.shape[1])

    def refit(self, t: int, values: np.ndarray) -> None:
        d, z = self.rule.fit(values)
        t1 = t + values.shape[1]
        self.delta[:, t:t1] = d[:, None]
        self.zero[:, t:t1] = z[:, None]

    def __call__(self, t: int, x: np.ndarray) -> np.ndarray:
        args = (x, self.delta[:, t], self.zero[:, t], self.lo[:, t], self.hi[:, t])
        if self.rounding == "nearest":
            q, clipped = round_nearest(*args)
        else:
            q, clipped = round_stochastic(*args, self.u[:, t])
        self.clipped[:, t] = clipped
        return q


def _rational(a: np.ndarray) -> np.ndarray:
    import sympy

    out = np.empty(a.shape, dtype=object)
    out.ravel()[:] = [v if isinstance(v, sympy.Rational) else sympy.Rational(v) for v in a.ravel()]
    return out


@dataclass
class Trace:
    """``x_t``, ``q_t`` and ``eta_t`` for every step, in processing order (numpy or torch arrays)."""

    x: np.ndarray
    q: np.ndarray
    eta: np.ndarray

    @classmethod
    def empty(cls, like, zeros_like=_linalg.zeros_like) -> Trace:
        return cls(*(zeros_like(like) for _ in range(3)))

    def record(self, t: int, x: np.ndarray, q: np.ndarray) -> np.ndarray:
        eta = x - q
        self.x[:, t], self.q[:, t], self.eta[:, t] = x, q, eta
        return eta


@dataclass
class Setup:
    """Validated inputs in processing order."""

    W: np.ndarray
    vector: bool
    exact: bool
    order: np.ndarray
    lam: object
    damping: str
    rounding: str
    seed: object
    grid: Grid
    Wp: np.ndarray
    Xp: np.ndarray | None = None
    Xtp: np.ndarray | None = None
    Hp: np.ndarray | None = None
    piv: Pivots | None = None
    qr: DataQR | None = None  # kept when the caller needs least squares on the same data (Qronos)
    notes: list[str] = field(default_factory=list)

    def rounder(self) -> Rounder:
        n, N = self.W.shape
        return Rounder(self.grid, n, N, self.order, self.rounding, self.seed, self.exact)

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
    if not isinstance(grid, Grid):
        raise TypeError(
            "grid must be a pt.Grid, e.g. pt.Grid(delta) for the unbounded grid delta*Z or "
            f"pt.Grid.minmax(W, bits=4); got {type(grid).__name__}"
        )
    check_choice("rounding", rounding, ROUNDINGS)
    check_seed(seed)
    if exact and rounding != "nearest":
        raise ValueError("exact arithmetic supports rounding='nearest' only")
    delta, zero, lo, hi = grid.views(n, N)  # shape check, with a message naming the grid parameter
    if not exact and delta.dtype != object and zero.dtype != object:
        # R1 and R2 before any work: the scales of W and the grid, and the codes of W itself.
        check_weight_rows(np.max(np.abs(Wa), axis=1))
        check_steps(grid.delta)
        check_values("W", Wa, delta, zero, lo, hi)
    Xa = Xta = None
    XtX = None
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
            XtX = _gram(Xa)
    gram_diag = None
    if Xa is not None:
        gram_diag = np.diag(XtX) if XtX is not None else np.einsum("ij,ij->j", Xa, Xa)
    # lambda_max reads the whole X^T X (formed above when it is needed); the others its diagonal.
    lam_abs, damping = (0.0, None) if X is None else resolve_lam(
        lam, XtX if XtX is not None else gram_diag, exact)
    gram_diag = None if gram_diag is None else np.asarray(gram_diag, float)
    H_for_order = None
    named = isinstance(order, str)
    if named and order == "min_pivot":
        src = _gram(Xta) if Xta is not None else (XtX if XtX is not None else _gram(Xa))
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
    """Factor ``H`` (or ``Ht``); with ``Damping(auto=True)`` raise ``lam`` tenfold until it works.

    Exact runs factor the formed ``H`` (kept as ``s.Hp``); float runs factor from the data by QR.
    """
    tries = damping.max_tries if (damping is not None and damping.auto) else 0
    src = s.Xtp if what == "Ht" else s.Xp
    N = src.shape[1]
    G0 = _gram(src) if s.exact else None
    if s.exact:
        s.Hp = G0 + s.lam * np.eye(N, dtype=G0.dtype)
    attempt = 0
    while True:
        try:
            if s.exact:
                return pivots(s.Hp, s.lam, what, columns=s.order)
            if not keep_qr:
                return pivots_from_data(src, s.lam, what, columns=s.order)
            s.qr = DataQR.of(_linalg.augment(src, s.lam))
            return Pivots.from_ul(s.qr.UH, np.sum(src * src, axis=0) + s.lam, s.lam, what, s.order)
        except SingularHessianError:
            if attempt >= tries:
                raise
        attempt += 1
        old = s.lam
        s.lam = check_lam(damping.raised(old, np.mean(np.einsum("ij,ij->j", src, src))))
        s.notes.append(f"automatic damping raised lam from {old:g} to {s.lam:g}")
        s.damping += f" -> lam={s.lam:g}"


def check_method(method: str, block_size) -> int | None:
    if not isinstance(method, str) or method not in ("blocked", "iteration"):
        raise ValueError(f"method must be 'blocked' (A2') or 'iteration' (A2); got {method!r}")
    if method == "blocked":
        return check_positive_int("block_size", block_size)
    return None


def finish(s: Setup, trace: Trace, rounder: Rounder, algorithm: str, variant: str, **extra) -> Run:
    """Undo the permutation and build the record."""
    inv = np.argsort(s.order)

    def back(a):
        out = columns_in(a, inv)
        return out[0] if s.vector else out

    # The grid keeps 2-D (n, N) arrays even for a single row w: a 1-D array would read as per-row.
    # lo and hi may be broadcast views: the record holds arrays of its own.
    lo, hi = (np.array(columns_in(a, inv)) for a in (rounder.lo, rounder.hi))
    grid = Grid.trusted(columns_in(rounder.delta, inv), columns_in(rounder.zero, inv), lo, hi,
                        rule=s.grid.rule)
    for key in ("w_ls",):
        if extra.get(key) is not None:
            extra[key] = back(extra[key])
    if not s.exact:
        check_finite_run(trace.x, trace.q, trace.eta, rounder.delta, rounder.zero, s.order, algorithm)
    return Run(
        algorithm=algorithm, variant=variant, W=s.W[0] if s.vector else s.W,
        Q=back(trace.q), eta=back(trace.eta), x=back(trace.x), clipped=back(rounder.clipped),
        order=s.order, grid=grid, lam=s.lam, rounding=s.rounding, seed=s.seed,
        damping=s.damping, precision="exact" if s.exact else "float64",
        notes=tuple(s.notes), pivots=s.piv, **extra,
    )


def check_finite_run(x, q, eta, delta, zero, order, algorithm: str, precision="float64") -> None:
    """R2/R3 of :mod:`ptqtheory.tolerances` on a finished run (processing order): every ``x_t``, ``q_t``
    and ``eta_t`` finite, every code inside the range that ``precision`` rounds exactly, and every
    (refitted) step inside R1. The inputs were checked before the run; this catches what the error
    feedback did during it, so that no run returns a non-finite or inexactly rounded ``Q``."""
    where = f"{algorithm} (values in processing order; column order[t] of W)"
    for name, a in (("x", x), ("eta", eta)):
        a = np.asarray(a, dtype=float)
        if not np.all(np.isfinite(a)):
            i, t = (int(v) for v in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(
                f"{where}: the value {name} at row {i}, step {t} (column {int(order[t])}) overflowed "
                f"{precision}: the error feedback w_>t -= eta_t L_>t,t grew without bound (clipped errors "
                "on an ill-conditioned H feed back). Fix: damp H (lam > 0, e.g. "
                "pt.Damping.percdamp(0.01)), widen the grid (more bits) so nothing clips, or use float64"
            )
    check_steps(delta, precision, name=f"{algorithm}: a refitted min-max grid step")
    check_codes(q, delta, zero, precision, what=where)


# -- the two OPTQ engines ------------------------------------------------------------------------


def optq_iteration(Wp: np.ndarray, Xhp: np.ndarray, rounder: Rounder, trace: Trace, t0: int = 0):
    r"""A2, the paper iteration, from step ``t0``; ``Wp`` is the current iterate (updated in place).

    .. math::
        q_t = Q(w^{(t-1)}_t),\qquad
        w^{(t)}_{>t} = w^{(t-1)}_{>t} + \eta_t\, \hat X_{>t}^{+} \hat X_t .

    The least-squares coefficients :math:`\hat X_{>t}^{+}\hat X_t` do not depend on the row, so all
    rows are updated at once.
    """
    N = Wp.shape[1]
    for t in range(t0, N):
        if rounder.group_start(t):
            rounder.refit(t, Wp[:, t : rounder.group_end(t)])
        x = Wp[:, t].copy()
        eta = trace.record(t, x, rounder(t, x))
        if t + 1 < N:
            c = _linalg.lstsq(Xhp[:, t + 1 :], Xhp[:, t])
            Wp[:, t + 1 :] += np.outer(eta, c)


def optq_blocked(
    Wp: np.ndarray, Lt: np.ndarray, rounder: Rounder, trace: Trace, block_size: int, t0: int = 0
):
    r"""A2', GPTQ's fast form with lazy block updates of width ``block_size``, from step ``t0``.

    .. math:: w_{>t} \mathrel{-}= \eta_t\, L_{>t,t} \quad (= (\eta_t/U_{tt})\, U_{t,>t},\ H^{-1}=U^TU)

    The updates are applied lazily on two levels: inside a sub-block of :data:`INNER` columns each
    step updates the sub-block's remaining columns (rank one); the rest of the block receives the
    sub-block's updates in one product at its end, and the columns right of the block receive the
    block's updates in one product at the block's end. Every column receives the same updates as in
    the unblocked sweep, summed in another order. A group that starts inside a block is fitted from
    the *current* weights: pending updates are applied to its columns first (:func:`pending_current`;
    reading the stale weights there is the peer bug that makes results depend on ``block_size``).
    Column access is the hot path: ``Wp`` and the trace are best in column-major (Fortran) order.
    """
    N = Wp.shape[1]
    for i1 in range(t0, N, block_size):
        i2 = min(i1 + block_size, N)
        W1 = np.array(Wp[:, i1:i2], order="F")
        E1 = _linalg.zeros_like(W1)
        for j1 in range(i1, i2, INNER):
            j2 = min(j1 + INNER, i2)
            for t in range(j1, j2):
                i = t - i1
                if rounder.group_start(t):
                    rounder.refit(t, pending_current(Wp, W1, E1, Lt, i1, i2, j1, j2, t, rounder.group_end(t)))
                x = W1[:, i]  # column i of W1 is final: later updates touch columns > i only
                eta = trace.record(t, x, rounder(t, x))
                E1[:, i] = eta
                if t + 1 < j2:
                    W1[:, i + 1 : j2 - i1] -= np.outer(eta, Lt[t, t + 1 : j2])
            if j2 < i2:
                W1[:, j2 - i1 :] -= _linalg.dot(E1[:, j1 - i1 : j2 - i1], Lt[j1:j2, j2:i2])
        if i2 < N:
            Wp[:, i2:] -= _linalg.dot(E1, Lt[i1:i2, i2:])


INNER = 16
"""Width of the innermost sub-block of :func:`optq_blocked` (rank-one updates touch at most this
many columns; wider lazy updates are matrix products)."""


def pending_current(Wp, W1, E1, Lt, i1: int, i2: int, j1: int, j2: int, t: int, g1: int,
                    dot=_linalg.dot, cat=np.hstack):
    """The current weights of columns ``t..g1-1`` before step ``t`` of :func:`optq_blocked`: stored
    values minus the updates still pending from the sub-block (columns ``j2..i2-1``) and from the
    block (columns ``>= i2``). ``dot`` and ``cat`` let the torch engine share this function."""
    parts = [W1[:, t - i1 : min(g1, j2) - i1]]
    if g1 > j2:
        c1 = min(g1, i2)
        parts.append(W1[:, j2 - i1 : c1 - i1] - dot(E1[:, j1 - i1 : t - i1], Lt[j1:t, j2:c1]))
    if g1 > i2:
        parts.append(Wp[:, i2:g1] - dot(E1[:, : t - i1], Lt[i1:t, i2:g1]))
    return cat(parts)
