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
    ROOT / "tests" / "test_seed.py",
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
