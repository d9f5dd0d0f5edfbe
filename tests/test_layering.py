"""The library's layering: no import cycles inside `quark`, and the library never imports the CLI
(`quark.commands`) or the TUI (`quark.tui`).

Imports are read statically (ast) from the installed package layout, so a cycle fails here even
when no test happens to import the modules in the order that breaks. A cycle counts module-scope
imports only (an import inside a function runs after every module has loaded; an
`if TYPE_CHECKING:` import never runs). Importing `a.b.c` also runs the `__init__` of `a` and
`a.b`, so those packages count as imported too, except the importer's own packages (which are
already being imported when it runs).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import quark

ROOT = Path(quark.__file__).parent
# Folders installed inside the quark namespace (setup.py's MAPPED): they are part of the graph.
MAPPED = {"quark.models": ROOT.parent / "models", "quark.commands": ROOT.parent / "commands",
          "quark.tui": ROOT.parent / "tui"}
FRONT_ENDS = ("quark.commands", "quark.tui")
ENTRY_POINTS = {"quark.__main__"}  # `python -m quark` runs the CLI: the one file that may import it


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in [("quark", ROOT), *MAPPED.items()]:
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name if _is_package(name) else name.rpartition(".")[0]
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_scope_imports(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (also inside if/try at the top)."""
    out: list = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If) and not _is_type_checking(node):
            out += _module_scope_imports(node.body) + _module_scope_imports(node.orelse)
        elif isinstance(node, ast.Try):
            out += _module_scope_imports(node.body)
            for handler in node.handlers:
                out += _module_scope_imports(handler.body)
            out += _module_scope_imports(node.orelse) + _module_scope_imports(node.finalbody)
    return out


def _targets(name: str, nodes: list[ast.Import | ast.ImportFrom]) -> set[str]:
    """The quark modules these statements import: each named module, `from X import sub` as
    X.sub when that is a module, and the packages above each one."""
    named: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            named |= {alias.name for alias in node.names}
        else:
            base = _absolute(name, node)
            named.add(base)
            named |= {f"{base}.{alias.name}" for alias in node.names}
    out = set()
    for target in named:
        parts = target.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            if prefix in MODULES and not (name == prefix or name.startswith(prefix + ".")):
                out.add(prefix)
    return out


def _graph(scope: str) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nodes = _module_scope_imports(tree.body) if scope == "module" else [
            n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        graph[name] = _targets(name, nodes)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if not state.get(nxt) and (found := visit(nxt, path)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if not state.get(start) and (found := visit(start, [])):
            return found
    return None


def test_the_graph_sees_the_packages() -> None:
    # A guard on the walk itself: if these were missing, an empty graph would pass.
    assert {"quark.tokenizer", "quark.modelfolder.folder", "quark.inference.engine", "quark.models.llm",
            "quark.commands._cli", "quark.tui.app"} <= set(MODULES)
    assert "quark.modelfolder.folder" in _graph("module")["quark.modelfolder.quantized"]


def test_no_import_cycles_inside_quark() -> None:
    cycle = find_cycle(_graph("module"))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_library_never_imports_the_cli_or_tui(front_end: str) -> None:
    # Any import counts here, lazy ones included: the library must work without its front ends.
    graph = _graph("any")
    def imports_it(targets: set[str]) -> bool:
        return any(t == front_end or t.startswith(front_end + ".") for t in targets)

    offenders = sorted(name for name, targets in graph.items()
                       if not name.startswith(FRONT_ENDS) and name not in ENTRY_POINTS and imports_it(targets))
    assert offenders == [], f"library modules importing {front_end}: {offenders}"
