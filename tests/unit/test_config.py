"""Configuration: Go-style durations, the README's alias names, loud failures."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from inbox_allocation.config import ConfigError, load_settings, parse_go_duration

pytestmark = pytest.mark.no_db


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("0", timedelta(0)),
    ],
)
def test_go_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize("text", ["5", "1d", "", "m", "5 m", "-", "30s garbage"])
def test_invalid_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="Go-style duration"):
        parse_go_duration(text)


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    settings = load_settings()
    assert settings.server_port == 8080
    assert settings.db_port == 54321
    assert settings.grace_period_interval == timedelta(seconds=30)
    assert settings.grace_period_batch_size == 100
    assert settings.grace_period_duration == timedelta(minutes=5)
    assert settings.idempotency_ttl == timedelta(hours=24)
    assert settings.shutdown_timeout == timedelta(seconds=30)
    assert settings.use_embedded_db


def test_readme_names_are_accepted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SERVER_SHUTDOWN_TIMEOUT", "10s")
    monkeypatch.setenv("WORKER_GRACE_PERIOD_INTERVAL", "1m")
    monkeypatch.setenv("WORKER_GRACE_PERIOD_BATCH_SIZE", "7")
    monkeypatch.setenv("SERVER_READ_TIMEOUT", "3s")
    settings = load_settings()
    assert settings.shutdown_timeout == timedelta(seconds=10)
    assert settings.grace_period_interval == timedelta(minutes=1)
    assert settings.grace_period_batch_size == 7
    assert settings.read_timeout == timedelta(seconds=3)


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRACE_PERIOD_INTERVAL", "soon")
    monkeypatch.setenv("DB_PORT", "not-a-port")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    assert "GRACE_PERIOD_INTERVAL / WORKER_GRACE_PERIOD_INTERVAL='soon'" in message
    assert "Go-style duration" in message
    assert "DB_PORT='not-a-port'" in message


def test_invalid_log_level_stops_start_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load_settings()


def test_empty_value_means_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DB_HOST", "")
    monkeypatch.setenv("SERVER_PORT", "")
    settings = load_settings()
    assert settings.use_embedded_db
    assert settings.server_port == 8080


def test_dotenv_is_read_but_never_overrides_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SERVER_PORT=9000\nDB_NAME=from_dotenv\n")
    monkeypatch.setenv("SERVER_PORT", "9100")
    settings = load_settings()
    assert settings.server_port == 9100
    assert settings.db_name == "from_dotenv"


def test_configured_database_disables_the_embedded_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PASSWORD", "p@ss/word")
    settings = load_settings()
    assert not settings.use_embedded_db
    assert settings.dsn == (
        "postgresql://allocation_user:p%40ss%2Fword@db.internal:54321/allocation_db?sslmode=disable"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@elsewhere/db")
    assert load_settings().dsn == "postgresql://u:p@elsewhere/db"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("WRITE_TIMEOUT", "0", "WRITE_TIMEOUT"),
        ("SERVER_WRITE_TIMEOUT", "0s", "WRITE_TIMEOUT"),
        ("READ_TIMEOUT", "0", "READ_TIMEOUT"),
        ("IDLE_TIMEOUT", "0", "IDLE_TIMEOUT"),
        ("GRACE_PERIOD_DURATION", "0", "GRACE_PERIOD_DURATION"),
        ("IDEMPOTENCY_TTL", "0", "IDEMPOTENCY_TTL"),
        ("IDEMPOTENCY_TTL", "30s", "IDEMPOTENCY_TTL"),
        ("DB_LOCK_TIMEOUT", "0", "DB_LOCK_TIMEOUT"),
        ("DB_IDLE_IN_TRANSACTION_TIMEOUT", "0", "DB_IDLE_IN_TRANSACTION_TIMEOUT"),
    ],
)
def test_values_that_would_crash_or_disable_a_limit_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, named: str
) -> None:
    """WRITE_TIMEOUT=0 used to crash start-up (asyncpg refuses a zero command timeout) and
    IDEMPOTENCY_TTL=0 was accepted (every reservation counted as expired at once)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=named):
        load_settings()
