"""The package's import graph: no cycles, and the layering of docs/architecture.md.

Every module of ``ptqtheory`` is parsed with :mod:`ast` (nothing is imported, so the test also covers
modules whose optional dependencies are missing) and every import statement is read, including those
inside functions, methods, ``try`` blocks and ``if TYPE_CHECKING:`` blocks.

Rules for turning statements into edges between ``ptqtheory`` modules:

- ``import ptqtheory.a.b`` is an edge to ``ptqtheory.a.b``.
- ``from .mod import name`` (or its absolute spelling) is an edge to ``.mod``; when ``name`` is itself a
  submodule of ``.mod`` it is also an edge to that submodule (Python imports it if the package has not).
- ``from . import x`` / ``from .. import x``, where the package named is an ancestor of the importing
  module, is an edge to the submodule ``x`` only. The ancestor package is already being initialised when
  any of its submodules runs, so counting it would turn every package ``__init__`` that imports its own
  submodules into a cycle. When ``x`` is not a submodule it is a name read from the ancestor's
  ``__init__``, a real dependency, and the edge goes to the ancestor.
- The implicit import of parent packages is not an edge, for the same reason; a package ``__init__``
  importing its own submodules is an ordinary edge.
- Imports under ``if TYPE_CHECKING:`` are **not** runtime edges: they never execute, so they cannot take
  part in an import-time cycle, and annotation-only references between modules are normal. They **do**
  count for the layering rules, which are about which layer may know about which, not about import time.
- Lazy imports inside functions **are** runtime edges: they only postpone the cycle to the first call,
  and they are how the layering was being bypassed.

Cycles are reported per strongly connected component, each with every edge inside it (file and line),
so one failure lists all of them at once.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ptqtheory"

# The numpy reference and the core it is built on: these must never know about the torch backend.
# Prefixes cover today's layout (algorithms/, certificates.py, the core modules) and the names the
# redesign of issue 12 may introduce (a core/ package, numpy or exact backends under backends/).
NUMPY_REFERENCE_PREFIXES = (
    "ptqtheory.algorithms",
    "ptqtheory.certificates",
    "ptqtheory.bounds",
    "ptqtheory.calibration",
    "ptqtheory.factor",
    "ptqtheory.grids",
    "ptqtheory.orders",
    "ptqtheory.random",
    "ptqtheory.records",
    "ptqtheory.tolerances",
    "ptqtheory._context",
    "ptqtheory._linalg",
    "ptqtheory._validate",
    "ptqtheory.core",
    "ptqtheory.engine",
    "ptqtheory.backends.numpy",
    "ptqtheory.backends.exact",
)
TORCH_BACKEND_PREFIXES = ("ptqtheory.torch_backend", "ptqtheory.backends.torch")


def _backend_of(module: str) -> str | None:
    """The backend a module belongs to: ``ptqtheory.<x>_backend...`` or ``ptqtheory.backends.<x>...``."""
    parts = module.split(".")
    if len(parts) >= 2 and parts[1].endswith("_backend"):
        return parts[1][: -len("_backend")]
    if len(parts) >= 3 and parts[1] == "backends":
        return parts[2]
    return None


@dataclass(frozen=True)
class Import:
    """One import of a ``ptqtheory`` module by another.

    Attributes
    ----------
    source, target : str
        Dotted names of the importing and the imported module.
    names : tuple of str
        The names taken from ``target`` (``from target import a, b``); empty for ``import target``.
    path : str
        The importing file, relative to the repository root.
    line : int
        Line of the statement.
    lazy : bool
        The statement is inside a function body (runs at first call, not at import).
    type_only : bool
        The statement is inside ``if TYPE_CHECKING:`` (never runs).
    """

    source: str
    target: str
    names: tuple[str, ...]
    path: str
    line: int
    lazy: bool
    type_only: bool

    def where(self) -> str:
        """``path:line``, with the kind of import when it is not a plain top-level one."""
        kind = " (type-checking only)" if self.type_only else " (inside a function)" if self.lazy else ""
        return f"{self.path}:{self.line}{kind}"


def discover(package_dir: Path, package: str) -> dict[str, Path]:
    """Map every module of a package to its file.

    Parameters
    ----------
    package_dir : Path
        Directory of the top-level package.
    package : str
        Its import name.

    Returns
    -------
    dict
        Dotted module name (a package is named by its ``__init__``) to source path.
    """
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([package, *parts])] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    # ``if TYPE_CHECKING:`` and ``if typing.TYPE_CHECKING:``; the else branch runs and is not special.
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


_Statement = tuple[ast.Import | ast.ImportFrom, bool, bool]


def _statements(tree: ast.AST) -> Iterable[_Statement]:
    """Yield every import statement with (inside a function, inside ``if TYPE_CHECKING``)."""

    def walk(node: ast.AST, lazy: bool, type_only: bool) -> Iterable[_Statement]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy, type_only
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                yield from walk(stmt, lazy, True)
            for stmt in node.orelse:
                yield from walk(stmt, lazy, type_only)
            return
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            yield from walk(child, inner, type_only)

    yield from walk(tree, False, False)


def _known(name: str, modules: Mapping[str, Path]) -> str | None:
    """The longest prefix of a dotted name that is a module of the package, if any."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def scan(modules: Mapping[str, Path], root: Path, package: str) -> list[Import]:
    """Every import between modules of the package.

    Parameters
    ----------
    modules : Mapping
        Output of :func:`discover`.
    root : Path
        Directory the reported paths are relative to.
    package : str
        Top-level package name; imports of anything else are dropped.

    Returns
    -------
    list of Import
    """
    found = []
    for source, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        rel = str(path.relative_to(root))
        for node, lazy, type_only in _statements(tree):
            # (target, names, is_ancestor_from) triples for this statement.
            wanted: list[tuple[str, tuple[str, ...], bool]] = []
            if isinstance(node, ast.Import):
                wanted = [(alias.name, (), False) for alias in node.names]
            else:
                if node.level:
                    # Relative to the package that contains the module (a package's __init__ is its own).
                    base = source.split(".") if is_package else source.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                ancestor = source == origin or source.startswith(origin + ".")
                wanted = [(origin, tuple(a.name for a in node.names), ancestor)]
            for origin, names, ancestor in wanted:
                if origin != package and not origin.startswith(package + "."):
                    continue
                target = _known(origin, modules)
                if target is None:
                    continue
                sub = [n for n in names if f"{origin}.{n}" in modules]
                attrs = tuple(n for n in names if f"{origin}.{n}" not in modules)
                # A package reading names from its own __init__ (``from . import x`` there) is no edge.
                if target != source and (not ancestor or attrs or not names):
                    found.append(Import(source, target, attrs, rel, node.lineno, lazy, type_only))
                for n in sub:
                    found.append(Import(source, f"{origin}.{n}", (), rel, node.lineno, lazy, type_only))
    return found


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components that contain a cycle (Tarjan's algorithm, iterative).

    Parameters
    ----------
    graph : Mapping
        Node to its successors; successors that are not keys are treated as sinks.

    Returns
    -------
    list of list of str
        Each component with more than one node, or a node with an edge to itself, sorted.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    succ = {v: sorted(set(ws)) for v, ws in graph.items()}
    counter = 0
    for start in sorted(succ):
        if start in index:
            continue
        # Iterative DFS (a recursive one is fine for this package, but not for the synthetic tests'
        # long chains): each frame is (node, iterator position).
        work = [(start, 0)]
        while work:
            v, i = work.pop()
            if i == 0:
                index[v] = low[v] = counter
                counter += 1
                stack.append(v)
                on_stack.add(v)
            ws = succ.get(v, [])
            if i < len(ws):
                work.append((v, i + 1))
                w = ws[i]
                if w not in index:
                    work.append((w, 0))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in succ.get(v, []):
                    out.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
    return sorted(out)


def cycle_report(imports: Iterable[Import]) -> str:
    """Readable list of every cycle among runtime imports; empty when there is none."""
    runtime = [e for e in imports if not e.type_only]
    graph: dict[str, set[str]] = {}
    for e in runtime:
        graph.setdefault(e.source, set()).add(e.target)
    lines = []
    for comp in strongly_connected(graph):
        members = set(comp)
        lines.append(f"cycle among {len(comp)} modules: {', '.join(comp)}")
        for e in sorted(runtime, key=lambda e: (e.source, e.target, e.line)):
            if e.source in members and e.target in members:
                lines.append(f"    {e.source} -> {e.target}    {e.where()}")
    return "\n".join(lines)


def _under(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _private_owner(target: str, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(private dotted name, scope it is private to) for each private part of an import.

    A leading underscore makes a name private to the module or package that defines it: ``_x`` in
    module ``a.b`` belongs to ``a.b``; the module ``a._m`` belongs to package ``a`` (so every module under
    ``a`` may use it). Dunder names are public.
    """
    out = []
    parts = target.split(".")
    for k, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            out.append((".".join(parts[: k + 1]), ".".join(parts[:k])))
    for n in names:
        if n.startswith("_") and not n.startswith("__"):
            out.append((f"{target}.{n}", target))
    return out


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    modules = discover(ROOT / PACKAGE, PACKAGE)
    return scan(modules, ROOT, PACKAGE)


# ---------------------------------------------------------------------------------------------------
# The package


def test_scan_sees_the_package(imports):
    # Guards the tests below against passing vacuously (a moved package, a broken scanner).
    modules = discover(ROOT / PACKAGE, PACKAGE)
    assert len(modules) > 20
    assert any(e.source == "ptqtheory" for e in imports)
    assert any(_under(m, NUMPY_REFERENCE_PREFIXES) for m in modules)
    assert any(_under(m, TORCH_BACKEND_PREFIXES) for m in modules)


def test_no_import_cycle(imports):
    report = cycle_report(imports)
    assert not report, "import cycles in ptqtheory (runtime imports, lazy ones included):\n" + report


def test_numpy_reference_does_not_import_torch_backend(imports):
    bad = [
        e
        for e in imports
        if _under(e.source, NUMPY_REFERENCE_PREFIXES) and _under(e.target, TORCH_BACKEND_PREFIXES)
    ]
    assert not bad, "the numpy reference and the core must not import the torch backend:\n" + "\n".join(
        f"    {e.source} -> {e.target}    {e.where()}" for e in sorted(bad, key=lambda e: (e.path, e.line))
    )


def test_no_backend_imports_another(imports):
    bad = [
        e
        for e in imports
        if _backend_of(e.source) and _backend_of(e.target) and _backend_of(e.source) != _backend_of(e.target)
    ]
    assert not bad, "backends must not import each other:\n" + "\n".join(
        f"    {e.source} -> {e.target}    {e.where()}" for e in sorted(bad, key=lambda e: (e.path, e.line))
    )


def test_torch_backend_uses_no_private_names_of_other_modules(imports):
    bad = []
    for e in imports:
        if not _under(e.source, TORCH_BACKEND_PREFIXES):
            continue
        for name, owner in _private_owner(e.target, e.names):
            # Private to a scope the importer lives in (its own package, a package-wide helper such
            # as ptqtheory._validate): allowed.
            if e.source == owner or e.source.startswith(owner + "."):
                continue
            bad.append(f"    {e.source} uses {name} (private to {owner})    {e.where()}")
    assert not bad, "the torch backend imports private names of other modules:\n" + "\n".join(sorted(bad))


# ---------------------------------------------------------------------------------------------------
# The detector itself (so the tests above can fail)


def test_detector_finds_cycles_in_synthetic_graphs():
    assert strongly_connected({"a": ["b"], "b": ["c"], "c": []}) == []
    assert strongly_connected({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert strongly_connected({"a": ["a"]}) == [["a"]]
    assert strongly_connected({"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"]}) == [["a", "b"], ["c", "d"]]
    # A long chain closed into a ring: one component, no recursion limit.
    n = 5000
    ring = {f"m{i}": [f"m{(i + 1) % n}"] for i in range(n)}
    assert [len(c) for c in strongly_connected(ring)] == [n]


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_scanner_resolves_imports_in_a_synthetic_package(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "from .a import f\nfrom . import sub\n",
            "pkg/a.py": "import os\n\ndef f():\n    from .sub.b import g\n    return g\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": (
                "from typing import TYPE_CHECKING\n"
                "from .. import a\n"
                "from ..a import _hidden\n"
                "if TYPE_CHECKING:\n    from pkg.c import T\n"
                "def g():\n    pass\n"
            ),
            "pkg/c.py": "import pkg.sub.b\n",
        },
    )
    modules = discover(tmp_path / "pkg", "pkg")
    assert set(modules) == {"pkg", "pkg.a", "pkg.sub", "pkg.sub.b", "pkg.c"}
    edges = {(e.source, e.target, e.names, e.lazy, e.type_only) for e in scan(modules, tmp_path, "pkg")}
    assert edges == {
        ("pkg", "pkg.a", ("f",), False, False),
        ("pkg", "pkg.sub", (), False, False),
        ("pkg.a", "pkg.sub.b", ("g",), True, False),
        # ``from .. import a``: the submodule, not the ancestor package.
        ("pkg.sub.b", "pkg.a", (), False, False),
        ("pkg.sub.b", "pkg.a", ("_hidden",), False, False),
        ("pkg.sub.b", "pkg.c", ("T",), False, True),
        ("pkg.c", "pkg.sub.b", (), False, False),
    }
    report = cycle_report(scan(modules, tmp_path, "pkg"))
    # a -> sub.b (lazy) -> a is a cycle; c -> sub.b -> c only through a type-checking import is not.
    assert "cycle among 2 modules: pkg.a, pkg.sub.b" in report
    assert "pkg.c" not in report.splitlines()[0]
    assert "pkg/a.py:4 (inside a function)" in report
    assert _private_owner("pkg.a", ("_hidden",)) == [("pkg.a._hidden", "pkg.a")]
    assert _private_owner("pkg._util", ()) == [("pkg._util", "pkg")]


def test_backend_names():
    assert _backend_of("ptqtheory.torch_backend.engine") == "torch"
    assert _backend_of("ptqtheory.backends.exact") == "exact"
    assert _backend_of("ptqtheory.backends") is None
    assert _backend_of("ptqtheory.certificates") is None
