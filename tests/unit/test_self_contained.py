"""The repository explains itself: no reference to a document outside it.

Code and comments once cited a product-decisions file, contract sections ("contract §6.6")
and defect ids ("D-07") that only existed outside the repository. Rules are now stated where
they are used, or linked into docs/ (e.g. docs/decisions.md#grace-period). This scan fails on
a new outside reference; docs/ itself is not scanned (it is where the rules live).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db

ROOT = REPO_ROOT
SCANNED = ("src", "tests", "stress", "bench", "migrations", "tools")
TOP_LEVEL = (
    "Makefile",
    "pyproject.toml",
    "Dockerfile",
    "docker-compose.yml",
    "alembic.ini",
    "README.md",
    "openapi.yaml",
    ".env.example",
)
SUFFIXES = {".py", ".sql", ".mako", ".md", ".toml", ".ini", ".yml", ".yaml", ".lua", ".pgbench"}
SKIPPED_DIRS = {"__pycache__", "results"}  # bench/results: generated reports
THIS_FILE = Path(__file__).resolve()

OUTSIDE_REFERENCES = {
    "a decisions file outside docs/": re.compile(r"(?<!docs/)\bdecisions(?:-\d)?\.md"),
    "the API contract document": re.compile(r"api-contract|contract\s*§"),
    "a numbered section of an outside document": re.compile(r"§\s*\d"),
    "a defect id": re.compile(r"\bD-\d{2}\b"),
    "the shared folder": re.compile(r"\.\./shared|/work/shared|shared/(?:spec|reviews)"),
}
# Public standards may be cited by section.
STANDARDS = re.compile(r"\b(?:W3C|RFC)\b")


def scanned_files() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL if (ROOT / name).is_file()]
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if (
                path.is_file()
                and path.suffix in SUFFIXES
                and not SKIPPED_DIRS & set(path.relative_to(ROOT).parts)
                and ".egg-info" not in str(path)
                and path.resolve() != THIS_FILE
            ):
                files.append(path)
    return files


def outside_references(text: str) -> list[tuple[int, str, str]]:
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, pattern in OUTSIDE_REFERENCES.items():
            if pattern.search(line) and not (
                what.startswith("a numbered") and STANDARDS.search(line)
            ):
                found.append((number, what, line.strip()))
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    sample = "\n".join(
        [
            "# see decisions.md",
            "# (contract §6.6)",
            "# fixes D-07",
            "# ../shared/spec",
            "# docs/decisions.md#grace-period is fine",
            "# W3C Trace Context §3.2 is a public standard",
        ]
    )
    assert [number for number, _, _ in outside_references(sample)] == [1, 2, 2, 3, 4]


def test_the_scan_covers_the_code() -> None:
    files = {path.relative_to(ROOT).as_posix() for path in scanned_files()}
    assert "src/inbox_allocation/app.py" in files
    assert "migrations/env.py" in files
    assert "src/inbox_allocation/sql/seed.sql" in files


def test_no_reference_to_documents_outside_the_repository() -> None:
    problems = [
        f"{path.relative_to(ROOT)}:{number}: {what}: {line}"
        for path in scanned_files()
        for number, what, line in outside_references(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "state the rule, or link into docs/:\n" + "\n".join(problems)
