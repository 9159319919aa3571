"""F12 (MagR on real layers) builds at quick sizes on the real MiniLM; its checks can fail."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ptqtheory.figures import FIGURES
from ptqtheory.figures import f12_magr as f12
from ptqtheory.figures.common import failures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("f12")
    result = f12.build(out, quick=True)
    with open(result["paths"]["csv"], newline="", encoding="ascii") as fh:
        rows = list(csv.DictReader(fh))
    return result, rows


def test_registered_and_files_written(built):
    result, rows = built
    assert FIGURES["F12"] is f12
    assert all(p.stat().st_size > 0 for p in result["paths"].values())
    assert result["findings"] == []
    assert len(rows) == len(result["rows"])


def test_layer_rows_agree_with_the_row_rows(built):
    """The per-layer relative error of MagR + OPTQ is the root sum of squares of the per-row errors (two
    separate computations in the module), and MagR shrank every layer's rows."""
    result, _ = built
    layers = [r for r in result["rows"] if r["panel"] == "layers"]
    assert len(layers) == 2
    for lay in layers:
        rows = [r for r in result["rows"] if r["panel"] == "rows" and r["layer"] == lay["layer"]]
        assert len(rows) == lay["n"]
        applied = [r for r in rows if r["hypotheses_held"]]
        assert len(applied) == lay["rows_applied"]
        if applied:
            want = np.sqrt(sum(r["empirical_magr"] ** 2 for r in applied)) / lay["reference_norm"]
            assert lay["magr_error_relative_applied"] == pytest.approx(want, rel=1e-12)
            # all rows' error is at least the error of the rows where the bound applies
            assert lay["magr_optq_relative_error"] >= lay["magr_error_relative_applied"] * (1 - 1e-12)
            assert lay["magr_bound_relative"] >= lay["magr_error_relative_applied"] * (1 - 1e-9)
        assert 0 < lay["inf_ratio_median"] < 1


def test_checks_can_fail(built):
    """Negative controls: a bound a tenth as large, and a duality gap pushed below its allowance."""
    result, _ = built
    rows = [dict(r) for r in result["rows"] if r["panel"] == "rows"]
    assert any(r["hypotheses_held"] for r in rows)
    shrunk = [{**r, "bound_magr": r["bound_magr"] / 10} for r in rows]
    assert any("bound_magr" in f for f in failures(shrunk, f12.CHECKS))
    broken = [{**r, "empirical_negative_gap": r["bound_gap"] * 2 + 1e-9} for r in rows]
    assert any("bound_gap" in f for f in failures(broken, f12.CHECKS))
