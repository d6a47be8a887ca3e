"""The embedded PostgreSQL launcher: root-safe, no orphans, data that survives restarts."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from inbox_allocation.db import launcher as launcher_module
from inbox_allocation.db.launcher import (
    EmbeddedPostgres,
    LauncherConfig,
    LauncherError,
    packaged_bin_dir,
)
from inbox_allocation.processes import free_port, world_traversable_tempdir

pytestmark = pytest.mark.no_db

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def base_dir() -> Iterator[Path]:
    path = world_traversable_tempdir("inbox-allocation-launcher-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_config(data_dir: Path, **overrides: object) -> LauncherConfig:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "port": free_port(),
        "user": "app",
        "password": "secret",
        "database": "appdb",
        "fsync": False,
        "bin_dir": Path(os.environ["PG_BIN_DIR"]) if os.environ.get("PG_BIN_DIR") else None,
    }
    values.update(overrides)
    return LauncherConfig(**values)  # type: ignore[arg-type]


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def owner_of_process(pid: int) -> int:
    return Path(f"/proc/{pid}").stat().st_uid


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_starts_and_serves_over_tcp_with_password(base_dir: Path) -> None:
    server = EmbeddedPostgres(make_config(base_dir / "pg")).start()
    pid = server.pid
    try:
        assert pid is not None
        assert server.run_sql("SELECT current_database()", database="appdb") == "appdb"
        assert server.run_sql("SHOW listen_addresses") == "127.0.0.1"
        assert server.dsn.startswith("postgresql://app:secret@127.0.0.1:")
        if IS_ROOT:
            # initdb and postgres refuse uid 0: the server runs as an unprivileged user.
            assert owner_of_process(pid) != 0
    finally:
        server.stop()
    assert not process_exists(pid)


def test_data_survives_a_restart(base_dir: Path) -> None:
    config = make_config(base_dir / "pg")
    with EmbeddedPostgres(config) as server:
        server.run_sql("CREATE TABLE kept (value text); INSERT INTO kept VALUES ('hello')", "appdb")
    with EmbeddedPostgres(config) as server:
        assert server.run_sql("SELECT value FROM kept", "appdb") == "hello"


def test_no_orphan_after_parent_is_sigkilled(base_dir: Path) -> None:
    """SIGKILL of the process that started PostgreSQL must take PostgreSQL down too."""
    config = make_config(base_dir / "pg")
    script = textwrap.dedent("""
        import json, sys, time
        from pathlib import Path
        from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
        values = json.loads(sys.argv[1])
        values["data_dir"] = Path(values["data_dir"])
        values["bin_dir"] = Path(values["bin_dir"]) if values["bin_dir"] else None
        server = EmbeddedPostgres(LauncherConfig(**values)).start()
        print(server.pid, flush=True)
        time.sleep(600)
    """)
    arguments = json.dumps({
        "data_dir": str(config.data_dir), "port": config.port, "user": "app",
        "password": "secret", "database": "appdb", "fsync": False,
        "bin_dir": str(config.bin_dir) if config.bin_dir else None,
    })  # fmt: skip
    parent = subprocess.Popen(
        [sys.executable, "-c", script, arguments], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    postgres_pid = int(parent.stdout.readline())
    assert process_exists(postgres_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_until(lambda: not process_exists(postgres_pid)), "postgres outlived its parent"


def test_attaches_to_a_server_already_running_on_the_data_dir(base_dir: Path) -> None:
    config = make_config(base_dir / "pg")
    with EmbeddedPostgres(config) as first:
        second = EmbeddedPostgres(config).start()
        assert second.attached_pid == first.pid
        second.stop()  # not ours: stopping it is a no-op
        assert process_exists(first.pid or 0)


def test_another_port_on_a_running_data_dir_is_a_clear_error(base_dir: Path) -> None:
    config = make_config(base_dir / "pg")
    with EmbeddedPostgres(config):
        other = make_config(base_dir / "pg")
        with pytest.raises(LauncherError, match="already serves"):
            EmbeddedPostgres(other).start()


def test_missing_binaries_are_a_clear_error(base_dir: Path) -> None:
    with pytest.raises(LauncherError, match="no PostgreSQL binaries"):
        EmbeddedPostgres(make_config(base_dir / "pg", bin_dir=base_dir)).start()


@pytest.mark.skipif(not IS_ROOT, reason="the privilege drop only happens as root (CI runs as root)")
def test_as_root_an_untraversable_data_dir_is_named_in_the_error(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(LauncherError) as raised:
        EmbeddedPostgres(make_config(private / "pg")).start()
    assert str(private) in str(raised.value)
    assert "0700" in str(raised.value)
    assert "EMBEDDED_DB_DIR" in str(raised.value)


@pytest.mark.skipif(not IS_ROOT, reason="the privilege drop only happens as root (CI runs as root)")
def test_as_root_the_default_data_dir_moves_when_unreachable(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    wanted = private / "checkout" / ".data" / "postgres"
    server = EmbeddedPostgres(make_config(wanted, relocate_if_unreachable=True)).start()
    try:
        assert server.data_dir != wanted.absolute()
        assert str(server.data_dir).startswith("/var/lib/inbox-allocation/")
        assert server.run_sql("SELECT 1") == "1"
    finally:
        server.stop()
        shutil.rmtree(server.data_dir.parent, ignore_errors=True)


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise AssertionError("no unprivileged user (postgres or nobody) on this machine")


def test_as_a_normal_user_postgres_runs_under_that_user(base_dir: Path) -> None:
    """Run the launcher in a process that is not root (forked and setuid when we are root)."""
    if not IS_ROOT:
        with EmbeddedPostgres(make_config(base_dir / "pg")) as server:
            assert owner_of_process(server.pid or 0) == os.geteuid()
        return

    user = _unprivileged_user()
    data_dir = base_dir / "as-user"
    data_dir.mkdir()
    os.chown(data_dir, user.pw_uid, user.pw_gid)
    # The unprivileged user must reach the binaries: as root the launcher provides a
    # world-readable copy when the virtualenv is private; reuse that logic here.
    bin_dir = Path(os.environ["PG_BIN_DIR"]) if os.environ.get("PG_BIN_DIR") else None
    if bin_dir is None:
        bin_dir = launcher_module._copy_binaries_to_cache(packaged_bin_dir())
    config = make_config(data_dir / "pg", bin_dir=bin_dir)

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child: drop to the user, start, report, stop
        os.close(read_end)
        result: dict[str, object]
        try:
            os.setgroups([])
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)
            server = EmbeddedPostgres(config).start()
            result = {"pid": server.pid, "sql": server.run_sql("SELECT 1")}
            result["owner"] = owner_of_process(server.pid or 0)
            server.stop()
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert "error" not in result, result
    assert result["sql"] == "1"
    assert result["owner"] == user.pw_uid
