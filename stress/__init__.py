"""Multi-process stress harness and invariant checker for the Inbox Allocation Service.

`python -m stress.run --profile short|full` or `--soak SECONDS`:

1. a fresh embedded PostgreSQL (fsync off), migrated, provisioned by SQL with 2 tenants,
   4 inboxes each, 64 operators and one ingest gateway (MANAGER) per tenant (`provision`);
2. the service as a subprocess in its own process group: `python -m inbox_allocation serve`
   with SERVER_WORKERS=2 and a short grace period (`environment`);
3. 64 concurrent operator loops plus ingest loops drive it over HTTP for a fixed time;
   every request and response goes to `events.jsonl` in the run directory (`load`,
   `eventlog`); consistent row snapshots are taken every few seconds meanwhile;
4. after the load: wait until the grace sweeper is idle, a quiet phase of allocations with
   nothing else running (`quiet`), snapshot the final rows, stop the service (no process may
   survive) and the database;
5. `checker.check(events, world, final_rows, snapshots)`, a pure function, proves the
   invariants; `report` prints the totals. A soak run also samples RSS, DB connections and
   the conversation table every 10 s and judges the curves (`soak`).

`python -m stress.repro_grace_race` races OFFLINE against the end of an allocation (the one
service defect found so far, since fixed) and fails if a grace row survives.

Everything lands in the run directory (default `build/stress/<time>-<profile>/`): events,
world, snapshots, final rows, service log, soak samples and the report (text and JSON).
"""
