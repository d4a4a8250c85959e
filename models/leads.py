"""Leads and their stage history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Integer, String
from sqlmodel import Field, SQLModel

from leadflow.clock import now
from models.stages import Stage
from models.types import UTCDateTime

EMAIL_MAX_LENGTH = 254
NAME_MAX_LENGTH = 200


class LeadBase(SQLModel):
    """The fields a mailing list provides."""

    email: str = Field(max_length=EMAIL_MAX_LENGTH, description="Normalised: trimmed and lower-case.")
    first_name: str | None = Field(default=None, max_length=NAME_MAX_LENGTH)
    last_name: str | None = Field(default=None, max_length=NAME_MAX_LENGTH)
    company: str | None = Field(default=None, max_length=NAME_MAX_LENGTH)
    title: str | None = Field(default=None, max_length=NAME_MAX_LENGTH)


class Lead(LeadBase, table=True):
    """A person on the mailing list and where they are in the funnel."""

    __tablename__ = "leads"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=EMAIL_MAX_LENGTH, unique=True, index=True)
    stage: str = Field(default=Stage.SUBSCRIBER.value, max_length=16, index=True)
    is_customer: bool = Field(default=False)
    marketing_consent: bool | None = Field(
        default=None, description="The list's consent column: True or False, None where the list had none."
    )
    suppressed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    suppression_reason: str | None = Field(default=None, max_length=200)
    unsubscribed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    trial_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    trial_ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source: str | None = Field(default=None, max_length=200, description="Where the lead first came from.")
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)


class StageChange(SQLModel, table=True):
    """One row of a lead's stage history; rows are only ever appended."""

    __tablename__ = "stage_history"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    from_stage: str | None = Field(default=None, sa_column=Column(String(16), nullable=True))
    to_stage: str = Field(max_length=16)
    reason: str = Field(max_length=500)
    actor: str = Field(max_length=200, description="A flow run id (`flow-run:<uuid>`) or a user name.")
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
