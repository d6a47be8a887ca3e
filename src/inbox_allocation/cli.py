"""Command line: `inbox-allocation serve | migrate | seed | db … | tenant …`.

`serve` on the embedded default does all set-up itself (start PostgreSQL, migrate, seed an
empty database) so `make run` works on a fresh machine. Against a configured server it only
migrates with `--migrate` and seeds with `--seed`: production databases are never touched
unasked.

`tenant create --name NAME [--alpha A --beta B]` onboards a customer: it creates the tenant
and its first ADMIN operator and prints `{"tenant_id": …, "admin_operator_id": …}` (one JSON
line on stdout); `tenant list` prints every tenant as a JSON array. Both work on the embedded
default (migrated first, as `serve` does) and on a configured database.

`token create --tenant-id T --operator-id O [--name N]` issues an API token for bootstrapping
AUTH_MODE=token and prints `{"token_id": …, "token": …}` (one JSON line; the token is not
shown again); exit 1 if the operator is not in the tenant.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence

import asyncpg

from inbox_allocation.api.openapi import openapi_document, render_yaml
from inbox_allocation.api.responses import dumps
from inbox_allocation.app import create_app
from inbox_allocation.config import ConfigError, Settings, load_settings
from inbox_allocation.db import migrations
from inbox_allocation.db.embedded import (
    database_dsn,
    exclusive_serve,
    launcher_config,
    supervisor_pid_file,
)
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherError
from inbox_allocation.db.pool import Database
from inbox_allocation.db.seed import seed_database
from inbox_allocation.db.seed_ids import (
    ACME,
    ACME_ADMIN,
    ACME_MANAGER,
    ACME_OP4,
    TECH_ADMIN,
    TECHSTART,
)
from inbox_allocation.domain.errors import NotFound
from inbox_allocation.logging import configure_logging, get_logger
from inbox_allocation.observability import metrics
from inbox_allocation.server import serve_http
from inbox_allocation.services import tenants_admin
from inbox_allocation.services.tokens import TokenService
from inbox_allocation.sql import maintenance as maintenance_sql

log = get_logger("inbox_allocation.cli")


async def _database_is_empty(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return bool(await conn.fetchval(maintenance_sql.NO_TENANTS_YET))
    finally:
        await conn.close()


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    embedded = settings.use_embedded_db
    with (
        exclusive_serve(settings) if embedded else contextlib.nullcontext(),
        database_dsn(settings, stop_timeout=settings.shutdown_timeout.total_seconds()) as dsn,
    ):
        if embedded or args.migrate:
            migrations.upgrade(dsn)
        if args.seed or (embedded and asyncio.run(_database_is_empty(dsn))):
            asyncio.run(seed_database(dsn))
            log.info("loaded the demo data (two tenants; identities below)")
        # Worker processes read their settings from the environment: point them at this DSN.
        os.environ["DATABASE_URL"] = dsn
        # Several workers: their metrics meet in PROMETHEUS_MULTIPROC_DIR, which must exist
        # (and be in the environment they inherit) before they start; removed on exit. A
        # directory the operator set is used instead, and cleared of a previous run's files.
        multiprocess = settings.metrics_enabled and (
            settings.server_workers > 1 or metrics.MULTIPROC_ENV in os.environ
        )
        log.info(where_to_go(settings, demo=embedded or args.seed))
        with metrics.multiprocess_directory(multiprocess):
            serve_http(settings)
    return 0


def where_to_go(settings: Settings, *, demo: bool) -> str:
    """The first thing a newcomer needs from `make run`: where to point the browser."""
    host = settings.server_host
    if host in ("0.0.0.0", "::", ""):  # a wildcard bind: show a local address
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    base = f"http://{host}:{settings.server_port}"
    lines = [
        f"serving on {base}",
        f"  interactive API documentation: {base}/docs",
        f"  live console (supervisors):    {base}/console",
        f"  health and version:            {base}/health  {base}/version",
    ]
    if demo:
        lines += [
            "  demo identities (send them as X-Tenant-ID and X-Operator-ID):",
            f"    Acme Corp     {ACME}  ADMIN {ACME_ADMIN}",
            f"                  MANAGER {ACME_MANAGER}  OPERATOR {ACME_OP4}",
            f"    TechStart Inc {TECHSTART}  ADMIN {TECH_ADMIN}",
            "  README.md, 'Using the API', has curl examples for these.",
        ]
    return "\n".join(lines)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with database_dsn(settings) as dsn:
        if args.direction == "up":
            migrations.upgrade(dsn, args.revision or "head")
        else:
            migrations.downgrade(dsn, args.revision or "base")
    log.info("migrations applied", direction=args.direction, revision=args.revision)
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    with database_dsn(settings) as dsn:
        asyncio.run(seed_database(dsn))
    log.info("demo data loaded (existing rows left unchanged)")
    return 0


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    if not settings.use_embedded_db:
        log.error("a database is configured (DATABASE_URL or DB_HOST); nothing to start")
        return 2
    pid_file = supervisor_pid_file(settings)
    if args.action == "run":
        return _db_run(settings, pid_file)
    if args.action == "start":
        return _db_start(settings, pid_file)
    return _db_stop(pid_file)


def _db_run(settings: Settings, pid_file: os.PathLike[str]) -> int:
    """Foreground: the embedded server lives exactly as long as this process."""
    stop = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = EmbeddedPostgres(launcher_config(settings)).start()
    try:
        with open(pid_file, "w") as handle:
            handle.write(str(os.getpid()))
        print(f"embedded PostgreSQL ready: {server.dsn}", flush=True)
        while not stop:
            time.sleep(0.2)
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            os.unlink(pid_file)
    return 0


def _db_start(settings: Settings, pid_file: os.PathLike[str]) -> int:
    """Background: a detached `db run` supervisor; returns once the server accepts."""
    if _running_pid(pid_file):
        print(f"embedded PostgreSQL already running on 127.0.0.1:{settings.db_port}")
        return 0
    log_path = settings.embedded_data_dir.parent / "postgres-supervisor.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "inbox_allocation", "db", "run"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,  # survives the terminal and `make` exiting
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            print(f"embedded PostgreSQL failed to start; see {log_path}", file=sys.stderr)
            return 1
        if _running_pid(pid_file) == child.pid:
            print(
                f"embedded PostgreSQL running on 127.0.0.1:{settings.db_port} "
                f"(supervisor pid {child.pid}); stop it with `make db-down`"
            )
            return 0
        time.sleep(0.1)
    print(f"embedded PostgreSQL did not become ready; see {log_path}", file=sys.stderr)
    return 1


def _db_stop(pid_file: os.PathLike[str]) -> int:
    pid = _running_pid(pid_file)
    if pid is None:
        print("embedded PostgreSQL is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _running_pid(pid_file) == pid:
        time.sleep(0.1)
    print("embedded PostgreSQL stopped")
    return 0


def cmd_openapi(settings: Settings, args: argparse.Namespace) -> int:
    """Print the OpenAPI document (openapi.yaml) generated from the application."""
    # Generated from default settings, not the environment's: the document describes the
    # service, not one deployment. No database is needed.
    del settings, args
    app = create_app(Settings(database_url="postgresql://generation-only/none"))
    sys.stdout.write(render_yaml(openapi_document(app)))
    return 0


def cmd_tenant(settings: Settings, args: argparse.Namespace) -> int:
    """`tenant create` / `tenant list`: JSON on stdout, one-line errors on stderr."""
    if args.action == "create":
        # Checked before any database is started: a typo fails at once.
        problems = tenants_admin.new_tenant_problems(args.name, args.alpha, args.beta)
        if problems:
            print(f"inbox-allocation: invalid tenant: {'; '.join(problems)}", file=sys.stderr)
            return 2
    with database_dsn(settings) as dsn:
        if settings.use_embedded_db:
            migrations.upgrade(dsn)  # a fresh embedded database gets its schema, as in `serve`
        try:
            output = asyncio.run(_tenant_action(dsn, args))
        except tenants_admin.ProvisioningError as exc:
            print(f"inbox-allocation: {exc}", file=sys.stderr)
            return 1
        except asyncpg.UndefinedTableError:
            print(
                "inbox-allocation: the database has no schema yet; run "
                "`inbox-allocation migrate up` first",
                file=sys.stderr,
            )
            return 1
    print(dumps(output).decode(), flush=True)
    return 0


async def _tenant_action(dsn: str, args: argparse.Namespace) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        if args.action == "list":
            return await tenants_admin.list_tenants(conn)
        created = await tenants_admin.create_tenant(
            conn, name=args.name, alpha=args.alpha, beta=args.beta
        )
        return {"tenant_id": created.tenant_id, "admin_operator_id": created.admin_operator_id}
    finally:
        await conn.close()


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    """`token create`: one JSON line with the new token on stdout."""
    with database_dsn(settings) as dsn:
        if settings.use_embedded_db:
            migrations.upgrade(dsn)
        try:
            created = asyncio.run(_create_token(dsn, args))
        except NotFound:
            print(
                f"inbox-allocation: operator {args.operator_id} is not in tenant {args.tenant_id}",
                file=sys.stderr,
            )
            return 1
    print(dumps({"token_id": created["id"], "token": created["token"]}).decode(), flush=True)
    return 0


async def _create_token(dsn: str, args: argparse.Namespace) -> dict[str, object]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await TokenService(Database(pool)).create(
            tenant_id=args.tenant_id,
            operator_id=args.operator_id,
            name=args.name,
            expires_in_days=args.expires_in_days,
        )
    finally:
        await pool.close()


def _name(value: str) -> str:
    if not 1 <= len(value) <= 100:
        raise argparse.ArgumentTypeError("1 to 100 characters")
    return value


def _days(value: str) -> int:
    days = int(value)
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError("1 to 3650")
    return days


def _running_pid(pid_file: os.PathLike[str]) -> int | None:
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inbox-allocation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--migrate", action="store_true", help="migrate a configured database")
    serve.add_argument("--seed", action="store_true", help="load the demo data before serving")
    serve.set_defaults(handler=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply (up) or roll back (down) migrations")
    migrate.add_argument("direction", choices=["up", "down"])
    migrate.add_argument("--revision", help="target revision (default: head / base)")
    migrate.set_defaults(handler=cmd_migrate)

    seed = sub.add_parser("seed", help="load the demo data (idempotent)")
    seed.set_defaults(handler=cmd_seed)

    db = sub.add_parser("db", help="the embedded PostgreSQL on its own")
    db.add_argument("action", choices=["run", "start", "stop"],
                    help="run: foreground; start/stop: in the background")  # fmt: skip
    db.set_defaults(handler=cmd_db)

    openapi = sub.add_parser("openapi", help="print the OpenAPI document (openapi.yaml)")
    openapi.set_defaults(handler=cmd_openapi)

    tenant = sub.add_parser("tenant", help="provision tenants (onboard a customer)")
    tenant_sub = tenant.add_subparsers(dest="action", required=True)
    create = tenant_sub.add_parser(
        "create",
        help="create a tenant and its first ADMIN operator; prints both ids as JSON",
    )
    create.add_argument("--name", required=True, help="the tenant's unique name")
    default = tenants_admin.DEFAULT_WEIGHT
    create.add_argument(
        "--alpha", type=float, default=default, help="message-count weight, 0..1 (default 0.5)"
    )
    create.add_argument(
        "--beta", type=float, default=default,
        help="waiting-time weight, 0..1; alpha + beta = 1 (default 0.5)",
    )  # fmt: skip
    tenant_sub.add_parser("list", help="print every tenant as a JSON array")
    tenant.set_defaults(handler=cmd_tenant)

    token = sub.add_parser("token", help="API tokens (AUTH_MODE=token)")
    token_sub = token.add_subparsers(dest="action", required=True)
    token_create = token_sub.add_parser(
        "create", help="issue an API token for an operator; prints it once, as JSON"
    )
    token_create.add_argument("--tenant-id", type=uuid.UUID, required=True)
    token_create.add_argument("--operator-id", type=uuid.UUID, required=True)
    token_create.add_argument("--name", type=_name, default="cli", help="default: cli")
    token_create.add_argument(
        "--expires-in-days", type=_days, default=None, help="1..3650 (default: never)"
    )
    token.set_defaults(handler=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"inbox-allocation: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(settings, args)
    except (LauncherError, ConfigError) as exc:
        log.error(str(exc))
        return 1
