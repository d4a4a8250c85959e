"""Campaigns and the email ledger, which keeps one row per (campaign, lead, step)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Column, ForeignKey, Integer, UniqueConstraint
from sqlmodel import Field, SQLModel

from leadflow.clock import now
from models.types import UTCDateTime


class SendStatus(StrEnum):
    PENDING = "pending"
    """Written by a launcher for campaign-sender runs to claim; no worker process owns it yet."""
    QUEUED = "queued"
    """Claimed by a worker process, not yet handed to the mail server: safe to send again if that process dies."""
    SENDING = "sending"
    """Being handed to the mail server now: if the process dies, the outcome is unknown."""
    SENT = "sent"
    DEFERRED = "deferred"
    """The server replied 4xx or was unreachable: a later launch tries again."""
    BOUNCED = "bounced"
    """The server rejected the recipient for good (5xx)."""
    FAILED = "failed"
    """Not handed over (a template error, a rejected message): a later launch tries again."""
    AMBIGUOUS = "ambiguous"
    """The server may have accepted it: never resent without an operator's decision."""
    RELEASED = "released"
    """Queued by a worker process that stopped before handing it over: the next claim takes it."""


# A later claim takes these again. A deferred send waits for its backoff and needs
# attempts left. Every other status keeps its key taken.
RETRYABLE_STATUSES = frozenset({SendStatus.PENDING, SendStatus.DEFERRED, SendStatus.FAILED, SendStatus.RELEASED})

# Statuses that a campaign-sender run claims: never handed over, and waiting for no backoff.
SENDER_CLAIMABLE_STATUSES = frozenset({SendStatus.PENDING, SendStatus.RELEASED})

# Statuses of a send that a worker process owns right now.
IN_FLIGHT_STATUSES = frozenset({SendStatus.QUEUED, SendStatus.SENDING})


class Campaign(SQLModel, table=True):
    """A named launch of one kind of email, such as `trial-invite/spring`."""

    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_campaigns_kind_name"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    name: str = Field(max_length=100)
    public_id: str = Field(
        default_factory=lambda: str(uuid.uuid4()),
        max_length=36,
        unique=True,
        description="Random id that makes Message-IDs unique across databases.",
    )
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)


class EmailSend(SQLModel, table=True):
    """The ledger: one row per (campaign, lead, step), written before the message goes out."""

    __tablename__ = "email_ledger"
    __table_args__ = (
        UniqueConstraint("campaign_id", "lead_id", "step", name="uq_email_ledger_key"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(
        sa_column=Column(Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False)
    )
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    step: str = Field(max_length=40)
    status: str = Field(max_length=16, index=True)
    message_id: str = Field(max_length=200, unique=True)
    attempts: int = Field(default=0, ge=0)
    claimed_by: str | None = Field(default=None, max_length=200, description="Actor of the last claim.")
    owner: str | None = Field(
        default=None, max_length=200,
        description="Worker process of the last claim (host, boot, pid namespace, pid, start time); see tasks.liveness.",
    )
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
    claimed_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime,
        description="Wall-clock time of the last claim or hand-over; the owner's last sign of life.",
    )
    next_attempt_at: datetime | None = Field(
        default=None, sa_type=UTCDateTime, description="Wall-clock time before which a deferred send is not retried."
    )
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    smtp_code: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=1000)
