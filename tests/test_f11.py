"""F11 (W4A8 on real layers) builds at quick sizes, and its CSV is right.

Expected values are recomputed here independently: the per-token activation quantization error from an
explicit formula on the captured layer, the summary rows from the per-row rows, and B9's measured side
against the output error the figure scores Qronos on (two separate computations of one quantity).
"""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ptqtheory.figures import FIGURES
from ptqtheory.figures import f11_w4a8 as f11
from ptqtheory.figures.common import failures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("f11")
    result = f11.build(out, quick=True)
    with open(result["paths"]["csv"], newline="", encoding="ascii") as fh:
        rows = list(csv.DictReader(fh))
    return result, rows


def test_registered_and_files_written(built):
    result, rows = built
    assert FIGURES["F11"] is f11
    assert {p.suffix for p in result["paths"].values()} == {".pdf", ".png", ".csv"}
    assert result["paths"]["pdf"].read_bytes().startswith(b"%PDF")
    assert len(rows) == len(result["rows"]) and result["findings"] == []
    per_row = [r for r in rows if r["panel"] == "rows"]
    assert not failures(per_row, f11.CHECKS)
    assert sum(r["hypotheses_held"] == "True" for r in per_row) > 0.5 * len(per_row)


def test_summaries_match_rows_and_the_activation_error(built):
    _, rows = built
    summary = [r for r in rows if r["panel"] == "layers"]
    per_row = [r for r in rows if r["panel"] == "rows"]
    assert {int(r["a_bits"]) for r in summary} == set(f11.A_BITS)
    name = summary[0]["layer"]
    W, X = f11.capture([name], f11.QUICK["texts"])
    Wl, Xl = W[name], X[name]
    denom = float(np.sum((Xl @ Wl.T) ** 2))
    for s in [r for r in summary if r["layer"] == name]:
        a = int(s["a_bits"])
        K = 2 ** (a - 1) - 1
        step = np.abs(Xl).max(axis=1, keepdims=True) / K
        Xt = np.rint(Xl / step) * step
        assert float(s["act_rel_err"]) == pytest.approx(np.sum((Xl - Xt) ** 2) / np.sum(Xl ** 2), rel=1e-9)
        mine = [r for r in per_row if r["layer"] == name and int(r["a_bits"]) == a]
        assert len(mine) == Wl.shape[0]
        assert float(s["rel_err_optq_xt"]) == pytest.approx(sum(float(r["err_optq_xt"]) for r in mine) / denom,
                                                           rel=1e-9)
        assert float(s["rel_err_qronos"]) == pytest.approx(sum(float(r["err_qronos"]) for r in mine) / denom,
                                                          rel=1e-9)
        # B9's measured side is the same output error Qronos is scored on
        for r in mine:
            assert float(r["empirical_b9"]) == pytest.approx(float(r["err_qronos"]), rel=1e-8, abs=1e-10)
    # Qronos, which sees X, does better in total than OPTQ on Xt alone on these layers at A4
    a4 = [r for r in summary if int(r["a_bits"]) == 4]
    assert sum(float(r["rel_err_qronos"]) for r in a4) < sum(float(r["rel_err_optq_xt"]) for r in a4)
