"""Jane Austen's six novels, offline, for calibrating and evaluating language models.

The texts (public domain, from Project Gutenberg) come from the R package ``janeaustenr`` as packaged by
Debian (``r-cran-janeaustenr``, MIT). R is not needed: the package stores the novels in an R lazy-load
database (``data/Rdata.rdx``, ``data/Rdata.rdb``), read here with the PyPI package ``rdata`` (extra
``ptqtheory[llm]``): nothing is unpickled or executed. Install the data without root::

    apt-get download r-cran-janeaustenr
    dpkg-deb -x r-cran-janeaustenr_*.deb ~/.local/share/ptqtheory/janeaustenr

The ``janeaustenr`` package folder, or an extraction root holding ``usr/lib/R/site-library/janeaustenr``,
is searched for in order (:func:`search_path`):

1. ``$PTQTHEORY_JANEAUSTENR``, if set (an error if it holds neither);
2. ``~/.local/share/ptqtheory/janeaustenr`` (the ``dpkg-deb -x`` above);
3. ``/usr/lib/R/site-library/janeaustenr`` (``apt-get install r-cran-janeaustenr``).

:func:`calibration_and_evaluation` gives disjoint calibration and evaluation text: two whole novels, a
user file's two halves, or, without the corpus, Python's standard-library docstrings (and says so).
"""

from __future__ import annotations

import bz2
import functools
import lzma
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CALIBRATION_TITLE",
    "EVALUATION_TITLE",
    "INSTALL_LINES",
    "TITLES",
    "CorpusMissingError",
    "TextSplit",
    "austen_novels",
    "calibration_and_evaluation",
    "find_package",
    "paragraphs",
    "search_path",
]

ENV_VAR = "PTQTHEORY_JANEAUSTENR"
# R variable name -> title, in order of publication (janeaustenr::austen_books() uses these titles).
TITLES = {
    "sensesensibility": "Sense & Sensibility",
    "prideprejudice": "Pride & Prejudice",
    "mansfieldpark": "Mansfield Park",
    "emma": "Emma",
    "northangerabbey": "Northanger Abbey",
    "persuasion": "Persuasion",
}
CALIBRATION_TITLE = "Sense & Sensibility"
EVALUATION_TITLE = "Pride & Prejudice"
INSTALL_LINES = ("apt-get download r-cran-janeaustenr && "
                 "dpkg-deb -x r-cran-janeaustenr_*.deb ~/.local/share/ptqtheory/janeaustenr")
_PACKAGE_IN_ROOT = Path("usr/lib/R/site-library/janeaustenr")
# A user file must give each half at least this many words (a few windows of tokens, not a sentence).
MIN_WORDS_PER_HALF = 100


class CorpusMissingError(ValueError):
    """The janeaustenr data (Debian package r-cran-janeaustenr) were not found or cannot be read."""


@dataclass(frozen=True)
class TextSplit:
    """Calibration and evaluation text, disjoint, with where they came from.

    Attributes
    ----------
    calibration, evaluation : str
        The two texts; paragraphs separated by blank lines.
    source : str
        A sentence saying exactly where each text came from (printed by the CLI).
    fallback : bool
        True when the Austen corpus was absent and standard-library docstrings were used instead.
    """

    calibration: str
    evaluation: str
    source: str
    fallback: bool


def search_path() -> list[Path]:
    """Folders searched for janeaustenr, in order (read at call time: the environment may change)."""
    env = os.environ.get(ENV_VAR)
    return ([Path(env).expanduser()] if env else []) + [
        Path.home() / ".local" / "share" / "ptqtheory" / "janeaustenr",
        Path("/usr/lib/R/site-library/janeaustenr")]


def find_package() -> Path:
    """The ``janeaustenr`` package folder (the one holding ``data/Rdata.rdx``), by :func:`search_path`.

    Raises
    ------
    CorpusMissingError
        When ``$PTQTHEORY_JANEAUSTENR`` is set but holds no janeaustenr, or no folder has it.
    """
    env = os.environ.get(ENV_VAR)
    for folder in search_path():
        for candidate in (folder, folder / _PACKAGE_IN_ROOT):
            if (candidate / "data" / "Rdata.rdx").is_file() and (candidate / "data" / "Rdata.rdb").is_file():
                return candidate
        if env and folder == Path(env).expanduser():
            # An explicit choice that is wrong is an error, not a reason to read something else.
            raise CorpusMissingError(
                f"{ENV_VAR}={env} holds no janeaustenr data (expected {folder}/data/Rdata.rdx or "
                f"{folder / _PACKAGE_IN_ROOT}/data/Rdata.rdx); point it at the folder where "
                f"r-cran-janeaustenr_*.deb was extracted with dpkg-deb -x, or unset it")
    searched = ", ".join(str(p) for p in search_path())
    raise CorpusMissingError(f"Jane Austen's novels (Debian package r-cran-janeaustenr) not found in "
                             f"{searched}; install them with: {INSTALL_LINES}")


def _unserialize(raw: bytes, what: str):
    """An R object from R's serialization format (XDR), via rdata's parser (no code is executed)."""
    try:
        import rdata
    except ImportError as exc:
        raise CorpusMissingError("reading the janeaustenr data needs the PyPI package rdata: "
                                 "pip install 'rdata>=0.11' (or ptqtheory[llm])") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns about file extensions; these are not files
        try:
            return rdata.conversion.convert(rdata.parser.parse_data(raw, extension=".rds"))
        except Exception as exc:
            raise CorpusMissingError(f"{what}: not a readable R object ({type(exc).__name__}: {exc}); "
                                     f"reinstall the data: {INSTALL_LINES}") from exc


def _decompress(blob: bytes, compressed, what: str) -> bytes:
    """One lazy-load entry: a 4-byte big-endian length, then the compressed serialization (R's
    ``makeLazyLoadDB(compress=TRUE)``: a zlib stream; ``compress=2`` or ``3`` add one type byte: ``Z`` zlib,
    ``2`` bzip2, ``X`` xz, ``0`` stored)."""
    if len(blob) < 5:
        raise CorpusMissingError(f"{what}: truncated entry; reinstall the data: {INSTALL_LINES}")
    (length,) = struct.unpack(">I", blob[:4])
    try:
        if compressed in (True, 1):
            raw = zlib.decompress(blob[4:])
        elif compressed in (2, 3):
            kind, body = blob[4:5], blob[5:]
            decoders: dict[bytes, Callable[[bytes], bytes]] = {
                b"Z": zlib.decompress, b"2": bz2.decompress, b"X": lzma.decompress, b"0": bytes}
            raw = decoders[kind](body)
        else:
            raise CorpusMissingError(f"{what}: unknown lazy-load compression {compressed!r}")
    except (zlib.error, OSError, lzma.LZMAError, KeyError) as exc:
        raise CorpusMissingError(f"{what}: corrupt entry ({exc}); reinstall the data: {INSTALL_LINES}") from exc
    if len(raw) != length:
        raise CorpusMissingError(f"{what}: {len(raw)} bytes, expected {length}; "
                                 f"reinstall the data: {INSTALL_LINES}")
    return raw


@functools.lru_cache(maxsize=4)
def _read_novels(data_dir: str) -> tuple[tuple[str, str], ...]:
    folder = Path(data_dir)
    index = _unserialize((folder / "Rdata.rdx").read_bytes(), f"{folder}/Rdata.rdx")
    try:
        variables, compressed = index["variables"], index["compressed"]
    except (KeyError, TypeError) as exc:
        raise CorpusMissingError(f"{folder}/Rdata.rdx is not a lazy-load index; "
                                 f"reinstall: {INSTALL_LINES}") from exc
    compressed = compressed.item() if hasattr(compressed, "item") else compressed
    offsets = {str(name): (int(pos[0]), int(pos[1])) for name, pos in variables.items()}
    absent = [name for name in TITLES if name not in offsets]
    if absent:
        raise CorpusMissingError(f"{folder}: janeaustenr data without {absent}; reinstall: {INSTALL_LINES}")
    db = (folder / "Rdata.rdb").read_bytes()
    out = []
    for name, title in TITLES.items():
        start, size = offsets[name]
        what = f"{folder}/Rdata.rdb[{name}]"
        lines = _unserialize(_decompress(db[start:start + size], compressed, what), what)
        # A character vector, one element per line of the Gutenberg text; R's NA (None) is not text.
        out.append((title, "\n".join("" if line is None else str(line) for line in lines)))
    return tuple(out)


def austen_novels() -> dict[str, str]:
    """The six novels: title (:data:`TITLES`) -> full text (the package's lines joined with ``\\n``;
    blank lines separate paragraphs). Parsed once per process (about 2 s).

    Raises
    ------
    CorpusMissingError
        When the data are not installed (the message gives the install commands) or unreadable.
    """
    data_dir = find_package() / "data"
    return dict(_read_novels(str(data_dir.resolve())))


def paragraphs(text: str) -> list[str]:
    """The non-blank paragraphs of ``text`` (blocks separated by blank lines), stripped, in order."""
    return [block.strip("\n") for block in re.split(r"\n[ \t\r\f\v]*\n", text) if block.strip()]


def _file_halves(path: Path) -> tuple[str, str]:
    from .text import TEXT_FIX, read_text_file

    paras = paragraphs(read_text_file(path))
    if len(paras) < 2:
        raise ValueError(f"--text {path}: {len(paras)} paragraph(s); it is split into two halves at a blank "
                         f"line, so it needs at least 2 paragraphs; {TEXT_FIX}")
    # Contiguous halves, so no evaluation paragraph is a neighbour of calibration.
    run = np.cumsum([len(p) for p in paras])  # characters up to each paragraph's end
    cut = 1 + int(np.argmin(np.abs(2 * run[:-1] - run[-1])))  # the first of equally close boundaries
    first, second = "\n\n".join(paras[:cut]), "\n\n".join(paras[cut:])
    for half, name in ((first, "first"), (second, "second")):
        words = len(half.split())
        if words < MIN_WORDS_PER_HALF:
            raise ValueError(f"--text {path}: the {name} half has {words} words, fewer than "
                             f"{MIN_WORDS_PER_HALF}; pass a longer text (thousands of words make a meaningful "
                             f"evaluation); {TEXT_FIX}")
    return first, second


def calibration_and_evaluation(text: str | Path | None = None) -> TextSplit:
    """Disjoint calibration and evaluation text.

    Parameters
    ----------
    text : str or Path, optional
        A user UTF-8 text file (``--text``), cut at the paragraph boundary closest to its middle by
        characters: the first half calibrates, the second evaluates. Without it: *Sense & Sensibility*
        calibrates and *Pride & Prejudice* evaluates (:func:`austen_novels`); without the corpus, all of
        :func:`ptqtheory.models.text.split` (its calibration / held-out paragraphs joined), ``fallback=True``.

    Returns
    -------
    TextSplit

    Raises
    ------
    ValueError
        For a file that is missing, empty, binary, not UTF-8, or too short (each half needs
        ``MIN_WORDS_PER_HALF`` words); the message names ``--text`` and the fix.
    """
    if text is not None:
        if not isinstance(text, str | Path):
            raise ValueError(f"text must be a path to a UTF-8 text file (str or Path); "
                             f"got {type(text).__name__}")
        path = Path(text).expanduser()
        first, second = _file_halves(path)
        source = (f"--text {path}: first half of its paragraphs (calibration), second half (evaluation), "
                  "cut at the paragraph boundary nearest the middle")
        return TextSplit(first, second, source, False)
    try:
        novels = austen_novels()
        where = find_package()
    except CorpusMissingError as exc:
        from .text import split

        # All of it (about 39,000 words calibrate, 8,500 are held out), not split()'s default cap of
        # 256/128 paragraphs: a perplexity needs thousands of held-out tokens.
        cal, held = split(limit_calibration=1 << 30, limit_heldout=1 << 30)
        in_calibration = set(cal)
        # Guard against a docstring shared by two modules: evaluation text must not be calibration text.
        held = [p for p in held if p not in in_calibration]
        return TextSplit("\n\n".join(cal), "\n\n".join(held),
                         f"Jane Austen corpus not available ({exc}); fell back to Python standard-library "
                         f"docstrings: ptqtheory.models.text.split() calibration modules ({len(cal)} "
                         f"paragraphs) for calibration, held-out modules ({len(held)} paragraphs) for "
                         "evaluation", True)
    return TextSplit(novels[CALIBRATION_TITLE], novels[EVALUATION_TITLE],
                     f"Jane Austen, {CALIBRATION_TITLE} (calibration) and {EVALUATION_TITLE} (evaluation): "
                     f"full texts from the janeaustenr R package (Debian r-cran-janeaustenr) at {where}", False)
