"""Qualification decisions and the hand-off of each new SQL to a salesperson."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from leadflow.clock import now
from models.types import UTCDateTime


class LeadReview(SQLModel, table=True):
    """The qualification decision on a lead's survey answers, with the score that explains it."""

    __tablename__ = "lead_reviews"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    framework: str = Field(max_length=40)
    score: float
    decision: str = Field(max_length=16, description="qualify or disqualify: the outcome, by rule or by a person.")
    rule_decision: str = Field(max_length=16, description="The decision of the thresholds alone: qualify, review or disqualify.")
    explanation: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    """The full score: per criterion the answer, the points and whether it passed."""
    decided_by: str = Field(max_length=200, description="A flow run id for a rule decision, the reviewer's name otherwise.")
    note: str | None = Field(default=None, max_length=1000)
    decided_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)


class SalesHandoff(SQLModel, table=True):
    """An SQL's owner on the sales team and the state of its CRM notification."""

    __tablename__ = "sales_handoffs"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    owner: str = Field(max_length=254)
    assigned_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
    crm_status: str = Field(default="not configured", max_length=16, description="sent, failed or not configured.")
    crm_attempts: int = Field(default=0)
    crm_sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    crm_error: str | None = Field(default=None, max_length=1000)
