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


def test_singular_data_without_damping_is_one_line(tmp_path, capsys):
    """--percdamp 0 with fewer tokens than features: H = X^T X is singular on the first layer. That is
    found only once the data are seen, and still ends as one line with the option that fixes it."""
    code = main(["validate", "--settings", "optq-4b", "--percdamp", "0", "--tokens", "16", "--workers", "1",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # progress bars may precede it
    assert "Traceback" not in err, err
    assert last.startswith("ptqtheory validate: H = X^T X + lam*I is singular") and "--percdamp" in last, last


@pytest.mark.parametrize("model", ["minilm", "smollm2"])
@pytest.mark.parametrize(("content", "says"), [
    (b"", "the file is empty"),
    (b"\n \n\t\n", "the file is empty"),
    (b"abc\x00def\n\nmore words here", "a binary file"),
    ("caf\u00e9 au lait, s'il vous pla\u00eet\n\nencore".encode("latin-1"), "not UTF-8"),
])
def test_bad_text_files_are_one_line_for_both_models(model, content, says, tmp_path, capsys):
    """Both models read --text through one reader: the same one-line message, no codec traceback."""
    f = tmp_path / "text.txt"
    f.write_bytes(content)
    code = main(["validate", "--model", model, "--text", str(f), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ptqtheory validate: --text {f}: {says}"), err
