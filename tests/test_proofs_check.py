"""The symbolic proof checks of ``proofs_check`` (THEORY.md's algebra), run under pytest.

* every registered check is its own test (parametrized over the registry);
* ``python -m proofs_check`` is run as a subprocess and must exit 0 with one PASS line per check;
* negative tests show the machinery can fail: deliberately wrong statements (a wrong
  stochastic-rounding variance, the wrong sign of GPTQ's fast update, a 2x-too-large B5
  threshold, a B4 deviation without its 1/2) are reported as FAIL, a crashing check is a
  FAIL, and the command line exits non-zero when a check fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sympy as sp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # proofs_check lives next to ptqtheory, at the repository root
    sys.path.insert(0, str(ROOT))

from proofs_check import concentration, optimality, optq, stochastic, w4a8  # noqa: E402
from proofs_check.registry import Check, Verdict, all_checks  # noqa: E402

CHECKS = all_checks()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_check_passes(check: Check) -> None:
    result = check()
    assert result.name == check.name
    assert "\n" not in result.statement
    assert result.passed, f"{result.name}: {result.statement}\n{result.detail}"


def test_registry_covers_theory_labels() -> None:
    names = [c.name for c in CHECKS]
    assert len(names) == len(set(names))
    labels = " ".join(c.label for c in CHECKS)
    for label in ("A2", "A2'", "A3", "A4", "I1", "I2", "I3", "I4", "I5", "I6", "B3", "B4", "B5", "B6", "B7"):
        assert label in labels, label


def test_command_line_exits_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "proofs_check"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("PASS  ", "FAIL  "))]
    assert len(lines) == len(CHECKS)
    assert all(ln.startswith("PASS  ") for ln in lines)
    assert f"{len(CHECKS)} passed, 0 failed" in proc.stdout


def test_wrong_variance_statement_fails() -> None:
    """Var of stochastic rounding is r(delta - r), not r*delta: the same machinery must say FAIL."""
    wrong = Check(
        name="NEG.variance",
        statement="Var[q] = r delta (deliberately wrong)",
        label="test",
        body=lambda: stochastic.variance_claim(stochastic.R * stochastic.DELTA),
    )
    result = wrong()
    assert not result.passed
    assert result.line().startswith("FAIL  NEG.variance")
    assert "claimed" in result.detail
    assert stochastic.variance_claim(stochastic.R * (stochastic.DELTA - stochastic.R)).passed


def test_wrong_ball_moment_formula_fails() -> None:
    """With (N + 1) for (N + 2) the normalized second moment of the ball is wrong for every N."""
    wrong = optimality.ball_moment_claim(
        lambda N: sp.gamma(sp.Rational(N, 2) + 1) ** sp.Rational(2, N) / ((N + 1) * sp.pi))
    assert not wrong.passed and "FAILED" in wrong.detail


def test_wrong_magr_gap_fails() -> None:
    """MagR's gap with s in place of s^2 in its last term is not the primal-dual gap."""
    from proofs_check import magr

    wrong = magr.gap_formula_claim(1)
    assert not wrong.passed and "FAILED" in wrong.detail


def test_wrong_fast_form_sign_fails() -> None:
    assert not optq.fast_form_sign("generic", 3, sign=+1).passed
    assert not optq.fast_equals_paper("generic", 3, sign=+1).passed


def test_wrong_b5_constant_fails() -> None:
    """Treating |increment| <= |a| delta as the range (length 2|a| delta) gives a 2x larger threshold."""
    d, s_i, m, p = concentration.DELTA, concentration.S_I, concentration.M_ROWS, concentration.P
    assert not concentration.b5_union_bound(d * sp.sqrt(2 * s_i * sp.log(2 * m / p))).passed
    assert not concentration.b5_union_bound(d * sp.sqrt(s_i * sp.log(m / p) / 2)).passed


def test_wrong_b4_constant_fails() -> None:
    norm_d = sp.Symbol("normD", positive=True)
    d, p = concentration.DELTA, concentration.P
    assert not concentration.b4_tail(d**2 * norm_d * sp.sqrt(sp.log(1 / p))).passed


def test_crashing_check_is_reported_as_failure() -> None:
    def body() -> Verdict:
        raise ZeroDivisionError("boom")

    result = Check(name="NEG.crash", statement="raises", label="test", body=body)()
    assert not result.passed
    assert "ZeroDivisionError" in result.detail


def test_command_line_exits_nonzero_on_failure() -> None:
    code = (
        "import sys\n"
        "from proofs_check.registry import Verdict, all_checks, register\n"
        "all_checks()\n"
        "register('NEG.cli', 'deliberately false', 'test')(lambda: Verdict(False, 'false on purpose'))\n"
        "from proofs_check.__main__ import main\n"
        "sys.exit(main(['-k', 'NEG.cli']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  NEG.cli" in proc.stdout


def test_wrong_w4a8_statements_fail() -> None:
    """Pivots scaling as D_t / s_t (not s_t^2), a rounding error of Delta/4, the wrong sign of the
    activation term, and folding AQAS scales through GELU are all reported as failures."""
    assert not w4a8.scaled_pivots_claim(1).passed
    assert not w4a8.act_rounding_claim(sp.Rational(1, 4)).passed
    assert not w4a8.error_split_claim(-1).passed
    assert not w4a8.row_fold_claim("gelu").passed  # S^-1 does not fold through GELU
