r"""Exact symbolic checks (sympy) of the algebra behind the proofs in THEORY.md.

Run ``python -m proofs_check`` (``-v`` for details, ``-k TEXT`` to select): one line
``PASS  name  statement`` per check, exit status 1 if any check fails.  Every check is
registered in :data:`proofs_check.registry.REGISTRY` and returns a
:class:`~proofs_check.registry.CheckResult` (name, statement, passed, detail).

How equalities are verified.  Rational identities are tested in an exact field of
rational functions :math:`\mathbb Q(s_1,\dots,s_k)` (sympy ``FractionField``; elements are
kept reduced, so ``a == b`` is ``cancel(a - b) == 0``); identities with ``exp``/``log``/``sqrt``
use ``sympy.simplify(lhs - rhs) == 0``; polynomial ones ``expand(lhs - rhs) == 0``.
Symbols are generic (a rational identity true on the open set of SPD matrices is true
for all of them); where fully symbolic data is too slow, exact rational data with
symbolic weights, rounding errors and :math:`\lambda` is used, and the docstring says so.
Rounding errors :math:`\eta_t` are always free symbols, so the identities hold for any
quantizer (nearest, stochastic, clipped).

Modules and THEORY.md labels:

* :mod:`.lstsq` -- A2: the OPTQ step is the least-squares minimizer (gradient, Hessian PD).
* :mod:`.pivots` -- I1: Cholesky / Schur / inverse-corner / :math:`C_{tt}^{-2}` / det /
  least-squares / projection forms of :math:`D_t`, monotonicity in :math:`\lambda`.
* :mod:`.optq` -- A2 == A2' (sign of the fast form, trailing blocks, lazy blocks),
  I2 (:math:`w - q = L\eta`, orthogonal :math:`v_t`, error identity), B7 algebra.
* :mod:`.ldlq` -- A3 (LDL factors, LDLQ == OPTQ), I3.
* :mod:`.qronos` -- A4/A4' (reduction to OPTQ, start from :math:`w_{LS}`), I4, I5, I6 (GPFQ).
* :mod:`.stochastic` -- stochastic rounding moments, B3, B11 constants.
* :mod:`.concentration` -- Hoeffding's lemma, Chernoff optimization, B4, B5, B6 constants.

Outcome against THEORY.md: every checked statement holds as written; in particular the
A2' sign (``w_{>t} -= (eta_t/U_tt) U_{t,>t}``), the B4 constant
:math:`\delta^2\|D\|_2\sqrt{\log(1/p)/2}` and the B5 constant :math:`\delta\sqrt{S_i\log(2m/p)/2}`
are what the derivations give.  Two clarifications are recorded by checks: GPTQ's
accumulated loss is half of :math:`\sum_t\eta_t^2D_t` *for the matrix GPTQ factors*; with
its :math:`(2/m)` scaling it is :math:`\tfrac1m\sum_t\eta_t^2D_t(H)` (``I2.gptq_loss_scale``);
and "A4 and A4' agree when A4 starts from :math:`w_{LS}`" holds when the target stays
:math:`\hat Xw` and only the starting iterate is :math:`w_{LS}` (``A4.from_wls_equals_ls``).

Skipped (not algebraic identities that sympy can settle, or numeric in nature; the
property tests in ``tests/`` cover them numerically):

* B1 tightness (midpoint construction) and the inequality chain itself beyond the I2
  identity and :math:`D_t \le \|X_t\|^2 + \lambda` (checked in I1);
* B2 (needs :math:`\mathrm{rank}` / :math:`\sigma_r` arguments);
* B6's maximal-inequality extension to intermediate iterates, B8's coupling argument;
* B9/B10 beyond I4/I5 (they are I4/I5 plus :math:`|\eta_t| \le \delta/2` and B5's algebra);
* B11's incoherence bound :math:`\mathrm{tr}(D) \le (\mu^2/N)(\mathrm{tr}H^{1/2})^2` and B12's
  PSD orderings (only the identity :math:`H^{-1} = LD^{-1}L^T` they rest on is checked);
* convexity of :math:`e^{sx}` and the martingale property (used, stated, not "computed");
* the :math:`\sqrt{4\pi}` comparison with the convex-order bound quoted in B5.
"""

from __future__ import annotations

from .registry import REGISTRY, Check, CheckResult, Verdict, all_checks, run_all

__all__ = ["REGISTRY", "Check", "CheckResult", "Verdict", "all_checks", "run_all"]
