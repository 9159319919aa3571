"""Lines of the package at a git revision: all lines, and code lines (without docstrings, comments and
blank lines), for issue 12's "net fewer lines" measurement.

    python tools/count_lines.py REV [PATH_TO_LEAVE_OUT ...]
    python tools/count_lines.py REV --same-features tools/features_since_issue12.txt [--per-file] [--words]

The second form counts the features that existed before issue 12's work: it leaves out the modules the
file lists (``module PATH``) and, in every other module, the lines ``git blame`` attributes to the
commits it lists (``commit SHA``). Lines that a listed commit deleted from those other modules are
added back (found by ``git blame`` of the parent), so an old line that a feature rewrote still counts once.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import subprocess
import sys
import tokenize

_SKIP = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


def code_line_numbers(src: str) -> set[int]:
    """Numbers of the lines holding a token that is not a comment or part of a docstring."""
    doc: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        value = getattr(node, "value", None)
        if isinstance(node, ast.Expr) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            doc.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in _SKIP:
            lines.update(ln for ln in range(tok.start[0], tok.end[0] + 1) if ln not in doc)
    return lines


def prose_words(src: str) -> int:
    """Words in the docstrings (bare string statements) and comments of ``src``."""
    words = sum(len(node.value.value.split()) for node in ast.walk(ast.parse(src))
                if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str))
    tokens = tokenize.generate_tokens(io.StringIO(src).readline)
    return words + sum(len(tok.string.lstrip("#").split()) for tok in tokens if tok.type == tokenize.COMMENT)


def code_lines(src: str) -> int:
    """How many lines hold a token that is not a comment or part of a docstring (a bare string statement)."""
    return len(code_line_numbers(src))


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def _blamed_lines(rev: str, name: str, commits: set[str]) -> set[int]:
    """Line numbers of ``name`` at ``rev`` that ``git blame`` attributes to one of ``commits``."""
    out: set[int] = set()
    for line in _git("blame", "--porcelain", rev, "--", name).splitlines():
        m = re.match(r"^([0-9a-f]{40}) \d+ (\d+)", line)
        if m and m.group(1) in commits:
            out.add(int(m.group(2)))
    return out


def _deleted_by(commits: set[str], leave_out: set[str]) -> tuple[int, int]:
    """Lines, and code lines, of other origin (older, or from unlisted commits) that the listed commits
    deleted from ptqtheory/ modules that are not left out; a merge is skipped (its branch's commits are
    listed)."""
    raw = code = 0
    for sha in commits:
        parents = _git("rev-list", "--parents", "-n", "1", sha).split()[1:]
        if len(parents) != 1:
            continue
        for name in _git("diff", "--name-only", "--no-renames", "--diff-filter=MD", parents[0], sha, "--",
                         "ptqtheory").split():
            if not name.endswith(".py") or name in leave_out:
                continue
            diff = _git("diff", "-U0", parents[0], sha, "--", name)
            hunks = re.finditer(r"^@@ -(\d+)(?:,(\d+))? ", diff, re.M)
            code_numbers = code_line_numbers(_git("show", f"{parents[0]}:{name}"))
            for hunk in hunks:
                start, count = int(hunk.group(1)), int(hunk.group(2) or 1)
                if count:
                    blame = _git("blame", "--porcelain", "-L", f"{start},+{count}", parents[0], "--", name)
                    for m in re.finditer(r"^([0-9a-f]{40}) \d+ (\d+)", blame, re.M):
                        if m.group(1) not in commits:
                            raw += 1
                            code += int(m.group(2)) in code_numbers
    return raw, code


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="git revision to count, e.g. HEAD or 5031c5a^")
    parser.add_argument("leave_out", nargs="*", help="package paths to leave out")
    parser.add_argument("--same-features", metavar="FILE", help="file listing feature modules and commits")
    parser.add_argument("--per-file", action="store_true", help="also print each module's counted lines")
    parser.add_argument("--words", action="store_true",
                        help="also print the words of all docstrings and comments (whole modules)")
    args = parser.parse_args(argv)
    try:
        _git("rev-parse", "--verify", "--quiet", f"{args.rev}^{{commit}}")
    except subprocess.CalledProcessError:
        parser.error(f"rev: {args.rev!r} is not a commit here; pass a revision such as HEAD")
    commits: set[str] = set()
    leave_out = set(args.leave_out)
    if args.same_features:
        for line in open(args.same_features, encoding="utf-8"):
            kind, _, value = line.partition(" ")
            if kind == "module":
                leave_out.add(value.strip())
            elif kind == "commit":
                commits.add(value.split()[0])
    raw = code = words = 0
    for name in _git("ls-tree", "-r", "--name-only", args.rev, "ptqtheory").split():
        if name.endswith(".py") and name not in leave_out:
            src = _git("show", f"{args.rev}:{name}")
            words += prose_words(src) if args.words else 0
            feature = _blamed_lines(args.rev, name, commits) if commits else set()
            file_raw, file_code = src.count("\n") - len(feature), len(code_line_numbers(src) - feature)
            raw, code = raw + file_raw, code + file_code
            if args.per_file:
                print(f"{name:48s} {file_raw:6d} lines {file_code:6d} code lines")
    if commits:
        back_raw, back_code = _deleted_by(commits, leave_out)
        print(f"{args.rev}: {raw} lines, {code} code lines without the listed features; their commits also "
              f"deleted {back_raw} lines ({back_code} code lines) of other modules: {raw + back_raw} lines, "
              f"{code + back_code} code lines counting those back")
    else:
        print(f"{args.rev}: {raw} lines, {code} code lines")
    if args.words:
        print(f"{args.rev}: {words} words in docstrings and comments")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
