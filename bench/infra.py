"""Processes of a benchmark run: tools, PostgreSQL, the service, and their clean-up.

Everything listens on 127.0.0.1 on free ports. PostgreSQL is the project's own launcher
(fsync on, as in production) with two additions for the run: `max_connections` high enough
for 64 pgbench clients beside the service's pools, and pg_stat_statements, which tells how
long each statement ran inside the server (the same small overhead for the service and for
the pgbench ceiling).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
from inbox_allocation.processes import free_port, parent_death_signal, world_traversable_tempdir

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The tools of the optional `bench` extra, installed on demand when missing: pinned as in
# pyproject.toml's `bench` extra when it has one, else as here.
PYTHON_TOOLS = {"matplotlib": "matplotlib==3.11.2", "py-spy": "py-spy==0.4.3"}


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


WORKDIR_PREFIX = "inbox-allocation-bench-"


def make_workdir() -> Path:
    """A temp dir the unprivileged database user can enter (mkdtemp makes them 0700),
    marked with our pid; the dirs of harnesses that died without cleaning up are removed."""
    for stale in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            owner = int((stale / "harness.pid").read_text())
        except (OSError, ValueError):
            continue
        if not Path(f"/proc/{owner}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    path = world_traversable_tempdir(WORKDIR_PREFIX)
    (path / "harness.pid").write_text(str(os.getpid()))
    return path


def with_parent_death_signal(args: list[str]) -> list[str]:
    """Prefix a command with util-linux's setpriv (when present) so that it is SIGKILLed if
    this process dies: a killed harness must leave no load generator or profiler behind."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *args] if setpriv else args


# -- tools -------------------------------------------------------------------------------


def ensure_wrk() -> tuple[str, list[str]]:
    """wrk's path, installing Debian's `wrk` package when it is missing (root only)."""
    notes: list[str] = []
    found = shutil.which("wrk")
    if found is None:
        if os.geteuid() != 0:
            raise BenchError("wrk is not installed; run `sudo apt-get install -y wrk`")
        log("wrk not found: installing Debian's wrk package (apt-get install -y wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        apt_get = shutil.which("apt-get")
        if apt_get is None:
            raise BenchError("wrk is not installed and there is no apt-get to install it")
        install = [apt_get, "install", "-y", "-q", "wrk"]
        if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
            subprocess.run([apt_get, "update", "-q"], env=env, check=False, capture_output=True)
            subprocess.run(install, env=env, check=True, capture_output=True)
        notes.append("installed Debian package wrk (apt-get install -y wrk)")
        found = shutil.which("wrk")
        if found is None:
            raise BenchError("apt-get installed wrk but it is not on PATH")
    return found, notes


def py_spy_path() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def _requirement(name: str) -> str:
    """The pin of `name` in pyproject.toml's `bench` extra, else our default."""
    try:
        project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
        extra = project["project"]["optional-dependencies"]["bench"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return PYTHON_TOOLS[name]
    for requirement in extra:
        if re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower() == name:
            return str(requirement)
    return PYTHON_TOOLS[name]


def ensure_python_tools(need_plot: bool, need_profile: bool) -> list[str]:
    """Install the `bench` extra's tools into this interpreter's environment if missing."""
    missing: list[str] = []
    if need_plot and importlib.util.find_spec("matplotlib") is None:
        missing.append(_requirement("matplotlib"))
    if need_profile and py_spy_path() is None:
        missing.append(_requirement("py-spy"))
    if not missing:
        return []
    log(f"installing {' '.join(missing)} with pip (the `bench` extra)")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *missing],
        check=True,
    )  # fmt: skip
    importlib.invalidate_caches()
    return [f"pip installed {name}" for name in missing]


# -- PostgreSQL ----------------------------------------------------------------------------


def start_postgres(workdir: Path) -> EmbeddedPostgres:
    config = LauncherConfig(
        data_dir=workdir / "pg",
        port=free_port(),
        user="bench",
        password="bench-pass",  # noqa: S106 - a throwaway loopback-only cluster
        database="bench",
        fsync=True,
        settings={
            "max_connections": "200",
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.max": "1000",
            "log_min_messages": "warning",
        },
    )
    return EmbeddedPostgres(config).start()


# -- processes -----------------------------------------------------------------------------


def read_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state, 1 = ppid)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def process_tree() -> dict[int, list[int]]:
    """Parent pid → child pids, from one pass over /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = read_stat(int(entry))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def subtree(tree: dict[int, list[int]], pid: int) -> list[int]:
    """The process and all its descendants."""
    result = [pid]
    stack = [pid]
    while stack:
        for child in tree.get(stack.pop(), []):
            result.append(child)
            stack.append(child)
    return result


def children(pid: int) -> list[int]:
    return process_tree().get(pid, [])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_process_group(proc: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal the process (its own group leader); SIGKILL the whole group if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} did not stop after {timeout:.0f}s: SIGKILL to its group")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


class Service:
    """`python -m inbox_allocation serve` against our PostgreSQL, N uvicorn workers."""

    def __init__(
        self, dsn: str, workers: int, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.dsn = dsn
        self.extra_env = env or {}
        self.workers = workers
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DB_", "DATABASE_URL", "SERVER_", "EMBEDDED_DB", "PG"))
        }
        env.update(
            DATABASE_URL=self.dsn,
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.port),
            SERVER_WORKERS=str(self.workers),
            LOG_LEVEL="warning",
        )
        env.update(self.extra_env)  # a variant's settings (e.g. AUTH_MODE=token)
        # Even a SIGKILLed harness leaves no service behind: SIGTERM when we die.
        die_with_parent = parent_death_signal()

        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "inbox_allocation", "serve"],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - started before any thread
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"the service exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self._ready() and len(self.worker_pids()) >= self.workers:
                return
            time.sleep(0.2)
        raise BenchError(f"the service was not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/ready", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes: the serve process' multiprocessing children (with a
        single worker, uvicorn serves in the serve process itself)."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        return sorted(pid for pid in children(self.process.pid) if "spawn_main" in cmdline(pid))

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM: uvicorn drains, the workers close their pools, the process exits.
            stop_process_group(self.process, signal.SIGTERM, timeout=30)
            self.process = None
