"""Usage errors: one line naming the option and the fix, exit status 2, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from ptqtheory.cli import main


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("not a folder")
    return f


@pytest.mark.parametrize(("argv", "names"), [
    (["validate", "--out", "{file}"], "--out"),
    (["validate", "--out", "{file}/sub"], "--out"),
    (["validate", "--percdamp", "nan"], "--percdamp"),
    (["validate", "--settings", "optq-4"], "--settings"),
    (["validate", "--model", "gpt2"], "--model"),
    (["validate", "--text", "{file}-missing"], "--text"),
    (["validate", "--tokens", "0"], "--tokens"),
    (["validate", "--workers", "0"], "--workers"),
    (["validate", "--device", "tpu"], "--device"),
    (["validate", "--backend", "jax"], "--backend"),
    (["validate", "--backend", "numpy", "--device", "cuda"], "--backend"),
    (["certify", "--out", "{file}"], "--out"),
    (["figures", "--out", "{file}", "--quick"], "--out"),
    (["check", "--budget", "-5"], "--budget"),
    (["check", "--budget", "nan"], "--budget"),
    (["check", "--out", "{dir}"], "--out"),
    (["quantize", "{dir}", "--method", "optq", "--bits", "4", "--out", "{file}"], "--out"),
    (["quantize", "{dir}", "--method", "optq", "--bits", "64"], "--bits"),
    (["quantize", "{dir}", "--method", "optq", "--bits", "4", "--percdamp", "nan"], "--percdamp"),
    (["quantize", "{dir}/none", "--method", "optq", "--bits", "4"], "folder"),
    (["quantize", "{dir}", "--method", "gptq", "--bits", "4"], "--method"),
    (["nonsense"], "invalid choice"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, names, a_file, tmp_path, capsys):
    argv = [a.format(file=a_file, dir=tmp_path) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0], lines[0]
