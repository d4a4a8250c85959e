"""Intake webhook events, one row per event id, so that a replayed event is recorded once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from leadflow.clock import now
from models.types import UTCDateTime

EVENT_ID_MAX_LENGTH = 200


class WebhookEvent(SQLModel, table=True):
    """An intake event that leadflow processed: its id, a digest of its body, and what it did."""

    __tablename__ = "webhook_events"
    __table_args__ = (UniqueConstraint("event_id", name="uq_webhook_events_event_id"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=EVENT_ID_MAX_LENGTH, description="The sender's id for the event.")
    kind: str = Field(max_length=40, description="`trial-signup` or `survey-response`.")
    body_sha256: str = Field(max_length=64, description="Hex SHA-256 of the raw body, to tell a replay from a reused id.")
    lead_id: int | None = Field(default=None, description="The lead the event acted on; no foreign key, so the row outlives it.")
    outcome: str = Field(max_length=40, description="The outcome of the function the event fed, such as `started`.")
    received_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
