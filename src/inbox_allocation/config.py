"""Settings from the environment (and an optional `.env` that never overrides it).

Names and defaults follow the Go service (docs/decisions.md#configuration); the README's prefixed
names (`SERVER_READ_TIMEOUT`, `WORKER_GRACE_PERIOD_INTERVAL`, …) are accepted as aliases. Unlike the
original, an invalid value stops start-up with a message naming the variable: a silent
fallback to a default hides typos in production.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
# scheme://host[:port], as browsers send it in the Origin header (no path, no slash).
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[^/\s:\[\]]+)(:\d{1,5})?")
DURATION_FORM = "a Go-style duration such as 500ms, 30s, 5m or 1h30m"


def parse_go_duration(value: Any) -> timedelta:
    """Parse Go's `time.ParseDuration` syntax (`30s`, `1h30m`, `1.5h`, `0`)."""
    if isinstance(value, timedelta):
        return value
    text = str(value).strip()
    if text == "0":
        return timedelta(0)
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text) or not text:
        raise ValueError(f"expected {DURATION_FORM}")
    return timedelta(seconds=total)


Duration = Annotated[timedelta, BeforeValidator(parse_go_duration)]


def _env(*names: str) -> Any:
    return AliasChoices(*names) if len(names) > 1 else names[0]


class ConfigError(ValueError):
    """Invalid configuration; the message names every offending variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,  # empty value = unset (docs/decisions.md#configuration)
        extra="ignore",
        frozen=True,
        populate_by_name=True,  # lets tests pass field names; the environment uses the aliases
    )

    # HTTP server. Loopback by default: a developer's `make run` is not reachable from the
    # network unless asked (the container image sets 0.0.0.0 explicitly).
    server_host: str = Field("127.0.0.1", validation_alias="SERVER_HOST")
    server_port: int = Field(8080, ge=1, le=65535, validation_alias="SERVER_PORT")
    server_workers: int = Field(1, ge=1, le=64, validation_alias="SERVER_WORKERS")
    read_timeout: Duration = Field(
        timedelta(seconds=15), validation_alias=_env("READ_TIMEOUT", "SERVER_READ_TIMEOUT")
    )
    write_timeout: Duration = Field(
        timedelta(seconds=15), validation_alias=_env("WRITE_TIMEOUT", "SERVER_WRITE_TIMEOUT")
    )
    idle_timeout: Duration = Field(timedelta(seconds=60), validation_alias="IDLE_TIMEOUT")
    shutdown_timeout: Duration = Field(
        timedelta(seconds=30),
        validation_alias=_env("SHUTDOWN_TIMEOUT", "SERVER_SHUTDOWN_TIMEOUT"),
    )

    # Database: DATABASE_URL, or DB_HOST and friends. Neither set = the embedded default.
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")
    db_host: str | None = Field(None, validation_alias="DB_HOST")
    db_port: int = Field(54321, ge=1, le=65535, validation_alias="DB_PORT")
    db_user: str = Field("allocation_user", min_length=1, validation_alias="DB_USER")
    db_password: str = Field("allocation_pass", min_length=1, validation_alias="DB_PASSWORD")
    db_name: str = Field("allocation_db", min_length=1, validation_alias="DB_NAME")
    db_ssl_mode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = (
        Field("disable", validation_alias="DB_SSL_MODE")
    )
    db_max_conns: int = Field(25, ge=1, le=1000, validation_alias="DB_MAX_CONNS")
    db_min_conns: int = Field(5, ge=0, le=1000, validation_alias="DB_MIN_CONNS")
    # Pooled connections one tenant may use at once (default: 4/5 of DB_MAX_CONNS, so other
    # tenants always keep some); a request over it waits up to 2 s, then 503 with Retry-After.
    db_max_conns_per_tenant: int | None = Field(
        None, ge=1, le=1000, validation_alias="DB_MAX_CONNS_PER_TENANT"
    )
    # A statement waiting longer than this for a row lock fails with 503 DB_UNAVAILABLE
    # (Retry-After: 1) instead of holding its request; above PostgreSQL's deadlock_timeout.
    db_lock_timeout: Duration = Field(timedelta(seconds=2), validation_alias="DB_LOCK_TIMEOUT")
    # The server ends a session of the service left idle inside a transaction this long.
    db_idle_in_transaction_timeout: Duration = Field(
        timedelta(seconds=5), validation_alias="DB_IDLE_IN_TRANSACTION_TIMEOUT"
    )

    # Embedded default database
    embedded_db_dir: Path | None = Field(None, validation_alias="EMBEDDED_DB_DIR")
    pg_bin_dir: Path | None = Field(None, validation_alias="PG_BIN_DIR")
    pg_run_as: str | None = Field(None, validation_alias="PG_RUN_AS")

    # Logging
    log_level: Literal["debug", "info", "warn", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL"
    )
    # auto: console lines on a terminal, JSON otherwise (logging.py).
    log_format: Literal["auto", "json", "console"] = Field("auto", validation_alias="LOG_FORMAT")

    # Grace period
    grace_period_interval: Duration = Field(
        timedelta(seconds=30),
        validation_alias=_env("GRACE_PERIOD_INTERVAL", "WORKER_GRACE_PERIOD_INTERVAL"),
    )
    grace_period_batch_size: int = Field(
        100,
        ge=1,
        le=10_000,
        validation_alias=_env("GRACE_PERIOD_BATCH_SIZE", "WORKER_GRACE_PERIOD_BATCH_SIZE"),
    )
    grace_period_duration: Duration = Field(
        timedelta(minutes=5), validation_alias="GRACE_PERIOD_DURATION"
    )

    # Queue aging: how often queued conversations crossing 24 h of waiting are flagged for
    # the allocation indexes (migration 0005); a longer period only makes allocation read a
    # little more, never answer differently.
    queue_aging_interval: Duration = Field(
        timedelta(seconds=10), validation_alias="QUEUE_AGING_INTERVAL"
    )

    # Idempotency
    idempotency_ttl: Duration = Field(timedelta(hours=24), validation_alias="IDEMPOTENCY_TTL")
    idempotency_cleanup_interval: Duration = Field(
        timedelta(hours=1), validation_alias="IDEMPOTENCY_CLEANUP_INTERVAL"
    )

    # Event stream (docs/events.md): how long events are kept, and how often the cleanup
    # worker of every replica deletes older ones.
    events_retention: Duration = Field(timedelta(hours=72), validation_alias="EVENTS_RETENTION")
    events_cleanup_interval: Duration = Field(
        timedelta(minutes=5), validation_alias="EVENTS_CLEANUP_INTERVAL"
    )

    # Webhooks: tries per event before it is given up, how long a webhook may keep failing
    # before it is disabled, whether private / loopback / link-local targets are allowed
    # (tests and closed networks only), and how often the delivery worker looks for work.
    webhook_max_attempts: int = Field(8, ge=1, le=100, validation_alias="WEBHOOK_MAX_ATTEMPTS")
    webhook_disable_after: Duration = Field(
        timedelta(hours=24), validation_alias="WEBHOOK_DISABLE_AFTER"
    )
    webhook_allow_private: bool = Field(False, validation_alias="WEBHOOK_ALLOW_PRIVATE")
    webhook_poll_interval: Duration = Field(
        timedelta(seconds=1), validation_alias="WEBHOOK_POLL_INTERVAL"
    )

    # Observability: GET /metrics (Prometheus) and OpenTelemetry trace export. The export is
    # off unless an OTLP/HTTP endpoint is given (and needs the `[otel]` extra installed).
    metrics_enabled: bool = Field(True, validation_alias="METRICS_ENABLED")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, pattern=r"^https?://[^/\s]+", validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT"
    )

    # Authentication (docs/authentication.md): how /api/v1 callers are identified.
    auth_mode: Literal["headers", "token", "jwt"] = Field("headers", validation_alias="AUTH_MODE")
    jwt_jwks_file: Path | None = Field(None, validation_alias="JWT_JWKS_FILE")
    jwt_jwks_url: str | None = Field(
        None, pattern=r"^https?://[^/\s]+", validation_alias="JWT_JWKS_URL"
    )
    jwt_issuer: str | None = Field(None, validation_alias="JWT_ISSUER")
    jwt_audience: str | None = Field(None, validation_alias="JWT_AUDIENCE")
    jwt_tenant_claim: str = Field("tenant_id", min_length=1, validation_alias="JWT_TENANT_CLAIM")
    jwt_operator_claim: str = Field("sub", min_length=1, validation_alias="JWT_OPERATOR_CLAIM")
    # Browser origins allowed to call the API (comma-separated; `*` = any). Empty = no CORS
    # headers at all: browsers then only let pages of the service itself (/docs) call it.
    cors_allowed_origins: str = Field("", validation_alias="CORS_ALLOWED_ORIGINS")
    # When set, GET /metrics needs `Authorization: Bearer <this>` (it lists tenant ids).
    metrics_bearer_token: SecretStr | None = Field(
        None, min_length=1, validation_alias="METRICS_BEARER_TOKEN"
    )

    # Build information for /version (set by the Docker build; `git` is asked otherwise)
    build_time: str = Field("unknown", validation_alias="BUILD_TIME")
    git_commit: str | None = Field(None, validation_alias="GIT_COMMIT")

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.db_min_conns > self.db_max_conns:
            raise ValueError("DB_MIN_CONNS must not exceed DB_MAX_CONNS")
        if (self.db_max_conns_per_tenant or 0) > self.db_max_conns:
            raise ValueError("DB_MAX_CONNS_PER_TENANT must not exceed DB_MAX_CONNS")
        # Durations that must be positive: 0 would crash start-up (asyncpg refuses a zero
        # command timeout), spin a worker, or mean "no limit" to PostgreSQL.
        for name in ("grace_period_interval", "queue_aging_interval",
                     "idempotency_cleanup_interval", "events_retention",
                     "events_cleanup_interval", "webhook_poll_interval", "write_timeout",
                     "read_timeout", "idle_timeout", "grace_period_duration", "db_lock_timeout",
                     "db_idle_in_transaction_timeout"):  # fmt: skip
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{' / '.join(_env_names(name))} must be greater than 0")
        # A key must outlive the longest request that can hold it, or a retry would run a
        # request twice; under a minute is a typo (e.g. a bare number read as seconds).
        if self.idempotency_ttl < timedelta(minutes=1):
            raise ValueError("IDEMPOTENCY_TTL must be at least 1m")
        if self.shutdown_timeout < timedelta(0):
            raise ValueError("SHUTDOWN_TIMEOUT / SERVER_SHUTDOWN_TIMEOUT must not be negative")
        if self.auth_mode == "jwt":
            if not self.jwt_issuer or not self.jwt_audience:
                raise ValueError("AUTH_MODE=jwt needs JWT_ISSUER and JWT_AUDIENCE")
            if (self.jwt_jwks_file is None) == (self.jwt_jwks_url is None):
                raise ValueError("AUTH_MODE=jwt needs one of JWT_JWKS_FILE or JWT_JWKS_URL")
            if self.jwt_jwks_file is not None and not self.jwt_jwks_file.is_file():
                raise ValueError(f"JWT_JWKS_FILE {self.jwt_jwks_file} is not a readable file")
        for origin in self.cors_origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"CORS_ALLOWED_ORIGINS: {origin!r} is not an origin such as "
                    "https://app.example.com or http://localhost:3000 (or *)"
                )
        return self

    @property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.cors_allowed_origins.split(",") if part.strip())

    @property
    def tenant_connection_limit(self) -> int:
        return self.db_max_conns_per_tenant or max(1, self.db_max_conns * 4 // 5)

    @property
    def use_embedded_db(self) -> bool:
        return self.database_url is None and self.db_host is None

    @property
    def embedded_data_dir(self) -> Path:
        return (self.embedded_db_dir or Path(".data/postgres")).absolute()

    @cached_property
    def dsn(self) -> str:
        """libpq-style URL of the configured server (the embedded one: 127.0.0.1:DB_PORT)."""
        if self.database_url:
            return self.database_url
        host = self.db_host or "127.0.0.1"
        user, password = quote(self.db_user, safe=""), quote(self.db_password, safe="")
        return (
            f"postgresql://{user}:{password}@{host}:{self.db_port}/{quote(self.db_name)}"
            f"?sslmode={self.db_ssl_mode}"
        )


def _env_names(field_name: str) -> list[str]:
    alias = Settings.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [str(alias or field_name.upper())]


def format_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the variable(s) the value may come from."""
    names = {field: " / ".join(_env_names(field)) for field in Settings.model_fields}
    by_alias = {alias: names[field] for field in names for alias in _env_names(field)}
    lines = ["invalid configuration:"]
    for item in error.errors():
        loc = str(item["loc"][0]) if item.get("loc") else ""
        name = names.get(loc) or by_alias.get(loc) or loc or "configuration"
        value = item.get("input")
        shown = f"={value!r}" if isinstance(value, str | int | float) else ""
        lines.append(f"  {name}{shown}: {item['msg']}")
    return "\n".join(lines)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
