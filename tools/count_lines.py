"""Lines of the package at a git revision: all lines, and code lines (without docstrings, comments and
blank lines), for issue 12's "net fewer lines" measurement.

    python tools/count_lines.py REV [PATH_TO_LEAVE_OUT ...]
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize

_SKIP = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)


def code_lines(src: str) -> int:
    """Lines holding a token that is not a comment or part of a docstring (a bare string statement)."""
    doc: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        value = getattr(node, "value", None)
        if isinstance(node, ast.Expr) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            doc.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in _SKIP:
            lines.update(ln for ln in range(tok.start[0], tok.end[0] + 1) if ln not in doc)
    return len(lines)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    rev, leave_out = argv[0], set(argv[1:])
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "ptqtheory"], capture_output=True,
                           text=True, check=True).stdout.split()
    raw = code = 0
    for name in names:
        if name.endswith(".py") and name not in leave_out:
            src = subprocess.run(["git", "show", f"{rev}:{name}"], capture_output=True, text=True,
                                 check=True).stdout
            raw += src.count("\n")
            code += code_lines(src)
    print(f"{rev}: {raw} lines, {code} code lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
