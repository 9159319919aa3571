r"""A-priori bounds of THEORY.md, each returning a record: value per row, hypotheses, reference.

Every bound states the hypotheses it needs and whether each held in the run; a bound whose hypotheses
do not all hold does not apply, and nothing is claimed for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Bound", "Hypothesis", "alphabet_size", "weight_drift"]


@dataclass(frozen=True)
class Hypothesis:
    """One hypothesis of a bound and whether it held (``detail`` says what was checked)."""

    name: str
    holds: bool
    detail: str = ""


@dataclass(frozen=True, eq=False)
class Bound:
    """A bound evaluated on data: ``value`` per row (or scalar), with its hypotheses and source."""

    label: str
    quantity: str
    value: np.ndarray
    hypotheses: tuple[Hypothesis, ...]
    reference: str

    @property
    def applies(self) -> bool:
        """All hypotheses held, so the bound is a theorem for this run."""
        return all(h.holds for h in self.hypotheses)


def _step_factor(rounding: str) -> float:
    # nearest: |eta_t| <= delta_t / 2; stochastic: |eta_t| < delta_t.
    if rounding == "nearest":
        return 0.5
    if rounding == "stochastic":
        return 1.0
    raise ValueError(f"rounding must be 'nearest' or 'stochastic'; got {rounding!r}")


def weight_drift(L: np.ndarray, delta_p: np.ndarray, rounding: str = "nearest") -> np.ndarray:
    r"""B7: :math:`|x_t - w_t| \le c\sum_{s<t} |L_{ts}|\,\delta_s` per row and step.

    ``c = 1/2`` for nearest rounding, 1 for stochastic; ``L`` and ``delta_p`` (shape ``(n, N)``)
    in processing order. Hypothesis: no clip (then :math:`|\eta_s| \le c\,\delta_s`); it follows
    from :math:`x_t = w_t - \sum_{s<t} L_{ts}\eta_s` (I2).
    """
    c = _step_factor(rounding)
    strict = np.abs(np.tril(np.asarray(L, dtype=float), -1))
    return c * (np.atleast_2d(delta_p) @ strict.T)


def alphabet_size(
    W, L: np.ndarray, delta, rounding: str = "nearest"
) -> Bound:
    r"""B8: the smallest :math:`K` per row such that :math:`\mathcal A_K = \delta\{-K..K\}` cannot clip.

    With :math:`B = c\,\delta\max_j\sum_s |L_{js}|` (B7, :math:`c = 1/2` nearest, 1 stochastic),
    :math:`K\delta \ge \|w\|_\infty + B + \delta` guarantees that every :math:`x_t` rounds inside
    :math:`\mathcal A_K`: :math:`|x_t| \le \|w\|_\infty + B - c\delta` and rounding moves it by at
    most :math:`c\delta \le \delta`. The finite and the infinite grid then give identical runs
    (THEORY.md T5). ``bits = log2(2K + 1)``.

    Parameters
    ----------
    W : array_like (n, N)
        The weights the algorithm starts from (:math:`w_{LS}` for Qronos-LS).
    L : ndarray (N, N)
        Unit lower factor of THEORY.md I2 in processing order (``pt.pivots(H).L``).
    delta : float or array_like (n,)
        Grid step per row.
    rounding : {"nearest", "stochastic"}
    """
    W2 = np.atleast_2d(np.asarray(W, dtype=float))
    n = W2.shape[0]
    d = np.broadcast_to(np.asarray(delta, dtype=float).reshape(-1), (n,))
    c = _step_factor(rounding)
    row_sums = np.max(np.sum(np.abs(np.tril(np.asarray(L, dtype=float))), axis=1))
    B = c * d * row_sums
    K = np.ceil((np.max(np.abs(W2), axis=1) + B + d) / d).astype(np.int64)
    hyp = (Hypothesis("rounding error bounded by c*delta", True,
                      f"{rounding} rounding, c = {c:g}"),)
    return Bound("B8", "K such that A_K = delta{-K..K} never clips", K, hyp,
                 "THEORY.md B8 (from B7); Zhang, Zhang, Colbert & Saab, arXiv 2508.04853")

