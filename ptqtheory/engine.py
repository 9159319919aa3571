r"""The column-by-column engine, written once over :mod:`ptqtheory.backend` for numpy, exact and torch.

All in *processing order*: a backend's ``setup`` checks, permutes and factors, its ``finish`` undoes
the permutation. Shared: :class:`Rounder` (A1, with GPTQ's group refits), :class:`Trace`, the sweeps
(:func:`optq_blocked` A2', :func:`gpfq_run` A5, :func:`rtn_run` A1), :func:`damped`, the checks and
:func:`record`. Per backend: the factorization (QR of the data in numpy, sympy in exact mode, Cholesky
of :math:`H` on a device), statistics, random draws, device handling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, SupportsFloat, get_args

import numpy as np

from ._validate import check_choice, check_lam, check_positive_int, check_seed
from .alphabets import Alphabet, quantize_alphabet
from .backend import get_backend
from .calibration import Damping
from .factor import SingularHessianError
from .grids import Grid, MinMax, check_codes, check_steps
from .grids import quantize_nearest as round_nearest
from .grids import quantize_stochastic as round_stochastic
from .records import Run

__all__ = [
    "INNER", "ROUNDINGS", "STARTS", "VARIANTS", "AlphabetRounder", "Rounder", "Setup", "Trace",
    "check_finite_run", "check_method", "check_options", "damped", "dead_columns", "gpfq_run", "optq_blocked",
    "pending_current", "record", "rtn_run",
]

Rounding = Literal["nearest", "stochastic"]
Method = Literal["blocked", "iteration"]
Variant = Literal["paper", "ls"]
Start = Literal["w", "ls"]
DeadColumns = Literal["raise", "round"]
Incoherence = Literal["kron", "hadamard"]
# An order is a name or a permutation of range(N) (array_like).
Order = Literal["natural", "decreasing_norm", "increasing_norm", "min_pivot", "random"] | Any

ROUNDINGS, VARIANTS, STARTS = get_args(Rounding), get_args(Variant), get_args(Start)


class Rounder:
    """Rounds column ``t`` (processing order) of every row; owns the grid and the clip record.

    ``delta``, ``zero``: per entry in processing order, column-major (a step reads a column; :meth:`refit`
    writes a group's step and zero point from its current weights at its first column, as GPTQ does, when
    ``rule`` has groups), or broadcast views when no refit writes them and they are the same in every
    column, as ``lo``, ``hi`` may be; ``u``: the uniforms of stochastic rounding, drawn up front
    (``[i, t]`` for row ``i`` at step ``t``) so the result does not depend on the block size.
    """

    def __init__(self, delta, zero, lo, hi, rule: MinMax | None, refits_groups: bool, rounding: str, u,
                 clipped):
        self.delta, self.zero, self.lo, self.hi = delta, zero, lo, hi
        self.rule = rule
        self.group_size: int | None = rule.group_size if refits_groups and rule is not None else None
        self.rounding, self.u, self.clipped = rounding, u, clipped

    def group_start(self, t: int) -> bool:
        return self.group_size is not None and t % self.group_size == 0

    def group_end(self, t: int) -> int:
        assert self.group_size is not None  # called at a group's start (group_start(t) held)
        return min(t + self.group_size, self.delta.shape[1])

    def refit(self, t: int, values) -> None:
        """Refit the group starting at ``t`` from ``values`` (its current weights, all rows)."""
        assert self.rule is not None  # refits happen only when the rule has groups
        d, z = self.rule.fit(values)
        t1 = t + values.shape[1]
        self.delta[:, t:t1] = d[:, None]
        self.zero[:, t:t1] = z[:, None]

    def __call__(self, t: int | slice, x):
        """Round column ``t`` of every row (``t=slice(None)``: all columns at once, for RTN)."""
        args = (x, self.delta[:, t], self.zero[:, t], self.lo[:, t], self.hi[:, t])
        if self.rounding == "nearest":
            q, clipped = round_nearest(*args)
        else:
            q, clipped = round_stochastic(*args, self.u[:, t])
        self.clipped[:, t] = clipped
        return q


class AlphabetRounder(Rounder):
    """The :class:`Rounder` of a finite :class:`~ptqtheory.Alphabet`: same interface, no groups.

    ``scale`` holds one scale per row as a column ``(n, 1)``; ``values`` is the sorted 1-D alphabet,
    both of the run's backend and dtype. ``delta`` and ``zero`` are ``None`` (an alphabet has no step
    or zero point). Rounds by :func:`ptqtheory.alphabets.quantize_alphabet`.
    """

    def __init__(self, scale, values, rounding: str, u, clipped):
        super().__init__(None, None, None, None, None, False, rounding, u, clipped)
        self.scale, self.values = scale, values

    def __call__(self, t: int | slice, x):
        s = self.scale if isinstance(t, slice) else self.scale[:, 0]
        u = None if self.u is None else self.u[:, t]
        q, clipped = quantize_alphabet(x, s, self.values, self.rounding, u)
        self.clipped[:, t] = clipped
        return q


@dataclass
class Trace:
    """``x_t``, ``q_t`` and ``eta_t`` for every step, in processing order (arrays of any backend)."""

    x: Any
    q: Any
    eta: Any

    @classmethod
    def empty(cls, like) -> Trace:
        nx = get_backend(like)
        return cls(*(nx.zeros_like(like) for _ in range(3)))

    def record(self, t: int, x, q):
        eta = x - q
        self.x[:, t], self.q[:, t], self.eta[:, t] = x, q, eta
        return eta


@dataclass(kw_only=True)
class Setup:
    """Validated inputs in processing order (a backend's ``setup`` fills a subclass of this)."""

    W: Any
    vector: bool
    order: Any
    lam: Any
    damping: str
    rounding: Rounding
    seed: Any
    grid: Any
    Wp: Any
    Hp: Any = None
    piv: Any = None
    notes: list[str] = field(default_factory=list)


def record(s: Setup, trace: Trace, rounder: Rounder, back: Callable, algorithm: str, variant: str,
           **fields) -> Run:
    """The :class:`~ptqtheory.Run` of a finished sweep on a backend's setup ``s``; ``back`` takes an
    array in processing order back to the original column order (and a single row to 1-D)."""
    if fields.get("w_ls") is not None:
        fields["w_ls"] = back(fields["w_ls"])
    return Run(
        algorithm=algorithm, variant=variant, W=s.W[0] if s.vector else s.W, Q=back(trace.q),
        eta=back(trace.eta), x=back(trace.x), clipped=back(rounder.clipped), order=s.order, lam=s.lam,
        rounding=s.rounding, seed=s.seed, damping=s.damping, **fields,
    )


def check_options(grid, rounding, seed, examples: str) -> None:
    """Before any work: ``grid`` a :class:`~ptqtheory.Grid` or :class:`~ptqtheory.Alphabet` (the message
    suggests ``examples``), ``rounding`` one of :data:`ROUNDINGS`, ``seed`` usable."""
    if not isinstance(grid, Grid | Alphabet):
        raise TypeError("grid must be a pt.Grid, e.g. pt.Grid(delta) for the unbounded grid "
                        f"delta*Z{examples}, or a pt.Alphabet (e.g. pt.Alphabet.dint(4).fit(W)); "
                        f"got {type(grid).__name__}")
    check_choice("rounding", rounding, ROUNDINGS)
    check_seed(seed)


def check_method(method: str, block_size, methods: tuple[str, ...] = ("blocked", "iteration")) -> int | None:
    """``block_size`` checked for ``method="blocked"`` (``None`` for the iteration)."""
    if not isinstance(method, str) or method not in methods:
        if methods == ("blocked",):
            raise ValueError(
                f"the torch backend runs the blocked fast form (A2', method='blocked'); got method={method!r}. "
                "The paper iteration (A2) is the numpy reference: pass numpy arrays for it"
            )
        raise ValueError(f"method must be 'blocked' (A2') or 'iteration' (A2); got {method!r}")
    if method == "blocked":
        return check_positive_int("block_size", block_size)
    return None


def damped(attempt: Callable, lam, damping: Damping | None, mean_diag: Callable[[], SupportsFloat]):
    """``(attempt(lam), lam used, [(old, new) per increase])``: with ``Damping(auto=True)``, ``lam`` rises
    by :meth:`ptqtheory.Damping.raised` (tenfold; ``mean_diag()``: the undamped Gram matrix's mean diagonal)
    until ``attempt`` works, at most ``damping.max_tries`` times; the last SingularHessianError propagates."""
    tries = damping.max_tries if (damping is not None and damping.auto) else 0
    raised: list[tuple[float, float]] = []
    while True:
        try:
            return attempt(lam), lam, raised
        except SingularHessianError:
            if len(raised) >= tries:
                raise
        old = lam
        assert damping is not None  # tries > 0 only with a Damping
        lam = check_lam(damping.raised(old, mean_diag()))
        raised.append((old, lam))


def check_finite_run(x, q, eta, delta, zero, order, algorithm: str, precision="float64") -> None:
    """R2/R3 of :mod:`ptqtheory.tolerances` on a finished run (host arrays, processing order): every
    ``x_t``, ``q_t`` and ``eta_t`` finite, every code inside the range that ``precision`` rounds exactly,
    and every (refitted) step inside R1. The inputs were checked before the run; this catches what
    the error feedback did during it, so that no run returns a non-finite or inexactly rounded ``Q``.
    ``delta=None`` marks an alphabet run: ``x``, ``q`` and ``eta`` finite is then all that is checked."""
    where = f"{algorithm} (values in processing order; column order[t] of W)"
    for name, a in (("x", x), ("eta", eta)) + ((("q", q),) if delta is None else ()):
        a = np.asarray(a, dtype=float)
        if not np.all(np.isfinite(a)):
            i, t = (int(v) for v in np.argwhere(~np.isfinite(a))[0])
            raise ValueError(
                f"{where}: the value {name} at row {i}, step {t} (column {int(order[t])}) overflowed "
                f"{precision}: the error feedback w_>t -= eta_t L_>t,t grew without bound (clipped errors "
                "on an ill-conditioned H feed back). Fix: damp H (lam > 0, e.g. "
                "pt.Damping.percdamp(0.01)), widen the grid (more bits) so nothing clips, or use float64"
            )
    if delta is None:
        return
    check_steps(delta, precision, name=f"{algorithm}: a refitted min-max grid step")
    check_codes(q, delta, zero, precision, what=where)


def optq_blocked(Wp, L_T, rounder: Rounder, trace: Trace, block_size: int, t0: int = 0) -> None:
    r"""A2', GPTQ's fast form with lazy block updates of width ``block_size``, from step ``t0``.

    .. math:: x_t = w_t,\quad q_t = Q(x_t),\quad \eta_t = x_t - q_t,\quad
              w_{>t} \mathrel{-}= \eta_t\, L_{>t,t} \quad (= (\eta_t/U_{tt})\, U_{t,>t},\ H^{-1}=U^TU)

    for all rows at once (``Wp``, the current iterate, is updated in place). Lazy on two levels: each
    step updates the rest of its :data:`INNER`-column sub-block (rank one); the rest of the block gets
    the sub-block's updates in one product at the sub-block's end, the columns right of the block get
    :math:`E_{block} L^T_{block, >block}` in one product at the block's end. Every column receives the
    unblocked sweep's updates, summed in another order: A2 for every ``block_size`` up to float
    rounding. A group starting inside a block is fitted from the *current* weights (:func:`pending_current`;
    the stale ones are the peer bug that makes results depend on ``block_size``). Hot path: ``Wp`` and
    the trace are best column-major, ``L_T`` row-major.
    """
    nx = get_backend(Wp)
    N = Wp.shape[1]
    for i1 in range(t0, N, block_size):
        i2 = min(i1 + block_size, N)
        W1 = nx.block(Wp, i1, i2)
        E1 = nx.zeros_like(W1)
        for j1 in range(i1, i2, INNER):
            j2 = min(j1 + INNER, i2)
            for t in range(j1, j2):
                i = t - i1
                if rounder.group_start(t):
                    rounder.refit(t, pending_current(Wp, W1, E1, L_T, i1, i2, j1, j2, t, rounder.group_end(t)))
                x = W1[:, i]  # column i of W1 is final: later updates touch columns > i only
                eta = trace.record(t, x, rounder(t, x))
                E1[:, i] = eta
                if t + 1 < j2:
                    nx.sub_outer_(W1[:, i + 1 : j2 - i1], eta, L_T[t, t + 1 : j2])
            if j2 < i2:
                nx.sub_matmul_(W1[:, j2 - i1 :], E1[:, j1 - i1 : j2 - i1], L_T[j1:j2, j2:i2])
        if i2 < N:
            nx.sub_matmul_(Wp[:, i2:], E1, L_T[i1:i2, i2:])


INNER = 16
"""Width of :func:`optq_blocked`'s innermost sub-block: rank-one updates touch at most this many columns."""


def pending_current(Wp, W1, E1, L_T, i1: int, i2: int, j1: int, j2: int, t: int, g1: int):
    """Weights of columns ``t..g1-1`` before step ``t`` of :func:`optq_blocked`: stored values minus the
    updates still pending from the sub-block (columns ``j2..i2-1``) and the block (columns ``>= i2``)."""
    nx = get_backend(Wp)
    parts = [W1[:, t - i1 : min(g1, j2) - i1]]
    if g1 > j2:
        c1 = min(g1, i2)
        parts.append(W1[:, j2 - i1 : c1 - i1] - nx.dot(E1[:, j1 - i1 : t - i1], L_T[j1:t, j2:c1]))
    if g1 > i2:
        parts.append(Wp[:, i2:g1] - nx.dot(E1[:, : t - i1], L_T[i1:t, i2:g1]))
    return nx.hcat(parts)


def rtn_run(s, grid, finish):
    """A1 on a backend's setup ``s``: every entry rounded at once on the grid as fitted (no refit)."""
    s.grid = grid.frozen()
    rounder = s.rounder()
    q = rounder(slice(None), s.Wp)
    run = finish(s, Trace(x=get_backend(s.Wp).copy(s.Wp), q=q, eta=s.Wp - q), rounder, "rtn", "reference")
    run.grid.rule = grid.rule
    return run


def dead_columns(alive, order, policy: str, notes: list[str]) -> None:
    """GPFQ's step divides by :math:`\\|\tilde X_t\\|^2`: refuse dead columns (``policy="raise"``) or
    record that their weights are rounded directly (``"round"``)."""
    dead = [int(order[t]) for t, ok in enumerate(alive) if not ok]
    if dead and policy == "raise":
        raise ValueError(
            f"Xt has zero columns {dead[:10]} (dead inputs): GPFQ's step divides by ||Xt_t||^2. "
            "Pass dead_columns='round' to round those weights to nearest (recorded), or drop the columns."
        )
    if dead:
        notes.append(f"dead columns {dead} of Xt: their weights were rounded directly")


def gpfq_run(s, grid, finish, XT, XtT, norms, cross, alive):
    r"""A5 (the update in :func:`ptqtheory.gpfq`) on a backend's setup ``s``, all rows together, on the
    grid as fitted (no refit). Row ``t`` of ``XT``/``XtT`` is column ``t`` of :math:`X`/:math:`\tilde X`,
    ``norms[t]`` is :math:`\|\tilde X_t\|^2` and ``cross[t]`` is :math:`X_t^T\tilde X_t` (processing
    order). The run's ``residual`` is :math:`u_N = Xw - \tilde Xq`."""
    s.grid = grid.frozen()
    rounder, trace = s.rounder(), Trace.empty(s.Wp)
    Wp, nx = s.Wp, get_backend(s.Wp)
    u = nx.zeros_like(Wp, (Wp.shape[0], XT.shape[1]))
    for t in range(Wp.shape[1]):
        w_t = Wp[:, t]
        x = (nx.dot(u, XtT[t]) + w_t * cross[t]) / norms[t] if alive[t] else nx.copy(w_t)
        q = rounder(t, x)
        trace.record(t, x, q)
        nx.add_outer_(u, w_t, XT[t])
        nx.sub_outer_(u, q, XtT[t])
    run = finish(s, trace, rounder, "gpfq", "reference", residual=u[0] if s.vector else u)
    run.grid.rule = grid.rule
    return run
