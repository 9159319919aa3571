"""The paper figures: each builds (quick sizes) into PDF, PNG and CSV, and every bound column of
each CSV is at least its empirical column wherever the bound's hypotheses held."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest

from ptqtheory.cli import main
from ptqtheory.figures import FIGURES, build_all, select

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
        select("F9")
    with pytest.raises(ValueError, match="unknown figure"):
        build_all(tmp_path, quick=True, only="F1,F9")


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
