"""The paper figures: each builds (quick sizes) into PDF, PNG and CSV, and every bound column of
each CSV is at least its empirical column wherever the bound's hypotheses held.

F7 reads a ``ptqtheory validate`` report; at quick sizes it runs a small real validation first
(two settings on all 36 layers of the embedded MiniLM, about a minute on 2 cores)."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptqtheory.cli import main
from ptqtheory.figures import FIGURES, ReportMissing, build_all, select
from ptqtheory.figures import f7_real_layers as f7

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every figure built once at quick sizes: label -> (out dir, build result)."""
    out = tmp_path_factory.mktemp("figures")
    return {key: (out, mod.build(out, quick=True)) for key, mod in FIGURES.items()}


def _read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="", encoding="ascii") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames), list(reader)


@pytest.mark.parametrize("key", list(FIGURES))
def test_files_written(built, key):
    out, result = built[key]
    paths = result["paths"]
    assert set(paths) == {"pdf", "png", "csv"}
    for kind, path in paths.items():
        assert path.parent == out and path.stem == FIGURES[key].NAME and path.suffix == f".{kind}"
        assert path.stat().st_size > 0
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    assert paths["png"].read_bytes().startswith(PNG_SIGNATURE)
    assert not list(out.glob(".*.tmp")), "a temporary file was left behind"
    columns, rows = _read_csv(paths["csv"])
    assert rows and len(rows) == len(result["rows"])
    assert all(c.isascii() and " " not in c for c in columns)


@pytest.mark.parametrize("key", list(FIGURES))
def test_bounds_dominate_where_hypotheses_held(built, key):
    """Deterministic bounds: bound >= empirical on every row where they apply. Probability bounds
    (``Check.p``): failures at a rate consistent with p (binomial allowance)."""
    _, result = built[key]
    columns, rows = _read_csv(result["paths"]["csv"])
    checks = FIGURES[key].CHECKS
    bound_cols = {c for c in columns if c.startswith("bound_")}
    assert bound_cols, "a figure must plot at least one bound"
    assert bound_cols == {c.bound for c in checks}, "every bound_* column needs a declared check"
    for chk in checks:
        assert chk.bound.startswith("bound_") and chk.empirical.startswith("empirical_")
        assert {chk.bound, chk.empirical, chk.applies} <= set(columns)
        applies = [r for r in rows if r[chk.applies] == "True"]
        assert applies, f"{chk.bound}: the hypotheses held on no row (the check would be vacuous)"
        bad = [r for r in applies
               if not float(r[chk.empirical]) <= float(r[chk.bound]) * (1 + 1e-9)]
        if chk.p is None:
            assert not bad, f"{chk.bound} < {chk.empirical} where it applies: {bad[:3]}"
        else:
            n = len(applies)
            allowed = n * chk.p + 3 * math.sqrt(n * chk.p * (1 - chk.p)) + 1
            assert len(bad) <= allowed, f"{chk.bound}: {len(bad)} failures of {n} at p={chk.p}"
    assert not [f for f in result["findings"] if not f.startswith("note:")], result["findings"]


def test_deterministic(built, tmp_path):
    """Seeded: a second build gives the same bytes (PDF and CSV carry no dates)."""
    _, first = built["F2"]
    again = FIGURES["F2"].build(tmp_path, quick=True)
    for kind in ("pdf", "csv"):
        assert again["paths"][kind].read_bytes() == first["paths"][kind].read_bytes()


def test_cli_figures(tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["figures", "--quick", "--out", str(out), "--only", "F1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["f1_lambda.csv", "f1_lambda.pdf", "f1_lambda.png"]
    assert "F1" in capsys.readouterr().out


def test_registry_selection(tmp_path):
    assert select(None) == list(FIGURES)
    assert select(" f3 ,F1") == ["F3", "F1"]
    with pytest.raises(ValueError, match="unknown figure"):
        select("F99")
    with pytest.raises(ValueError, match="unknown figure"):
        build_all(tmp_path, quick=True, only="F1,F99")


def test_thin_scripts(tmp_path):
    """One script per figure in the repository's figures/ folder, each a wrapper of its module."""
    folder = REPO / "figures"
    for mod in FIGURES.values():
        script = folder / f"{mod.NAME}.py"
        assert script.is_file() and f"ptqtheory.figures import {mod.NAME}" in script.read_text()
        assert f"`{mod.NAME}." in (folder / "README.md").read_text()
    proc = subprocess.run([sys.executable, str(folder / "f6_incoherence.py"), "--quick", "--out",
                           str(tmp_path)], capture_output=True, text=True, check=True)
    assert (tmp_path / "f6_incoherence.pdf").stat().st_size > 0, proc.stdout


# -- F7: real layers, from a `ptqtheory validate` report ---------------------------------------


def _tiny_report(folder: Path) -> Path:
    """A hand-made report in validate's format (two settings, two layers): for the plumbing only;
    the quick build above reads a real one."""
    def layer(name, ratios, applied=8):
        bounds = {label: {"kind": kind, "rows_applied": 0 if r is None else applied, "violations": 0,
                          "max_ratio": r} for label, (kind, r) in ratios.items()}
        return {"layer": name, "shape": [8, 16], "lam": 0.5, "seconds": 0.01,
                "summary": {"identity": "I2", "rows": 8, "identity_holds": True,
                            "identity_max_gap": 1e-15, "pivots_hold": True, "clipped_rows": 0,
                            "bounds": bounds}}
    det = {"B1": ("deterministic", 0.4), "B7": ("deterministic", 1.0), "B8": ("deterministic", None)}
    sto = {"B3": ("per-run", 0.7), "B5": ("probability", 0.6), "B6.lam": ("probability", 0.0)}
    report = {"p": 1e-6, "configs": [
        {"config": "optq-4b", "method": "optq", "bits": 4, "group_size": None, "cosine_mean": 0.95,
         "cosine_min": 0.9, "layers": [layer("a", det), layer("b", det)]},
        {"config": "optq-stochastic-3b", "method": "optq-stochastic", "bits": 3, "group_size": None,
         "cosine_mean": 0.7, "cosine_min": 0.5, "layers": [layer("a", sto), layer("b", sto)]},
    ]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report))
    return folder / "report.json"


def test_f7_quick_build_reads_a_real_report(built):
    """The quick build ran `ptqtheory validate` on every linear layer of the embedded MiniLM."""
    _, result = built["F7"]
    rows = result["rows"]
    assert result["report"] is None  # the temporary quick report
    assert len({r["layer"] for r in rows}) == 36
    assert {r["config"] for r in rows} == {"optq-4b", "optq-stochastic-4b"}
    held = {r["bound"] for r in rows if r["hypotheses_held"]}
    assert {"B1", "B2", "B4", "B5", "B6", "B7"} <= held
    assert all(0 < r["empirical_max_ratio"] <= 1 + 1e-9 for r in rows if r["checked_deterministic"])
    assert all(-1 <= r["cosine_min"] <= r["cosine_mean"] <= 1 for r in rows)


def test_f7_from_a_report_file_cli_and_script(tmp_path):
    path = _tiny_report(tmp_path / "rep")
    for report in (path, path.parent):  # the file or its folder
        result = f7.build(tmp_path / "out", report=report)
        assert result["report"] == path and len(result["rows"]) == 12 and not result["findings"]
    applied = [r for r in result["rows"] if r["hypotheses_held"]]
    assert len(applied) == 10 and sum(r["checked_probability"] for r in applied) == 4
    out = tmp_path / "cli"
    assert main(["figures", "--out", str(out), "--only", "F7", "--report", str(path)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"f7_real_layers.{e}" for e in ("csv", "pdf", "png")]
    script = REPO / "figures" / "f7_real_layers.py"
    proc = subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "s"), "--report",
                           str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "s" / "f7_real_layers.png").stat().st_size > 0


def test_f7_without_a_report(tmp_path, monkeypatch, capsys):
    """No report: F7 says how to produce one. The script and `--report` fail (exit 2, no traceback);
    `ptqtheory figures` without `--report` skips F7 and builds the others."""
    monkeypatch.chdir(tmp_path)  # no ptqtheory-report/ here
    with pytest.raises(ReportMissing, match="ptqtheory validate --out ptqtheory-report"):
        f7.build(tmp_path / "out")
    with pytest.raises(ReportMissing, match=r"nope\.json"):
        f7.build(tmp_path / "out", quick=True, report=tmp_path / "nope.json")
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"configs": [{"config": "x"}]}')
    with pytest.raises(ValueError, match="not a `ptqtheory validate` report"):
        f7.build(tmp_path / "out", report=bogus)

    out = tmp_path / "figs"
    assert main(["figures", "--quick", "--out", str(out), "--only", "F7,F1", "--report",
                 str(tmp_path / "nope.json")]) == 2
    assert "ptqtheory validate --out" in capsys.readouterr().err
    assert not out.exists()  # checked before anything was built
    assert main(["figures", "--out", str(out), "--only", "F7"]) == 0
    printed = capsys.readouterr().out
    assert "note: skipped" in printed and "ptqtheory validate --out ptqtheory-report" in printed
    assert not out.exists() or not list(out.iterdir())
    logged = {}
    assert build_all(out, only="F7", log=lambda key, res, sec: logged.update({key: res})) == []
    assert logged["F7"]["paths"] == {} and logged["F7"]["findings"][0].startswith("note: skipped")

    script = REPO / "figures" / "f7_real_layers.py"
    proc = subprocess.run([sys.executable, str(script), "--out", str(out)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "run `ptqtheory validate --out ptqtheory-report` first" in proc.stderr
