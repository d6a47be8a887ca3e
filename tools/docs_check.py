"""Browser check of GET /docs: headless Chromium renders every operation, offline.

    .venv/bin/python -m tools.docs_check [--screenshot build/docs.png]

Starts the service as `make run` does (`python -m inbox_allocation serve` on a throwaway
embedded PostgreSQL, random ports), loads http://127.0.0.1:PORT/docs in headless Chromium
that can resolve no host but 127.0.0.1, waits until Swagger UI has rendered the operations
list (a `.opblock` for every operation in /api/openapi.yaml), saves a screenshot and stops
the service. Exit status: 0 all rendered, 1 the check failed, 2 Chromium is not installed.

Chromium is driven by its own command line, no WebDriver: `--dump-dom` with a virtual-time
budget prints the DOM once the page has loaded its scripts and the spec and run its timers
(virtual time stands still while a request is in flight), then `--screenshot` loads the page
the same way and takes the picture. The DOM is read again with a larger budget until the
operations are there or `--timeout` has passed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import yaml

from inbox_allocation.processes import (
    free_port,
    parent_death_signal,
    wait_ready,
    world_traversable_tempdir,
)

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
INSTALL_HINT = "apt-get install -y chromium chromium-driver"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    # No name but 127.0.0.1 resolves: the page must not need the internet (CDN, validator).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    # The page's console (JavaScript errors) goes to stderr, for the failure message.
    "--enable-logging=stderr",
)
# Virtual-time budgets (ms) tried in turn; real time is bounded by --timeout.
BUDGETS_MS = (5_000, 15_000, 30_000)


class CheckFailed(Exception):
    """The check ran and the page is not right (exit 1)."""


# --- reading the page -------------------------------------------------------------------


@dataclass
class DomSummary:
    operations: int = 0  # elements with class `opblock`: one per operation and tag
    element_ids: set[str] = field(default_factory=set)  # `operations-{tag}-{operationId}`
    errors: list[str] = field(default_factory=list)  # Swagger UI's error panel, if shown


# Elements without an end tag: they must not count as nesting inside the error panel.
_VOID_ELEMENTS = frozenset({
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
})  # fmt: skip


class _DomReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.summary = DomSummary()
        self._error_depth = 0  # > 0 while inside an `.errors-wrapper`

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if "opblock" in classes:
            self.summary.operations += 1
            self.summary.element_ids.add(attributes.get("id") or "")
        if (self._error_depth or "errors-wrapper" in classes) and tag not in _VOID_ELEMENTS:
            self._error_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._error_depth:
            self._error_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._error_depth and data.strip():
            self.summary.errors.append(data.strip())


def read_dom(html: str) -> DomSummary:
    reader = _DomReader()
    reader.feed(html)
    reader.close()
    return reader.summary


def document_operations(document: dict[str, Any]) -> dict[str, str | None]:
    """`METHOD path` → operationId, for every operation in the OpenAPI document."""
    return {
        f"{method.upper()} {path}": operation.get("operationId")
        for path, item in document.get("paths", {}).items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def not_rendered(expected: dict[str, str | None], summary: DomSummary) -> list[str]:
    """The operations with no `.opblock` on the page (recognised by their operationId)."""
    return [
        name
        for name, operation_id in expected.items()
        if operation_id and not any(e.endswith(f"-{operation_id}") for e in summary.element_ids)
    ]


# --- the service ------------------------------------------------------------------------


def start_service(
    workdir: Path, db_port: int, http_port: int, log: Path, *serve_args: str
) -> subprocess.Popen[bytes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "DATABASE_URL", "SERVER_"))
    }
    env.update(
        EMBEDDED_DB_DIR=str(workdir / "pg"),
        DB_PORT=str(db_port),
        SERVER_PORT=str(http_port),
        SERVER_HOST="127.0.0.1",
        LOG_LEVEL="warning",
    )
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "inbox_allocation", "serve", *serve_args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            preexec_fn=parent_death_signal(),  # noqa: PLW1509 - only prctl
        )


def stop_service(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # graceful: the service also stops its database
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# --- Chromium ---------------------------------------------------------------------------


@dataclass
class ChromiumRun:
    stdout: str
    console: list[str]  # the page's console messages


def run_chromium(chromium: str, args: list[str], profile: Path, timeout: float) -> ChromiumRun:
    """One headless Chromium run with a fresh profile."""
    shutil.rmtree(profile, ignore_errors=True)
    command = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"Chromium did not finish within {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise CheckFailed(f"Chromium exited with {result.returncode}:\n{result.stderr[-4000:]}")
    console = [line.split("] ", 1)[-1] for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return ChromiumRun(result.stdout, console)


@dataclass
class Outcome:
    expected: int  # operations in the document
    rendered: int  # `.opblock` elements (an operation with two tags shows twice)
    budget_ms: int  # the virtual-time budget that sufficed


def check_docs(
    chromium: str, base_url: str, screenshot: Path, window: str, timeout: float
) -> Outcome:
    spec = httpx.get(f"{base_url}/api/openapi.yaml", timeout=10)
    if spec.status_code != 200:
        raise CheckFailed(f"GET /api/openapi.yaml answered {spec.status_code}")
    expected = document_operations(yaml.safe_load(spec.text))
    if not expected:
        raise CheckFailed("/api/openapi.yaml documents no operation")

    url = f"{base_url}/docs"
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="docs-check-chromium-") as tmp:
        profile = Path(tmp) / "profile"
        summary, missing, console, budget = DomSummary(), list(expected), list[str](), 0
        for budget in BUDGETS_MS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            dump = ["--dump-dom", f"--window-size={window}", f"--virtual-time-budget={budget}"]
            run = run_chromium(chromium, [*dump, url], profile, remaining)
            summary, console = read_dom(run.stdout), run.console
            if summary.errors:
                raise CheckFailed(f"Swagger UI shows errors: {' '.join(summary.errors)}")
            missing = not_rendered(expected, summary)
            if summary.operations >= len(expected) and not missing:
                break
        if summary.operations < len(expected) or missing:
            messages = "".join(f"\n  {line}" for line in console) or " none"
            raise CheckFailed(
                f"/docs rendered {summary.operations} operations, expected at least "
                f"{len(expected)}; not rendered: {', '.join(missing) or '-'}; "
                f"the page's console messages:{messages}"
            )

        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        shot = [
            f"--screenshot={screenshot.resolve()}",
            f"--window-size={window}",
            f"--virtual-time-budget={budget}",
        ]
        run_chromium(chromium, [*shot, url], profile, max(deadline - time.monotonic(), 30.0))
    if not screenshot.is_file() or not screenshot.read_bytes().startswith(b"\x89PNG"):
        raise CheckFailed(f"Chromium wrote no PNG screenshot to {screenshot}")
    return Outcome(expected=len(expected), rendered=summary.operations, budget_ms=budget)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and each option's default."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.docs_check",
        description=__doc__,
        formatter_class=_HelpFormatter,
    )
    add = parser.add_argument
    add("--screenshot", type=Path, default=Path("build/docs.png"), help="PNG to write")
    add("--chromium", default=CHROMIUM, help="the browser")
    add("--window-size", default="1280,3000", help="WIDTH,HEIGHT of the page and screenshot")
    add("--timeout", type=float, default=120.0, help="seconds for the browser part")
    args = parser.parse_args(argv)

    if not (os.path.isfile(args.chromium) and os.access(args.chromium, os.X_OK)):
        print(
            f"docs_check: {args.chromium} not found; install Chromium first: {INSTALL_HINT}",
            file=sys.stderr,
        )
        return 2

    started = time.monotonic()
    workdir = world_traversable_tempdir("inbox-allocation-docs-check-")
    log = workdir / "service.log"
    http_port = free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    process = start_service(workdir, free_port(), http_port, log)
    try:
        try:
            wait_ready(process, base_url, output=lambda: log.read_text(errors="replace"))
        except AssertionError as exc:
            raise CheckFailed(str(exc)) from None
        ready = time.monotonic()
        outcome = check_docs(
            args.chromium, base_url, args.screenshot, args.window_size, args.timeout
        )
    except CheckFailed as exc:
        print(f"docs_check: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_service(process)
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"docs_check: OK: /docs rendered all {outcome.expected} operations of the document "
        f"({outcome.rendered} operation blocks, virtual-time budget {outcome.budget_ms} ms); "
        f"screenshot {args.screenshot}; service ready in {ready - started:.1f} s, "
        f"browser {time.monotonic() - ready:.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
