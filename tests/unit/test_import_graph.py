"""The import graph of gateway/ and protocols/: no circle, the hub never knows its spokes, and a
spoke never knows another spoke (docs/architecture.md).

Every module is parsed (never imported). An import counts wherever it is, at the top of a module or
inside a function (a lazy import still closes a circle when it runs), except under
``if TYPE_CHECKING:``, which never runs. ``from package import name`` is an import of the
submodule ``package.name`` when there is one, else of the package; importing ``a.b.c`` runs the
``__init__`` of ``a.b`` as well, so a package that re-exports its modules passes their imports on.

Run as a script to print the graph by package (``python tests/unit/test_import_graph.py [ROOT]``).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "protocols")

ALLOWED_SPOKE_IMPORTS = frozenset(
    {
        # protocols/livekit is a library, not a plugin: the LiveKit participant client that
        # Visio's bridge speaks (Visio is a LiveKit deployment).
        ("protocols.visio", "protocols.livekit"),
        # Element Call runs on LiveKit too: the Matrix bridge uses the same client.
        ("protocols.matrix", "protocols.livekit"),
    }
)
"""(importing plugin, imported package) pairs allowed across protocols/."""


@dataclass(frozen=True)
class Import:
    """One import statement's target module, as written in ``source`` at ``line``."""

    source: str
    target: str
    line: int
    type_only: bool


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the runtime packages by dotted name (a package by its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every import node (and ``import_module("...")`` call) with whether it is type-only."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                yield from _statements_of(child, True)
            for child in node.orelse:
                yield from _statements_of(child, type_only)
            continue
        yield from _statements_of(node, type_only)


def _statements_of(node: ast.AST, type_only: bool) -> Iterator[tuple[ast.AST, bool]]:
    dynamic = isinstance(node, ast.Call) and _called_name(node) in {"import_module", "__import__"}
    if dynamic or isinstance(node, ast.Import | ast.ImportFrom):
        yield node, type_only
    yield from _statements(node, type_only)


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(node: ast.AST, module: str, path: Path, known: dict[str, Path]) -> list[str]:
    """The project modules one import statement imports directly (no ancestors yet)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.Call):
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return [first.value]
        return []
    assert isinstance(node, ast.ImportFrom)
    base = node.module or ""
    if node.level:
        package = _package_of(module, path).split(".")
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    return [
        f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
    ]


def _with_ancestors(target: str, source: str, known: dict[str, Path]) -> list[str]:
    """``target`` and the packages whose ``__init__`` importing it runs: its ancestors, except
    those of ``source`` itself (already initialised before ``source`` runs)."""
    parts = target.split(".")
    source_packages = {".".join(source.split(".")[:i]) for i in range(1, source.count(".") + 1)}
    chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [name for name in chain if name in known and name not in source_packages]


def imports(root: Path = ROOT) -> list[Import]:
    """Every import between the project's modules, runtime and type-only, each pair once (at its
    first line)."""
    known = modules(root)
    found: dict[tuple[str, str, bool], Import] = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        for node, type_only in _statements(tree):
            for target in _targets(node, module, path, known):
                for name in _with_ancestors(target, module, known):
                    key = (module, name, type_only)
                    if name != module and key not in found:
                        found[key] = Import(module, name, getattr(node, "lineno", 0), type_only)
    return sorted(found.values(), key=lambda edge: (edge.source, edge.line, edge.target))


def runtime_graph(found: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for edge in found:
        if not edge.type_only:
            graph.setdefault(edge.source, set()).add(edge.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each group of modules that import each other, as a path that returns to
    its first module."""
    return [_circle_in(sorted(group)[0], group, graph) for group in entangled(graph)]


def entangled(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: set[str] = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _circle_in(start: str, group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from ``start`` back to itself inside ``group`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph.get(node, set()) & group):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if nxt not in previous:
                    previous[nxt] = node
                    following.append(nxt)
        frontier = following
    return [start]


def _spoke(module: str) -> str | None:
    """``protocols.NAME`` for a module of a protocol package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "protocols" and len(parts) > 1 else None


def layering_violations(found: list[Import]) -> list[Import]:
    """Imports, type-only ones included, from the hub into a spoke or from a spoke into another
    spoke (a library under protocols/ may be used by the plugins on the allow-list only)."""
    wrong: list[Import] = []
    for edge in found:
        source, target = _spoke(edge.source), _spoke(edge.target)
        if target is None:
            continue
        if source is None:
            if edge.source.startswith("gateway"):
                wrong.append(edge)
        elif source != target and (source, target) not in ALLOWED_SPOKE_IMPORTS:
            wrong.append(edge)
    return wrong


def _unit(module: str) -> str:
    """What the summary groups by: a package under gateway/ or protocols/, or a top module."""
    return ".".join(module.split(".")[:2])


def summary(root: Path = ROOT) -> str:
    """The graph by package: ``package -> packages`` (type-only imports in brackets), then the
    circles between modules."""
    found = imports(root)
    runtime: dict[str, set[str]] = {}
    type_only: dict[str, set[str]] = {}
    for edge in found:
        source, target = _unit(edge.source), _unit(edge.target)
        if source != target and target not in PACKAGES:  # a root __init__ is a docstring
            (type_only if edge.type_only else runtime).setdefault(source, set()).add(target)
    lines = [f"{len(modules(root))} modules, {len(found)} imports between them"]
    for unit in sorted({_unit(module) for module in modules(root)}):
        targets = sorted(runtime.get(unit, set()))
        hints = sorted(type_only.get(unit, set()) - runtime.get(unit, set()))
        listed = ", ".join(targets + [f"[{name}]" for name in hints]) or "-"
        lines.append(f"{unit} -> {listed}")
    graph = runtime_graph(found)
    circles = cycles(graph)
    lines.append(f"circles: {len(circles)}, through {sum(map(len, entangled(graph)))} modules")
    lines.extend("  " + " -> ".join(circle) for circle in circles)
    everything: dict[str, set[str]] = {}
    for edge in found:
        everything.setdefault(edge.source, set()).add(edge.target)
    lines.append(
        "modules in circles counting type-only imports (allowed: those never run): "
        + ", ".join(sorted(module for group in entangled(everything) for module in group))
    )
    wrong = layering_violations(found)
    lines.append(f"hub -> spoke and spoke -> spoke imports: {len(wrong)}")
    lines.extend(
        f"  {edge.source}:{edge.line} -> {edge.target}{' (type-only)' if edge.type_only else ''}"
        for edge in wrong
    )
    return "\n".join(lines) + "\n"


def test_resolves_relative_imports_submodules_and_lazy_imports(tmp_path: Path) -> None:
    package = tmp_path / "gateway" / "pkg"
    package.mkdir(parents=True)
    (tmp_path / "gateway" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from .a import thing\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gateway import other\n"
        "def f():\n    from . import b\n"
    )
    (package / "b.py").write_text("from gateway.pkg import a\n")
    (tmp_path / "gateway" / "other.py").write_text("import gateway.pkg.b\n")

    found = {(edge.source, edge.target, edge.type_only) for edge in imports(tmp_path)}

    assert found == {
        ("gateway.pkg", "gateway.pkg.a", False),
        ("gateway.pkg.a", "gateway.other", True),
        ("gateway.pkg.a", "gateway.pkg.b", False),
        ("gateway.pkg.b", "gateway.pkg.a", False),
        ("gateway.other", "gateway.pkg", False),
        ("gateway.other", "gateway.pkg.b", False),
    }
    assert cycles(runtime_graph(imports(tmp_path))) == [
        ["gateway.pkg.a", "gateway.pkg.b", "gateway.pkg.a"]
    ]


def test_the_seam_rules_count_type_only_imports_and_allow_visio_to_use_livekit(
    tmp_path: Path,
) -> None:
    files = {
        "gateway/__init__.py": "",
        "gateway/hub.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import protocols.sip\n"
        ),
        "protocols/__init__.py": "",
        "protocols/sip/__init__.py": "from gateway import hub\n",
        "protocols/sip/call.py": "def f():\n    from protocols.visio import lobby\n",
        "protocols/visio/__init__.py": "",
        "protocols/visio/lobby.py": "from protocols.livekit import signal\n",
        "protocols/livekit/__init__.py": "",
        "protocols/livekit/signal.py": "import gateway.hub\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    wrong = {(edge.source, edge.target) for edge in layering_violations(imports(tmp_path))}

    assert wrong == {
        ("gateway.hub", "protocols.sip"),
        ("protocols.sip.call", "protocols.visio"),
        ("protocols.sip.call", "protocols.visio.lobby"),
    }


def test_no_module_imports_itself_back_through_others() -> None:
    circles = cycles(runtime_graph(imports()))

    assert not circles, "import circles (lazy imports count):\n" + "\n".join(
        " -> ".join(circle) for circle in circles
    )


def test_the_hub_never_imports_a_protocol_and_protocols_never_import_each_other() -> None:
    wrong = layering_violations(imports())

    assert not wrong, "imports across the seam (TYPE_CHECKING ones count):\n" + "\n".join(
        f"{edge.source}:{edge.line} -> {edge.target}" for edge in wrong
    )


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT), end="")
