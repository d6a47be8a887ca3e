"""Browser check of GET /console: an ingested conversation shows up on the page within 2 s.

    .venv/bin/python -m tools.console_check [--screenshot build/console.png]

Starts the service with the demo data (`python -m inbox_allocation serve --seed` on a
throwaway embedded PostgreSQL, random ports, as tools/docs_check.py does), opens /console in
headless Chromium (which can resolve no host but 127.0.0.1), signs in as the demo ADMIN the
way a person would (the identity goes to sessionStorage), waits until the page's event stream
is open, ingests a conversation over HTTP and measures how long until its external id is on
the page; then saves a screenshot. Exit status: 0 shown in time, 1 failed, 2 no Chromium.

The page holds a stream open, so Chromium's virtual-time mode (docs_check) cannot be used:
Chromium is driven over the DevTools protocol instead (its remote-debugging WebSocket, with
the `websockets` client that uvicorn[standard] already brings).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from inbox_allocation.db.seed_ids import ACME, ACME_ADMIN, INBOX_SALES
from inbox_allocation.processes import free_port, wait_ready, world_traversable_tempdir
from tools.docs_check import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    INSTALL_HINT,
    CheckFailed,
    start_service,
    stop_service,
)

TENANT, ADMIN, INBOX = ACME, ACME_ADMIN, INBOX_SALES
LIMIT_SECONDS = 2.0


class DevTools:
    """A minimal DevTools-protocol client for one page."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == number:
                if "error" in message:
                    raise CheckFailed(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise CheckFailed(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str) -> float:
        """Seconds until `expression` is true in the page (polled every 20 ms)."""
        started = time.monotonic()
        while not self.evaluate(expression):
            if time.monotonic() - started > timeout:
                raise CheckFailed(f"{what} not seen within {timeout:.1f} s")
            time.sleep(0.02)
        return time.monotonic() - started


def page_socket(port: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
            for target in targets:
                if target.get("type") == "page":
                    url: str = target["webSocketDebuggerUrl"]
                    return url
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.1)
    raise CheckFailed("Chromium's DevTools endpoint did not come up")


def check_console(chromium: str, base_url: str, screenshot: Path) -> tuple[float, float]:
    """(seconds until the stream was open, seconds from ingest to the page showing it)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="console-check-chromium-") as tmp:
        browser = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp}",
             f"--remote-debugging-port={port}", "--remote-allow-origins=*", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            with connect(page_socket(port), max_size=None) as socket:
                tools = DevTools(socket)
                tools.call("Emulation.setDeviceMetricsOverride", width=1280, height=800,
                           deviceScaleFactor=1, mobile=False)  # fmt: skip
                tools.call("Page.navigate", url=f"{base_url}/console")
                tools.wait_for("document.readyState === 'complete' && !!document.forms.identity",
                               15, "the sign-in form")  # fmt: skip
                # Sign in as a person would: fill the form and submit it.
                tools.evaluate(f"""
                    const form = document.forms.identity;
                    form.tenant.value = {json.dumps(TENANT)};
                    form.operator.value = {json.dumps(ADMIN)};
                    form.requestSubmit();
                """)
                connected = tools.wait_for("document.body.dataset.stream === 'open'", 15,
                                           "the open event stream")  # fmt: skip
                external = f"console-check-{uuid.uuid4().hex[:8]}"
                sent = time.monotonic()
                response = httpx.post(
                    f"{base_url}/api/v1/conversations",
                    json={"inbox_id": INBOX, "external_conversation_id": external,
                          "customer_phone_number": "+14155550199"},
                    headers={"X-Tenant-ID": TENANT, "X-Operator-ID": ADMIN},
                    timeout=10,
                )  # fmt: skip
                if response.status_code != 201:
                    raise CheckFailed(f"ingest answered {response.status_code}: {response.text}")
                tools.wait_for(
                    f"document.getElementById('events').innerText.includes({json.dumps(external)})",
                    10,
                    f"conversation {external} on the page",
                )
                shown = time.monotonic() - sent
                time.sleep(0.3)  # let the stats refresh land in the picture
                if not tools.evaluate("document.querySelectorAll('#inboxes tr').length > 0"):
                    raise CheckFailed("the inbox table is empty")
                shot = tools.call("Page.captureScreenshot", format="png")
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            try:
                browser.wait(10)
            except subprocess.TimeoutExpired:
                browser.kill()
                browser.wait(10)
    return connected, shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.console_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--screenshot", type=Path, default=Path("build/console.png"))
    parser.add_argument("--chromium", default=CHROMIUM)
    args = parser.parse_args(argv)
    if not (os.path.isfile(args.chromium) and os.access(args.chromium, os.X_OK)):
        print(f"console_check: {args.chromium} not found; install it: {INSTALL_HINT}",
              file=sys.stderr)  # fmt: skip
        return 2
    workdir = world_traversable_tempdir("inbox-allocation-console-check-")
    log = workdir / "service.log"
    http_port = free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    process = start_service(workdir, free_port(), http_port, log, "--seed")
    try:
        try:
            wait_ready(process, base_url, output=lambda: log.read_text(errors="replace"))
        except AssertionError as exc:
            raise CheckFailed(str(exc)) from None
        connected, shown = check_console(args.chromium, base_url, args.screenshot)
        if shown > LIMIT_SECONDS:
            raise CheckFailed(f"the conversation took {shown:.2f} s to show (limit 2 s)")
    except CheckFailed as exc:
        print(f"console_check: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_service(process)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"console_check: OK: stream open {connected:.2f} s after sign-in; the ingested "
          f"conversation was on the page {shown:.2f} s after its POST (limit 2 s); "
          f"screenshot {args.screenshot}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
