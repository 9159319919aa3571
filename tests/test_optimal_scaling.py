"""``benchmarks/optimal_scaling.py --quick`` runs end to end on real MiniLM sub-problems and its JSON holds
every field the README table reads. No timing asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_optimal_scaling_quick_runs_and_writes(tmp_path):
    mod = _load("optimal_scaling")
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "optimal_scaling_quick.json").read_text())
    assert res["command"].startswith("python ") and res["machine"]["cores"] >= 1
    assert res["settings"]["layers"] == list(mod.QUICK_LAYERS)
    summary = res["summary"]
    assert [(r["bits"], r["N"]) for r in summary] == [(3, 8), (3, 12), (4, 8), (4, 12)]
    for r in summary:
        assert r["rows"] == 2 * len(mod.QUICK_LAYERS) and r["proven"] == r["rows"]  # tiny: all proven
        assert r["seconds_median"] > 0 and r["seconds_median_proven"] == r["seconds_median"]
        assert 1.0 <= r["ratio_median"] <= r["ratio_max"]
        assert r["ratio_bound_median"] >= 1.0
        # Monte Carlo: every size is fast, so it ran; L1 is a lower bound on the optimum's mean (the
        # quotient is >= 1 up to Monte Carlo error: 4.5 standard errors).
        assert r["mc_samples"] == 6 * len(mod.QUICK_LAYERS) and r["mc_proven"] == r["mc_samples"]
        assert r["opt_over_L1"] >= 1 - 4.5 * r["opt_over_L1_se"]
        assert r["optq_over_L1"] >= r["opt_over_L1"]  # OPTQ's point is one candidate of the optimum
    assert res["largest_N_proven_within_1s"].keys() == {"3", "4"}
    for bits, N in res["largest_N_proven_within_1s"].items():
        fast = [r["N"] for r in summary if r["bits"] == int(bits) and (r["seconds_median_proven"] or 2.0) < 1.0]
        assert N == (max(fast) if fast else None)
    for entry in res["results"]:
        assert len(entry["rows"]) == 2 and entry["ratio_bound"] >= 1.0
        for row in entry["rows"]:
            assert row["optimal_cost"] <= row["optq_cost"] * (1 + 1e-12)
            assert math.isclose(row["ratio"], row["optq_cost"] / row["optimal_cost"], rel_tol=1e-12)
        mc = entry["monte_carlo"]
        assert mc["opt_over_L1_min"] > 0 and mc["optq_over_opt_of_means"] >= 1.0
