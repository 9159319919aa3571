"""Registry of the symbolic proof checks and the result type they return.

Every check is a zero-argument function decorated with :func:`register`.  The
decorator records a stable name (``"I1.schur[N=3]"``), a one-line statement and
the THEORY.md label it supports, and turns the function into a :class:`Check`;
calling the :class:`Check` runs the function and returns a :class:`CheckResult`.
An exception raised inside a check is caught and reported as a failure, so a
crash can never be mistaken for a pass.

The body of a check returns a :class:`Verdict` (``passed``, ``detail``).  The
helpers :func:`verdict` and :func:`expect_all` build verdicts from lists of
mismatches.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "CHECK_MODULES",
    "REGISTRY",
    "Check",
    "CheckResult",
    "Verdict",
    "all_checks",
    "expect_all",
    "register",
    "run_all",
    "verdict",
]

#: Modules (relative to this package) whose import registers checks, in print order.
CHECK_MODULES: tuple[str, ...] = (
    "lstsq",
    "pivots",
    "optq",
    "ldlq",
    "qronos",
    "stochastic",
    "concentration",
    "optimality",
    "magr",
    "alphabet",
    "boa",
    "boa_decoder",
    "owq",
    "w4a8",
)


@dataclass(frozen=True)
class Verdict:
    """Outcome of the body of a check, before it is labelled.

    Attributes
    ----------
    passed : bool
        ``True`` when every identity / inequality of the check was verified exactly.
    detail : str
        What was verified, or the first mismatches found.
    """

    passed: bool
    detail: str


@dataclass(frozen=True)
class CheckResult:
    """Result of one symbolic check.

    Attributes
    ----------
    name : str
        Stable identifier, prefixed with the THEORY.md label (``"I1.schur[N=4]"``).
    statement : str
        One-line statement of what is verified.
    passed : bool
        Whether the statement was verified.
    detail : str
        Human-readable evidence or the mismatch that made the check fail.
    seconds : float
        Wall-clock time spent in the check.
    """

    name: str
    statement: str
    passed: bool
    detail: str
    seconds: float = 0.0

    def line(self) -> str:
        """Return the one-line report ``PASS  name  statement``.

        Returns
        -------
        str
            The status, the name and the statement, separated by two spaces.
        """
        status = "PASS" if self.passed else "FAIL"
        return f"{status}  {self.name}  {self.statement}"


@dataclass(frozen=True)
class Check:
    """A registered check: a name, a statement, a THEORY.md label and a body.

    Attributes
    ----------
    name : str
        Stable identifier.
    statement : str
        One-line statement of the verified fact.
    label : str
        THEORY.md label(s) supported by the check (``"I1"``, ``"B5"``, ...).
    body : Callable[[], Verdict]
        The function doing the symbolic work.
    """

    name: str
    statement: str
    label: str
    body: Callable[[], Verdict] = field(repr=False)

    def __call__(self) -> CheckResult:
        """Run the check, converting any exception into a failed result.

        Returns
        -------
        CheckResult
            The labelled outcome of the check.
        """
        start = time.perf_counter()
        try:
            outcome = self.body()
            if not isinstance(outcome, Verdict):
                raise TypeError(f"check body returned {type(outcome).__name__}, not Verdict")
            passed, detail = bool(outcome.passed), outcome.detail
        except Exception as exc:
            passed = False
            tb = traceback.format_exception_only(type(exc), exc)
            detail = "exception: " + "".join(tb).strip()
        return CheckResult(
            name=self.name,
            statement=self.statement,
            passed=passed,
            detail=detail,
            seconds=time.perf_counter() - start,
        )


#: All registered checks, in registration order, keyed by name.
REGISTRY: dict[str, Check] = {}


def register(name: str, statement: str, label: str) -> Callable[[Callable[[], Verdict]], Check]:
    """Register a check body under ``name``.

    Parameters
    ----------
    name : str
        Unique identifier of the check.
    statement : str
        One-line statement (no newline).
    label : str
        THEORY.md label(s) the check supports.

    Returns
    -------
    Callable[[Callable[[], Verdict]], Check]
        Decorator turning the body into a registered :class:`Check`.

    Raises
    ------
    ValueError
        If the name is already registered or the statement spans several lines.
    """
    if "\n" in statement:
        raise ValueError(f"statement of {name!r} must be one line")

    def decorator(body: Callable[[], Verdict]) -> Check:
        if name in REGISTRY:
            raise ValueError(f"duplicate check name {name!r}")
        check = Check(name=name, statement=statement, label=label, body=body)
        REGISTRY[name] = check
        return check

    return decorator


def verdict(mismatches: Iterable[str], ok_detail: str) -> Verdict:
    """Build a verdict from a list of mismatch descriptions.

    Parameters
    ----------
    mismatches : Iterable[str]
        Descriptions of every failed sub-claim; empty when everything holds.
    ok_detail : str
        Detail reported when there is no mismatch.

    Returns
    -------
    Verdict
        ``passed`` is ``True`` iff there is no mismatch.
    """
    problems = list(mismatches)
    if problems:
        shown = "; ".join(problems[:3])
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        return Verdict(False, shown + more)
    return Verdict(True, ok_detail)


def expect_all(claims: Iterable[tuple[str, bool]], ok_detail: str) -> Verdict:
    """Build a verdict from ``(description, holds)`` pairs.

    Parameters
    ----------
    claims : Iterable[tuple[str, bool]]
        Each sub-claim with whether it was verified.
    ok_detail : str
        Detail reported when every sub-claim holds.

    Returns
    -------
    Verdict
        Failed unless every sub-claim holds; the detail names the failed ones.
    """
    return verdict((f"FAILED: {desc}" for desc, holds in claims if not holds), ok_detail)


def all_checks() -> list[Check]:
    """Import every check module and return the registered checks in order.

    Returns
    -------
    list[Check]
        All checks, grouped by module in the order of :data:`CHECK_MODULES`.
    """
    for module in CHECK_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    return list(REGISTRY.values())


def run_all(checks: Iterable[Check] | None = None) -> list[CheckResult]:
    """Run checks (all registered ones by default).

    Parameters
    ----------
    checks : Iterable[Check], optional
        The checks to run; defaults to :func:`all_checks`.

    Returns
    -------
    list[CheckResult]
        One result per check, in order.
    """
    selected = all_checks() if checks is None else list(checks)
    return [check() for check in selected]
