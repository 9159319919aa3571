"""``benchmarks/llm_scale.py --quick`` runs end to end: synthetic models written, every depth quantized
from disk in its own process, certificates hold, the JSON holds every number. No timing asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_llm_scale_quick_runs_and_writes(tmp_path):
    mod = _load("llm_scale")
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "llm_scale_quick.json").read_text())
    assert res["synthetic"] is True and "SYNTHETIC" in res["label"]
    assert res["command"].startswith("python ") and res["machine"]["cores"] >= 1
    assert [r["depth"] for r in res["rows"]] == [1, 2]
    for row, run in zip(res["rows"], res["runs"], strict=True):
        assert row["identities_hold"] and row["bound_violations"] == 0
        assert [b["block"] for b in run["blocks"]] == list(range(run["depth"]))
        assert len(run["written"]) == run["depth"] and run["layers"] == 7 * run["depth"]
        assert run["calibration"]["synthetic"] and run["calibration_tokens"] == 32
        assert row["rss_peak_gib"] > 0 and row["flops_per_block"] > 0 and row["full_passes"] <= 10
    ext = res["extrapolation"]
    assert "EXTRAPOLATION" in ext["label"] and [r["model"] for r in ext["rows"]] == [
        "Llama-7B", "Llama-13B", "Llama-70B"]
    assert all(r["total_min"] > 0 and r["memory_gib"] > 0 for r in ext["rows"])
    # Other GPU assumptions, same measurements: only the extrapolation changes.
    again = tmp_path / "again"
    assert mod.main(["--reanalyze", str(tmp_path / "llm_scale_quick.json"), "--gpu-f32", "25e12",
                     "--out", str(again)]) == 0
    res2 = json.loads((again / "llm_scale_quick.json").read_text())
    assert res2["runs"] == res["runs"] and res2["rows"] == res["rows"] and res2["command"] == res["command"]
    assert res2["reanalyzed_by"].startswith("python ")
    assert res2["extrapolation"]["rows"][0]["seconds"]["forwards"] == 2 * ext["rows"][0]["seconds"]["forwards"]
