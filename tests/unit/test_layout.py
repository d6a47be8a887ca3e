"""The code's layout rules that a reviewer would otherwise have to remember."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import inbox_allocation

SRC = Path(inbox_allocation.__file__).resolve().parent
ROOT = SRC.parents[1]
# A seed id as a whole (double-quoted) Python string literal. Ids inside SQL text are single
# quoted and part of a larger string: test data written as SQL, left alone.
SEED_LITERAL = re.compile(r'"[1-9a]0000000-0000-0000-0000-0000000000\d\d"')
# The seed itself, the one module that names its ids, and the test that checks the seed's
# rows against literal values.
SEED_LITERAL_ALLOWED = {
    SRC / "db" / "seed_ids.py",
    ROOT / "tests" / "sql" / "test_seed.py",
}


def python_files(*roots: Path) -> list[Path]:
    return [path for root in roots for path in sorted(root.rglob("*.py"))]


def test_seed_ids_live_in_one_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in python_files(SRC, ROOT / "tests", ROOT / "tools")
        if path not in SEED_LITERAL_ALLOWED
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if SEED_LITERAL.search(line)
    ]
    assert not offenders, f"use inbox_allocation.db.seed_ids: {offenders}"


def test_routers_build_services_with_the_one_provider() -> None:
    """No per-router factory `async def x_service(request) -> XService`: api.deps.provider."""
    offenders = []
    for path in python_files(SRC / "api" / "routers"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name.endswith(
                "_service"
            ):
                offenders.append(f"{path.name}: {node.name}")
    assert not offenders


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        for child in ast.iter_child_nodes(node):
            type_checking = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            if not type_checking:
                pending.append(child)
    return nodes


def _import_graph() -> dict[str, set[str]]:
    """Which of the package's modules each module imports at run time (anywhere in it, also
    inside functions: a deferred import hides a cycle, it does not remove it; imports for
    the type checker only are left out)."""
    modules = {_module_name(path): path for path in python_files(SRC)}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in _runtime_nodes(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets.append(node.module)
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def test_no_import_cycles() -> None:
    graph = _import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycles.append([*path[path.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(" → ".join(cycle) for cycle in cycles)
