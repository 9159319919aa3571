"""A seeded, time-boxed hunt for counterexamples to the identities I1-I6 and the bounds B1-B12.

Each instance draws an adversarial family (ill-conditioned, rank-deficient, outlier columns, heavy
tails, Gaussian), a shape regime (N >> m, m >> N, square), a damping from tiny to huge, a grid
(unbounded, per row, per entry, or min-max, which may clip and then makes the clip-free bounds not
apply), an order and an algorithm, then certifies the run. Per bound it counts the rows where the
bound applied, the violations, and the largest empirical/bound ratio (how tight the bound is).

Probabilistic bounds are checked at a tiny failure probability (default ``p = 1e-9``): a failure
is then a counterexample unless the number of rows checked approaches ``1/p`` (the report prints
the expected number of failures, ``rows * p``).
"""

from __future__ import annotations

import json
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from . import algorithms as alg
from ._validate import check_nonnegative_real, check_positive_int, check_probability
from .api import certify
from .engine import Variant
from .factor import SingularHessianError
from .grids import Grid
from .instances import FAMILIES, make_instance
from .report import bound_key
from .tolerances import RTOL_IDENTITY

__all__ = ["HuntReport", "hunt"]

ALGORITHMS = ("optq", "optq-stochastic", "ldlq", "ldlq-stochastic", "qronos", "qronos-ls",
              "qronos-stochastic", "rtn", "gpfq")
LAM_FACTORS = (0.0, 1e-10, 1e-6, 1e-2, 1.0, 1e3)
REGIMES = ("square", "wide", "tall")


@dataclass
class Tally:
    kind: str
    instances: int = 0
    rows: int = 0
    violations: int = 0
    max_ratio: float = 0.0
    worst: dict = field(default_factory=dict)

    def add(self, rows: int, ratio: float, spec: dict, violations: int) -> None:
        """One instance: ``rows`` checked, its largest ratio (``worst`` keeps the spec of the largest)."""
        self.instances += 1
        self.rows += rows
        self.violations += violations
        if ratio > self.max_ratio:
            self.max_ratio, self.worst = ratio, spec


@dataclass
class HuntReport:
    seed: int
    budget: float
    p: float
    instances: int = 0
    refused: int = 0
    seconds: float = 0.0
    tallies: dict = field(default_factory=dict)
    counterexamples: list = field(default_factory=list)

    @property
    def violations(self) -> int:
        return sum(t.violations for t in self.tallies.values())

    @property
    def checked(self) -> bool:
        """At least one instance was quantized and certified (else ``ptqtheory check`` fails the report)."""
        return self.instances > 0

    def table(self) -> str:
        head = (f"{'check':<16}{'kind':<14}{'instances':>10}{'rows':>9}{'violations':>11}"
                f"{'max ratio':>12}{'expected fails':>16}")
        lines = [head, "-" * len(head)]
        # identities first, then as :func:`ptqtheory.report.bound_key` orders them
        for label in sorted(self.tallies, key=lambda label: (label[0] != "I", *bound_key(label))):
            t = self.tallies[label]
            exp = f"{t.rows * self.p:.1e}" if t.kind == "probability" else "-"
            lines.append(f"{label:<16}{t.kind:<14}{t.instances:>10}{t.rows:>9}{t.violations:>11}"
                         f"{t.max_ratio:>12.4g}{exp:>16}")
        lines.append("identities: 'max ratio' is the largest relative gap over rows above float64 "
                     "rounding level (allowance <= 1e-3 of the sides)")
        lines.append(f"{self.instances} instances ({self.refused} refused: singular H at lam = 0) in "
                     f"{self.seconds:.0f} s, seed {self.seed}, p = {self.p:g}; "
                     f"violations: {self.violations}")
        if not self.checked:
            lines.append("NOTHING WAS CHECKED: no instance completed within the budget; "
                         "this report is not evidence of anything")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({
            "seed": self.seed, "budget_s": self.budget, "p": self.p, "instances": self.instances,
            "checked": self.checked,
            "refused": self.refused, "seconds": self.seconds, "violations": self.violations,
            "checks": {k: vars(v) for k, v in self.tallies.items()},
            "counterexamples": self.counterexamples,
        }, indent=2, default=float)


def _draw(rng: np.random.Generator, index: int) -> dict:
    regime = REGIMES[rng.integers(len(REGIMES))]
    small, large = int(rng.integers(1, 12)), int(rng.integers(24, 97))
    m, N = {"square": (large, int(rng.integers(24, 97))), "wide": (small, large),
            "tall": (large * 4, small + 1)}[regime]
    return {
        "index": index, "family": FAMILIES[rng.integers(len(FAMILIES))], "regime": regime,
        "m": m, "N": N, "n": int(rng.integers(1, 6)), "cond": float(10 ** rng.uniform(0, 8)),
        "lam_factor": float(LAM_FACTORS[rng.integers(len(LAM_FACTORS))]),
        "grid": ("scalar", "per_row", "per_entry", "minmax", "minmax_groups")[rng.integers(5)],
        "order": ("natural", "decreasing_norm", "min_pivot", "random")[rng.integers(4)],
        "algorithm": ALGORITHMS[rng.integers(len(ALGORITHMS))],
        "data_seed": int(rng.integers(2**31)),
    }


def _grid(kind: str, W: np.ndarray, rng: np.random.Generator) -> Grid:
    n, N = W.shape
    s = float(np.std(W)) or 1.0
    size = {"scalar": None, "per_row": n, "per_entry": (n, N)}  # the steps' shape, per kind
    if kind in size:
        return Grid(s * 10 ** rng.uniform(-3, 0.5, size=size[kind]))
    if kind == "minmax":
        return Grid.minmax(W, bits=int(rng.integers(2, 9)), sym=bool(rng.integers(2)))
    return Grid.minmax(W, bits=int(rng.integers(2, 9)), group_size=int(rng.integers(1, 33)))


def _run(spec: dict, inst, lam: float, grid: Grid, seed: int):
    a = spec["algorithm"]
    rounding = "stochastic" if a.endswith("stochastic") else "nearest"
    kw = dict(grid=grid, rounding=rounding, seed=seed, order=spec["order"])
    if a.startswith("optq"):
        return alg.optq(inst.W, inst.X, lam=lam, block_size=1 + seed % 64, **kw), None
    if a.startswith("ldlq"):
        return alg.ldlq(inst.W, inst.X, lam=lam, **kw), None
    if a.startswith("qronos"):
        variant: Variant = "ls" if a == "qronos-ls" else ("paper" if seed % 2 else "ls")
        return alg.qronos(inst.W, inst.X, inst.Xt, lam=lam, variant=variant, **kw), inst.Xt
    if a == "rtn":
        return alg.rtn(inst.W, grid=grid, rounding="stochastic" if seed % 2 else "nearest",
                       seed=seed), None
    return alg.gpfq(inst.W, inst.X, inst.Xt, grid=grid, seed=seed, order=spec["order"]
                    if spec["order"] != "min_pivot" else "natural"), inst.Xt


def check_budget(budget) -> float:
    """A finite number of seconds > 0 (a hunt with no time checks nothing)."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise TypeError(f"budget must be a number of seconds > 0; got {budget!r} ({type(budget).__name__})")
    value = float(budget)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"budget must be a finite number of seconds > 0; got {budget!r}")
    return value


def hunt(seed: int = 0, budget: float = 60.0, p: float = 1e-9, rtol: float = RTOL_IDENTITY,
         progress=None, max_instances: int | None = None) -> HuntReport:
    """Search for counterexamples for ``budget`` seconds; see the module notes.

    Parameters
    ----------
    seed : int
        Everything drawn derives from it: the same seed checks the same instances, in order.
    budget : float
        Seconds to search, finite and > 0 (the instance running at the deadline is finished).
    p : float
        Failure probability for the probabilistic bounds.
    rtol : float
        Relative tolerance of the identities (plus their float64 rounding allowance).
    progress : callable, optional
        Called with the report after each instance (for a progress line).
    max_instances : int, optional
        Stop after this many draws as well: the same seed and count replay the same instances
        whatever the machine's speed (each counterexample records its draw ``index``).
    """
    seed = check_positive_int("seed", seed, 0)
    budget = check_budget(budget)
    p = check_probability("p", p)
    rtol = check_nonnegative_real("rtol", rtol)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable (called with the report) or None; got {progress!r}")
    if max_instances is not None:
        max_instances = check_positive_int("max_instances", max_instances)
    rng = np.random.default_rng(seed)
    report = HuntReport(seed=seed, budget=budget, p=p)
    start = time.perf_counter()
    while time.perf_counter() - start < budget:
        if max_instances is not None and report.instances + report.refused >= max_instances:
            break
        spec = _draw(rng, report.instances + report.refused)
        inst = make_instance(spec["data_seed"], spec["family"], m=spec["m"], N=spec["N"],
                             n=spec["n"], cond=spec["cond"])
        lam = spec["lam_factor"] * float(np.mean(np.sum(inst.X**2, axis=0)))
        grid = _grid(spec["grid"], inst.W, np.random.default_rng(spec["data_seed"]))
        try:
            run, Xt = _run(spec, inst, lam, grid, spec["data_seed"])
        except SingularHessianError:
            report.refused += 1
            continue
        c = certify(run, inst.X, Xt, p=p, full_pivot_check=spec["N"] <= 48)
        report.instances += 1
        _tally_identity(report, c, spec, rtol)
        for b in c.bounds:
            applies = b.applies
            if not applies.any():
                continue
            bad = applies & ~b.holds
            report.tallies.setdefault(b.label, Tally(b.kind)).add(
                int(applies.sum()), float(np.max(np.where(applies, b.ratio, 0.0))), spec, int(bad.sum()))
            if bad.any():
                report.counterexamples.append({"check": b.label, "spec": spec,
                                               "ratio": float(np.max(b.ratio[bad]))})
        report.seconds = time.perf_counter() - start
        if progress is not None:
            progress(report)
    report.seconds = time.perf_counter() - start
    return report


def _tally_identity(report: HuntReport, c, spec: dict, rtol: float) -> None:
    if c.identity is None:
        return
    ok = c.identity_holds(rtol)
    keep = c.resolved  # rows at rounding level are judged by the allowance, not by their gap
    gap = float(np.max(np.asarray(c.identity_gap, float)[keep])) if keep.any() else 0.0
    report.tallies.setdefault(c.identity, Tally("identity")).add(len(c.err_l2), gap, spec, int((~ok).sum()))
    if not ok.all():
        report.counterexamples.append({"check": c.identity, "spec": spec, "gap": gap})
    if c.pivot_check is not None:
        pc = c.pivot_check
        holds = pc.holds(rtol)
        report.tallies.setdefault("I1", Tally("identity")).add(len(pc.D), pc.gap_projection or 0.0, spec,
                                                                 int(not holds))
        if not holds:
            report.counterexamples.append({"check": "I1", "spec": spec})
