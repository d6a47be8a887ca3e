"""The priority formula (docs/decisions.md#live-priority), written plainly: the oracle tests
compare with."""

from __future__ import annotations

import math
from datetime import datetime


def priority(
    *, message_count: int, last_message_at: datetime, at: datetime, alpha: float, beta: float
) -> float:
    normalised_count = min(math.log10(message_count + 1) / 3, 1.0)
    normalised_delay = min((at - last_message_at).total_seconds() / 3600 / 24, 1.0)
    return alpha * normalised_count + beta * normalised_delay


def allocation_order_key(
    *,
    message_count: int,
    last_message_at: datetime,
    id: str,
    at: datetime,
    alpha: float,
    beta: float,
) -> tuple[float, datetime, str]:
    """Sort key of the allocation order: priority DESC, longest waiting, then id."""
    score = priority(message_count=message_count, last_message_at=last_message_at, at=at,
                     alpha=alpha, beta=beta)  # fmt: skip
    return (-score, last_message_at, id)
