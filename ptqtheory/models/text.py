"""Offline text for calibration and held-out evaluation: docstrings of Python's standard library.

Every Python installation carries them, so the embedded default needs no download. Modules are split
deterministically into calibration and held-out sets (by a hash of the name), paragraphs in a fixed order.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import re
import warnings
from pathlib import Path

__all__ = ["STDLIB_MODULES", "file_paragraphs", "split", "stdlib_paragraphs"]

# A fixed list (not sys.stdlib_module_names, which changes between versions): pure-Python modules
# with substantial English docstrings, present on every CPython >= 3.10.
STDLIB_MODULES = (
    "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "cmd", "collections",
    "concurrent.futures", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "email", "enum", "fileinput", "fnmatch", "fractions", "ftplib",
    "functools", "getopt", "gettext", "glob", "gzip", "heapq", "hmac", "html", "http.client",
    "imaplib", "inspect", "ipaddress", "json", "logging", "mailbox", "mimetypes", "numbers",
    "operator", "optparse", "os", "pathlib", "pickle", "pkgutil", "platform", "plistlib", "pprint",
    "queue", "random", "re", "sched", "secrets", "selectors", "shelve", "shlex", "shutil",
    "smtplib", "socket", "socketserver", "statistics", "string", "struct", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace", "traceback",
    "typing", "unittest", "urllib.parse", "urllib.request", "uuid", "warnings", "wave",
    "weakref", "xml.dom.minidom", "zipfile", "zipimport",
)


def _clean(doc: str) -> list[str]:
    texts = [" ".join(block.split()) for block in re.split(r"\n\s*\n", inspect.cleandoc(doc))]
    # keep prose: enough words, mostly letters (skips code examples and tables)
    return [text for text in texts if len(text.split()) >= 8
            and sum(c.isalpha() for c in text) > 0.6 * len(text) and ">>>" not in text]


def stdlib_paragraphs(module_name: str) -> list[str]:
    """Prose paragraphs from a module's docstring and its public members' docstrings, in order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            mod = importlib.import_module(module_name)
        except ImportError:
            return []
    members = [getattr(mod, name, None) for name in sorted(getattr(mod, "__all__", None) or dir(mod))
               if not name.startswith("_")]
    docs = [mod.__doc__ or ""] + [
        str(obj.__doc__) for obj in members
        if getattr(obj, "__module__", None) == mod.__name__ and getattr(obj, "__doc__", None)]
    return [para for d in docs for para in _clean(d)]


def split(limit_calibration: int = 256, limit_heldout: int = 128) -> tuple[list[str], list[str]]:
    """``(calibration, held_out)`` paragraphs from :data:`STDLIB_MODULES` (about 1 in 4 modules is
    held out); the same on every machine with the same Python minor version."""
    cal: list[str] = []
    held: list[str] = []
    for name in STDLIB_MODULES:
        held_out = int(hashlib.sha256(name.encode()).hexdigest(), 16) % 4 == 0
        (held if held_out else cal).extend(stdlib_paragraphs(name))
    return cal[:limit_calibration], held[:limit_heldout]


TEXT_FIX = "pass --text a UTF-8 text file of prose with paragraphs separated by blank lines"


def read_text_file(path: str | Path) -> str:
    """A ``--text`` file's text (UTF-8; BOM dropped, ``\\n`` line ends), or a ``ValueError`` starting
    ``--text PATH:`` naming the fault: missing, empty, binary, not UTF-8. Both models' ``--text`` use it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--text {path}: no such file; {TEXT_FIX}")
    data = path.read_bytes()
    if not data.strip():
        raise ValueError(f"--text {path}: the file is empty; {TEXT_FIX}")
    if b"\x00" in data:
        raise ValueError(f"--text {path}: a binary file (it holds NUL bytes); {TEXT_FIX}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--text {path}: not UTF-8 (byte {exc.start}); convert it, e.g. iconv -f LATIN1 "
                         f"-t UTF-8 {path.name} > {path.stem}.utf8.txt, or {TEXT_FIX}") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def file_paragraphs(path: str | Path, limit_calibration: int = 256,
                    limit_heldout: int = 128) -> tuple[list[str], list[str]]:
    """``(calibration, held_out)`` from a UTF-8 text file: paragraphs alternate between the two."""
    text = read_text_file(path)
    paras = [" ".join(b.split()) for b in re.split(r"\n\s*\n", text) if len(b.split()) >= 3]
    if len(paras) < 4:
        raise ValueError(f"--text {path}: need at least 4 paragraphs of 3 or more words (blank-line "
                         f"separated: they alternate between calibration and held-out); found {len(paras)}; "
                         f"{TEXT_FIX}")
    return paras[0::2][:limit_calibration], paras[1::2][:limit_heldout]
