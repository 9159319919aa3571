"""F9 (OWQ against OPTQ) builds at quick sizes on the real MiniLM, and its CSV is right.

Expected values are computed here: the kept columns and effective bits from the authors' rule written
out (round, then up to even; a kept column costs 16 bits), the relative errors and the summaries from
the per-layer rows.
"""

from __future__ import annotations

import csv
import math

import pytest

from ptqtheory.figures import FIGURES
from ptqtheory.figures import f9_owq as f9
from ptqtheory.figures.common import failures


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("f9")
    result = f9.build(out, quick=True)
    with open(result["paths"]["csv"], newline="", encoding="ascii") as fh:
        rows = list(csv.DictReader(fh))
    return result, rows


def test_registered_and_files_written(built):
    result, rows = built
    assert FIGURES["F9"] is f9
    assert {p.suffix for p in result["paths"].values()} == {".pdf", ".png", ".csv"}
    assert result["paths"]["pdf"].read_bytes().startswith(b"%PDF")
    assert len(rows) == len(result["rows"]) and result["findings"] == []
    assert not failures([r for r in rows if r["panel"] == "layers"], f9.CHECKS)


def test_kept_columns_and_effective_bits_follow_the_rule(built):
    _, rows = built
    layers = [r for r in rows if r["panel"] == "layers"]
    assert {r["method"] for r in layers} == {"optq", "owq"}
    for r in layers:
        N, b, keep = int(r["N"]), int(r["bits"]), int(r["keep"])
        if r["method"] == "optq":
            assert keep == 0 and float(r["effective_bits"]) == b
            continue
        k = math.floor(N * float(r["extra"]) / (16 - b) + 0.5)
        k += k % 2
        assert keep == k > 0
        assert float(r["effective_bits"]) == pytest.approx(b + keep * (16 - b) / N, rel=1e-12)
        assert r["identity_holds"] == "True"
        assert float(r["rel_err"]) == pytest.approx(math.sqrt(float(r["err_sq"]) / float(r["ref_sq"])))


def test_summaries_match_the_layer_rows(built):
    _, rows = built
    layers = [r for r in rows if r["panel"] == "layers"]
    for s in (r for r in rows if r["panel"] == "summary"):
        key = (s["method"], s["bits"], s["extra"])
        sel = [r for r in layers if (r["method"], r["bits"], r["extra"]) == key]
        assert int(s["layers"]) == len(sel) == 2
        err = sum(float(r["err_sq"]) for r in sel)
        ref = sum(float(r["ref_sq"]) for r in sel)
        assert float(s["rel_err"]) == pytest.approx(math.sqrt(err / ref), rel=1e-12)
        params = [int(r["n"]) * int(r["N"]) for r in sel]
        eff = sum(p * float(r["effective_bits"]) for p, r in zip(params, sel, strict=True)) / sum(params)
        assert float(s["effective_bits"]) == pytest.approx(eff, rel=1e-12)
        assert float(s["b1_over_empirical"]) >= 1.0
