"""The benchmark scripts run end to end on tiny layers, and their peers compute what they claim.

No timing is asserted here (speed goals live in ``benchmarks/``): these tests check that each
benchmark's same-results check, tables and JSON files work, that the GPTQ-style loop is GPTQ
(equal to our OPTQ in float64), and that the Brevitas adapter reproduces our OPTQ and Qronos on the
same grid.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ptqtheory as pt

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common as C  # noqa: E402
import brevitas_peer as bp  # noqa: E402
from gptq_loop import gptq_loop  # noqa: E402

HAVE_BREVITAS = importlib.util.find_spec("brevitas") is not None


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gptq_loop_in_float64_equals_our_optq():
    W, X = C.layer_data(24, 96, 400, seed=3)
    g = pt.Grid.minmax(W, bits=3).frozen()
    ref = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=g, block_size=32)
    d, z = (torch.tensor(a[:, 0]) for a in (g.delta.reshape(-1, 1), g.zero.reshape(-1, 1)))
    Q = gptq_loop(torch.tensor(W), torch.tensor(X), d, z, 0.0, 7.0, percdamp=0.01, block_size=32,
                  batch_rows=128)
    assert np.array_equal(C.codes(Q, g.delta.reshape(-1, 1), g.zero.reshape(-1, 1)), ref.codes)


def test_gptq_loop_zeroes_dead_columns():
    W, X = C.layer_data(4, 16, 64, seed=1)
    X[:, 5] = 0
    Q = gptq_loop(torch.tensor(W), torch.tensor(X), torch.full((4,), 0.01), torch.zeros(4), -1e9, 1e9)
    assert torch.all(Q[:, 5] == 0)


def test_agreement_sees_a_difference():
    W, X = C.layer_data(8, 32, 128, seed=2)
    g = pt.Grid.minmax(W, bits=4).frozen()
    Q = pt.rtn(W, grid=g).Q
    Q2 = Q.copy()
    Q2[0, :4] += g.delta[0]
    a = C.agreement(Q2, Q, X, W, g.delta.reshape(-1, 1), g.zero.reshape(-1, 1))
    assert a["codes"] == pytest.approx(1 - 4 / Q.size) and a["rows_differing"] == 1
    assert not C.equal_enough(a)
    assert C.equal_enough(C.agreement(Q, Q, X, W, g.delta.reshape(-1, 1), g.zero.reshape(-1, 1)))


def test_layer_cpu_runs_checks_and_writes(tmp_path):
    mod = _load("layer_cpu")
    assert mod.main(["--sizes", "64", "--m", "256", "--repeats", "1", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "layer_cpu.json").read_text())
    (size,) = res["sizes"]
    assert all(c["equal"] for c in size["checks"].values())
    names = {(p["ours"], p["peer"]) for p in res["pairs"]}
    assert ("ours torch f32", "GPTQ loop f32") in names and ("ours numpy f64", "ours torch f64") in names
    assert HAVE_BREVITAS == (("ours torch f32", "Brevitas GPTQ f32") in names)
    assert res["machine"]["cores"] >= 1 and res["command"].startswith("python ")


def test_certify_cost_runs_and_certificates_hold(tmp_path):
    mod = _load("certify_cost")
    assert mod.main(["--sizes", "32", "96", "--m", "256", "--repeats", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "certify_cost.json").read_text())["rows"]
    assert {r["path"] for r in rows} == {"numpy f64", "torch f32"}
    assert all(r["identities_hold"] and r["bounds_hold"] and "B1" in r["bounds"] for r in rows)


def test_certify_cost_ldlq_and_qronos(tmp_path):
    mod = _load("certify_cost")
    assert mod.main(["--sizes", "48", "--m", "192", "--repeats", "1", "--algorithms", "ldlq", "qronos",
                     "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "certify_cost.json").read_text())["rows"]
    assert {(r["algorithm"], r["path"]) for r in rows} == {
        (a, p) for a in ("ldlq", "qronos") for p in ("numpy f64", "torch f32")}
    assert all(r["identities_hold"] and r["bounds_hold"] for r in rows)


def test_layer_floor_runs_on_cpu(tmp_path):
    mod = _load("layer_floor")
    assert mod.main(["--device", "cpu", "--shapes", "48x64", "--m", "256", "--repeats", "1",
                     "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "layer_floor_cpu.json").read_text())
    (row,) = res["rows"]
    assert row["check"]["equal"] and row["floor"]["floor"] > 0 and res["gemm_f32_flops"] > 0


def test_floor_counts_the_work():
    mod = _load("layer_floor")
    f = mod.floor_seconds(n=2, N=3, m=5, rate=1.0, bandwidth=1.0)
    assert f["flops"] == 2 * 5 * 9 + 2 * 27 / 3 + 2 * 9
    assert f["bytes"] == 4 * (5 * 3 + 3 * 2 * 3) and f["floor"] == max(f["flops"], f["bytes"])


def test_suite_parses_hypothesis_statistics():
    mod = _load("suite")
    text = """tests/test_bounds.py::test_rtn_comparison_bounds:

  - during generate phase (0.73 seconds):
    - Typical runtimes: ~ 1-2 ms, of which ~ 0-1 ms in data generation
    - 300 passing, 0 failing, and 2 invalid test cases
  - Stopped because settings.max_examples=300
tests/test_bounds.py::test_B1_attained_by_midpoint_construction:

  - during reuse phase (0.01 seconds):
    - 1 passing examples, 0 failing examples, 0 invalid examples
  - during generate phase (2.00 seconds):
    - 200 passing examples, 0 failing examples, 0 invalid examples
"""
    a, b = mod.parse_statistics(text)
    assert (a["passing"], a["invalid"], a["seconds"]) == (300, 2, 0.73)
    assert a["examples_per_s"] == pytest.approx(300 / 0.73)
    assert b["test"].endswith("midpoint_construction") and b["seconds"] == 2.0
    assert b["passing"] == 200  # the generate phase's count, not the reuse phase's


@pytest.mark.skipif(not HAVE_BREVITAS, reason="the optional bench extra (brevitas) is not installed")
def test_brevitas_adapter_reproduces_our_optq_and_qronos():
    W, X = C.layer_data(32, 128, 512, seed=5)
    layer, g = bp.frozen_minmax_layer(torch.tensor(W, dtype=torch.float32), bits=4)
    assert bp.rtn_mismatches(layer, g) == 0
    d, z = g.delta.reshape(-1, 1), g.zero.reshape(-1, 1)
    X32 = torch.tensor(X, dtype=torch.float32)
    Qb = bp.gptq(layer, X32, percdamp=0.01, block_size=32)
    ref = pt.optq(W, X, lam=pt.Damping.percdamp(0.01), grid=g, block_size=32)
    assert C.equal_enough(C.agreement(Qb, ref.Q, X, W, d, z))
    s = float(np.max(np.abs(X))) / 127
    Xt = np.round(X / s) * s
    rec: dict = {}
    Qq = bp.qronos(layer, X32, torch.tensor(Xt, dtype=torch.float32), percdamp=0.01, block_size=32,
                   dtype=torch.float64, record=rec)
    ours = pt.qronos(W, X, Xt, lam=rec["lam"], grid=g, variant="paper", start="w")
    assert C.equal_enough(C.agreement(Qq, ours.Q, Xt, W, d, z))
