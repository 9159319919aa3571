"""F8 (how far from optimal) builds at quick sizes on the real MiniLM, and its CSV is right.

Expected values are computed here independently of ``ptqtheory.lower_bounds``: the pivots from
inverses of trailing blocks of H (:math:`D_t = 1/[(H_{t:,t:})^{-1}]_{11}` in processing order),
:math:`G_N` from ``math.lgamma``, and the summary rows from the per-row rows.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from ptqtheory.figures import FIGURES
from ptqtheory.figures import f8_optimality as f8
from ptqtheory.figures.common import failures

ORDERS = ("natural", "decreasing_norm", "min_pivot")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("f8")
    result = f8.build(out, quick=True)
    with open(result["paths"]["csv"], newline="", encoding="ascii") as fh:
        rows = list(csv.DictReader(fh))
    return result, rows


def _g(N: int) -> float:
    return math.exp(2.0 / N * math.lgamma(N / 2 + 1)) / ((N + 2) * math.pi)


def _pivots(H: np.ndarray) -> np.ndarray:
    """OPTQ's pivots in the given order: the Schur complement of the later columns at each step."""
    return np.array([1.0 / np.linalg.inv(H[t:, t:])[0, 0] for t in range(H.shape[0])])


def _rho(D: np.ndarray) -> float:
    """The ratio bound with one grid step per row (the step cancels): AM(D) / (12 G_N GM(D))."""
    return float(np.mean(D) / (12 * _g(len(D)) * np.exp(np.mean(np.log(D)))))


def test_registered_and_files_written(built):
    result, rows = built
    assert FIGURES["F8"] is f8
    assert {p.suffix for p in result["paths"].values()} == {".pdf", ".png", ".csv"}
    assert result["paths"]["pdf"].read_bytes().startswith(b"%PDF")
    assert len(rows) == len(result["rows"]) and result["findings"] == []
    assert not failures([r for r in rows if r["panel"] == "subproblem_rows"], f8.CHECKS)


def test_layer_rows_cover_the_three_orders_and_respect_am_gm(built):
    _, rows = built
    top = [r for r in rows if r["panel"] == "layers"]
    layers = {r["layer"] for r in top}
    assert len(layers) >= 3
    for order in ORDERS:
        assert {r["layer"] for r in top if r["order"] == order} == layers
    for r in top:
        N = int(r["N"])
        assert float(r["G_N"]) == pytest.approx(_g(N), rel=1e-12)
        floor = 1 / (12 * _g(N))
        assert float(r["ratio_floor"]) == pytest.approx(floor, rel=1e-12)
        # AM >= GM: the bound is never below the cube's loss 1/(12 G_N)
        for col in ("ratio_bound_best", "ratio_bound_median", "ratio_bound_worst"):
            assert float(r[col]) >= floor * (1 - 1e-12), (r["layer"], r["order"], col)
        assert float(r["ratio_bound_best"]) <= float(r["ratio_bound_median"]) <= float(r["ratio_bound_worst"])
    # The order changes the bound on real layers (it changes the AM of the pivots, never the GM).
    nat = {r["layer"]: float(r["ratio_bound_median"]) for r in top if r["order"] == "natural"}
    act = {r["layer"]: float(r["ratio_bound_median"]) for r in top if r["order"] == "decreasing_norm"}
    assert any(abs(nat[k] - act[k]) > 1e-3 * nat[k] for k in layers)


def test_exact_ratios_at_least_one_and_summaries_match_rows(built):
    _, rows = built
    per_row = [r for r in rows if r["panel"] == "subproblem_rows"]
    summary = [r for r in rows if r["panel"] == "subproblems"]
    assert per_row and summary
    for r in per_row:
        assert float(r["exact_ratio"]) >= 1 - 1e-12
        assert float(r["empirical_optimal_cost"]) <= float(r["bound_optq_cost"]) * (1 + 1e-12)
        ratio = float(r["bound_optq_cost"]) / float(r["empirical_optimal_cost"])
        assert float(r["exact_ratio"]) == pytest.approx(ratio, rel=1e-12)
        assert float(r["ratio_bound"]) >= 1 / (12 * _g(int(r["N"]))) * (1 - 1e-12)
    for s in summary:
        mine = [r for r in per_row if r["layer"] == s["layer"] and r["N"] == s["N"]]
        assert len(mine) == int(s["rows"]) and sum(r["proven"] == "True" for r in mine) == int(s["proven_rows"])
        ratios = np.array([float(r["exact_ratio"]) for r in mine])
        assert float(s["exact_ratio_median"]) == pytest.approx(np.median(ratios), rel=1e-12)
        assert float(s["exact_ratio_max"]) == pytest.approx(ratios.max(), rel=1e-12)
        assert float(s["exact_ratio_median"]) >= 1 - 1e-12
        opt = sum(float(r["empirical_optimal_cost"]) for r in mine)
        assert float(s["ratio_of_means"]) == pytest.approx(sum(float(r["bound_optq_cost"]) for r in mine) / opt)
    assert sum(int(s["proven_rows"]) for s in summary) == len(per_row)  # quick sizes: all proven


def test_ratio_bound_recomputed_from_the_captured_layer(built):
    """The ratio bound of one real layer (natural and decreasing-norm orders) and of one of its
    sub-problems, from the same captured inputs, with pivots from trailing-block inverses."""
    _, rows = built
    name = "encoder.layer.0.attention.self.query"
    _, X = f8.capture([name], f8.QUICK["texts"])
    X = X[name]
    top = {r["order"]: r for r in rows if r["panel"] == "layers" and r["layer"] == name}
    assert int(top["natural"]["m"]) == X.shape[0]
    G = X.T @ X
    lam = f8.PERCDAMP * float(np.mean(np.diag(G)))
    assert float(top["natural"]["lam"]) == pytest.approx(lam, rel=1e-9)
    H = G + lam * np.eye(G.shape[0])
    assert float(top["natural"]["ratio_bound_median"]) == pytest.approx(_rho(_pivots(H)), rel=1e-7)
    perm = np.argsort(-np.diag(H), kind="stable")  # act-order: largest column norm first
    expect = _rho(_pivots(H[np.ix_(perm, perm)]))
    assert float(top["decreasing_norm"]["ratio_bound_median"]) == pytest.approx(expect, rel=1e-7)
    sub = [r for r in rows if r["panel"] == "subproblem_rows" and r["layer"] == name and r["N"] == "8"]
    Xs = X[:, :8]
    Gs = Xs.T @ Xs
    Hs = Gs + f8.PERCDAMP * float(np.mean(np.diag(Gs))) * np.eye(8)
    for r in sub:
        assert float(r["ratio_bound"]) == pytest.approx(_rho(_pivots(Hs)), rel=1e-9)
