"""The event log: one JSON line per HTTP request the load generator sent, with its response.

Times: `t_send`/`t_recv` are `time.monotonic()` of the load-generator process (one clock, so
they order events: "response of X received before request of Y was sent" is certain);
`wall_send`/`wall_recv` are `time.time()` for correlating with the service log (each request
carries `X-Request-ID: stress-<seq>`).

`data` is the response's `data` member, except for conversation lists, whose items are cut
down to the fields the checker needs (LIST_FIELDS); `body_ids` holds every UUID of the raw
response body (the tenant-isolation check reads it, so nothing a list omits is missed) and
`body_sha256` the raw body's digest when the request carried an Idempotency-Key (replays must
be byte-identical). `expect` carries what the harness knew from the database before a
request of the quiet phase after the load (see `quiet.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

import orjson

UUID_PATTERN = re.compile(
    rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# Conversation fields kept for list items (the full objects are in the service's answer).
LIST_FIELDS = ("id", "tenant_id", "inbox_id", "state", "assigned_operator_id", "message_count")


@dataclass(slots=True, eq=False)
class Event:
    """One HTTP exchange. `status` None: no response (transport error, see `error`)."""

    seq: int
    action: str  # the harness's name for what it tried (e.g. allocate, probe_claim)
    tenant: str
    operator: str
    method: str
    path: str
    query: dict[str, str] | None = None
    body: dict[str, Any] | None = None
    idem_key: str | None = None
    attempt: int = 1  # 2, 3, … : the same Idempotency-Key and body sent again
    t_send: float = 0.0
    t_recv: float | None = None
    wall_send: float = 0.0
    wall_recv: float | None = None
    status: int | None = None
    code: str | None = None  # error.code of an error envelope
    replayed: bool = False  # header Idempotent-Replayed: true
    data: Any = None
    body_sha256: str | None = None
    body_ids: list[str] = field(default_factory=list)
    error: str | None = None
    expect: dict[str, Any] | None = None  # what the harness expects (quiet-phase checks)

    @property
    def answered(self) -> bool:
        return self.status is not None

    def to_json(self) -> bytes:
        return orjson.dumps({f.name: getattr(self, f.name) for f in _FIELDS})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Event:
        return cls(**{name: raw[name] for name in _FIELD_NAMES if name in raw})


_FIELDS = fields(Event)
_FIELD_NAMES = tuple(f.name for f in _FIELDS)


def body_ids(raw: bytes) -> list[str]:
    """Every distinct UUID in a response body, lower case."""
    return sorted({match.decode().lower() for match in UUID_PATTERN.findall(raw)})


def project_data(path: str, method: str, data: Any) -> Any:
    """What the log keeps of a response's `data` (conversation lists are cut down)."""
    if method == "GET" and path.rstrip("/") == "/api/v1/conversations" and isinstance(data, dict):
        items = data.get("conversations")
        if isinstance(items, list):
            return {
                "conversations": [
                    {name: item.get(name) for name in LIST_FIELDS}
                    for item in items
                    if isinstance(item, dict)
                ],
                "meta": data.get("meta"),
            }
    return data


class EventLogWriter:
    """Appends events to a JSONL file, buffered (flushed every `flush_every` events)."""

    def __init__(self, path: Path, flush_every: int = 500) -> None:
        self.path = path
        self._file: IO[bytes] = path.open("ab")
        self._buffer: list[bytes] = []
        self._flush_every = flush_every
        self.count = 0

    def write(self, event: Event) -> None:
        self._buffer.append(event.to_json())
        self.count += 1
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._file.write(b"\n".join(self._buffer) + b"\n")
            self._buffer.clear()
        self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()


def iter_events(path: Path) -> Iterator[Event]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield Event.from_dict(orjson.loads(line))


def load_events(path: Path) -> list[Event]:
    return list(iter_events(path))
