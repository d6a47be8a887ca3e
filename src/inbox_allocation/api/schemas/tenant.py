"""The caller's tenant and the weights update body."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from inbox_allocation.api.schemas.common import RequestBody
from inbox_allocation.db.seed_ids import ACME


class TenantOut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: UUID = Field(examples=[ACME])
    name: str = Field(examples=["Acme Corp"])
    priority_weight_alpha: float = Field(
        description="Weight of the message count in the priority (4 decimal places)",
        examples=[0.6],
    )
    priority_weight_beta: float = Field(
        description="Weight of the waiting time in the priority (4 decimal places)",
        examples=[0.4],
    )
    created_at: datetime
    updated_at: datetime


class WeightsUpdate(RequestBody):
    """`alpha`/`beta`, or the older names `weight_message_count`/`weight_wait_time`.

    A weight given under neither name counts as 0 (as in the original). When both names of
    one weight are sent, the contract's name (`alpha`, `beta`) wins.
    """

    alpha: float | None = Field(
        None, description="Message-count weight, 0 ≤ alpha ≤ 1", examples=[0.7]
    )
    beta: float | None = Field(
        None, description="Waiting-time weight, 0 ≤ beta ≤ 1", examples=[0.3]
    )
    weight_message_count: float | None = Field(
        None, description="Alias of `alpha` (older clients)", examples=[0.7]
    )
    weight_wait_time: float | None = Field(
        None, description="Alias of `beta` (older clients)", examples=[0.3]
    )

    def weights(self) -> tuple[float, float]:
        """(alpha, beta) with the aliases resolved and missing weights as 0."""
        alpha = self.alpha if self.alpha is not None else self.weight_message_count
        beta = self.beta if self.beta is not None else self.weight_wait_time
        return (alpha or 0.0, beta or 0.0)
