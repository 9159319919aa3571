"""Jane Austen's novels from the Debian package r-cran-janeaustenr, read without R; the calibration /
evaluation split, user files, and the standard-library fallback.

CI extracts the package where the default search path finds it::

    apt-get download r-cran-janeaustenr
    dpkg-deb -x r-cran-janeaustenr_*.deb ~/.local/share/ptqtheory/janeaustenr
"""

import bz2
import lzma
import struct
import zlib

import pytest

from ptqtheory.models import corpus


def _words(text):
    return " ".join(text.split())


def _long_paragraphs(text):
    """Paragraphs of 8 words or more (short ones such as '"Indeed!"' occur in any two novels)."""
    return {_words(p) for p in corpus.paragraphs(text) if len(p.split()) >= 8}


@pytest.fixture(scope="module")
def novels():
    try:
        return corpus.austen_novels()
    except corpus.CorpusMissingError as exc:
        pytest.fail(f"CI installs the corpus; {exc}")


def test_six_novels_complete(novels):
    assert list(novels) == ["Sense & Sensibility", "Pride & Prejudice", "Mansfield Park", "Emma",
                            "Northanger Abbey", "Persuasion"]
    words = {title: len(text.split()) for title, text in novels.items()}
    assert words["Pride & Prejudice"] > 100_000 and words["Emma"] > 150_000
    assert all(n > 70_000 for n in words.values()), words
    first = {
        "Sense & Sensibility": "The family of Dashwood had long been settled in Sussex.",
        "Pride & Prejudice": "It is a truth universally acknowledged, that a single man in possession",
        "Mansfield Park": "About thirty years ago Miss Maria Ward, of Huntingdon,",
        "Emma": "Emma Woodhouse, handsome, clever, and rich,",
        "Northanger Abbey": "No one who had ever seen Catherine Morland in her infancy",
        "Persuasion": "Sir Walter Elliot, of Kellynch Hall, in Somersetshire,",
    }
    for title, opening in first.items():
        assert opening in _words(novels[title][:3000]), title
    assert novels["Pride & Prejudice"].startswith("PRIDE AND PREJUDICE\n")
    assert "\n\n" in novels["Emma"]  # lines joined by newlines; blank lines separate paragraphs


def test_default_split_is_two_disjoint_novels(novels):
    split = corpus.calibration_and_evaluation()
    assert not split.fallback
    assert split.calibration == novels[corpus.CALIBRATION_TITLE] == novels["Sense & Sensibility"]
    assert split.evaluation == novels[corpus.EVALUATION_TITLE] == novels["Pride & Prejudice"]
    assert "Sense & Sensibility" in split.source and "Pride & Prejudice" in split.source
    assert "janeaustenr" in split.source
    assert not _long_paragraphs(split.calibration) & _long_paragraphs(split.evaluation)


def test_search_path_accepts_the_extraction_root_and_the_package(monkeypatch, tmp_path):
    package = corpus.find_package()
    assert package.name == "janeaustenr" and (package / "data" / "Rdata.rdx").is_file()
    root = package.parents[4] if package.parts[-5:-1] == ("usr", "lib", "R", "site-library") else None
    for folder in [package] + ([root] if root else []):
        monkeypatch.setenv(corpus.ENV_VAR, str(folder))
        assert corpus.search_path()[0] == folder
        assert corpus.find_package() == package
    monkeypatch.setenv(corpus.ENV_VAR, str(tmp_path))  # set, but wrong: an error, not a silent fallback
    with pytest.raises(corpus.CorpusMissingError, match=corpus.ENV_VAR):
        corpus.find_package()


def test_fallback_to_stdlib_docstrings(monkeypatch, tmp_path):
    monkeypatch.delenv(corpus.ENV_VAR, raising=False)
    monkeypatch.setattr(corpus, "search_path", lambda: [tmp_path])
    with pytest.raises(corpus.CorpusMissingError, match="apt-get download r-cran-janeaustenr") as err:
        corpus.austen_novels()
    assert isinstance(err.value, ValueError) and "dpkg-deb -x" in str(err.value)
    split = corpus.calibration_and_evaluation()
    assert split.fallback
    assert "standard-library" in split.source and "not available" in split.source
    assert len(split.calibration.split()) > 20_000 and len(split.evaluation.split()) > 5000
    assert not set(corpus.paragraphs(split.calibration)) & set(corpus.paragraphs(split.evaluation))


def test_user_file_is_cut_into_two_halves(tmp_path):
    paras = [f"Paragraph {i}: " + " ".join(f"word{i}x{j}" for j in range(30 + 5 * i)) for i in range(12)]
    path = tmp_path / "mine.txt"
    path.write_text("\n\n\n".join(paras) + "\n", encoding="utf-8")
    split = corpus.calibration_and_evaluation(path)
    assert not split.fallback and str(path) in split.source
    cal, ev = corpus.paragraphs(split.calibration), corpus.paragraphs(split.evaluation)
    assert cal + ev == paras and cal and ev  # a partition, in order: disjoint by construction
    assert abs(len(split.calibration) - len(split.evaluation)) < max(map(len, paras))  # cut near the middle
    assert corpus.calibration_and_evaluation(str(path)) == split


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"   \n\n  ", "empty"),
    (b"binary\x00data " * 200, "binary"),
    ("caf\u00e9 ".encode("latin-1") * 300 + b"\n\n" + b"more " * 300, "not UTF-8"),
    (b"one paragraph only " * 100, "at least 2 paragraphs"),
    (b"short first\n\nand short second", "fewer than"),
])
def test_bad_user_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as err:
        corpus.calibration_and_evaluation(path)
    assert "--text" in str(err.value)


def test_missing_user_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"--text .*no such file"):
        corpus.calibration_and_evaluation(tmp_path / "absent.txt")


@pytest.mark.parametrize("compressed, pack", [
    (True, lambda raw: zlib.compress(raw)),
    (2, lambda raw: b"2" + bz2.compress(raw)),
    (3, lambda raw: b"X" + lzma.compress(raw)),
    (3, lambda raw: b"0" + raw),
])
def test_lazy_load_entry_compressions(compressed, pack):
    raw = b"X\n" + bytes(range(200))
    blob = struct.pack(">I", len(raw)) + pack(raw)
    assert corpus._decompress(blob, compressed, "entry") == raw
    with pytest.raises(corpus.CorpusMissingError, match="expected"):
        corpus._decompress(struct.pack(">I", len(raw) + 1) + pack(raw), compressed, "entry")
