"""Survey responses: the answers a lead gave, one row per lead."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from leadflow.clock import now
from models.types import UTCDateTime


class SurveyResponse(SQLModel, table=True):
    """A lead's survey answers: the rules' questions (criterion key to option value), fit and pain points."""

    __tablename__ = "survey_responses"

    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(
        sa_column=Column(Integer, ForeignKey("leads.id", ondelete="CASCADE"), nullable=False, unique=True)
    )
    framework: str = Field(max_length=40, description="The rules' framework the questions came from.")
    answers: dict[str, str] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    fit: str | None = Field(default=None, max_length=40)
    pain_points: str | None = Field(default=None, max_length=2000)
    source: str = Field(max_length=200, description="web, webhook, or the imported file and line.")
    submitted_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
