"""The suppression list: addresses that no campaign may email, stored as hashes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Field, SQLModel

from leadflow.clock import now
from models.types import UTCDateTime


class SuppressionReason(StrEnum):
    UNSUBSCRIBE = "unsubscribe"
    HARD_BOUNCE = "hard-bounce"
    MANUAL = "manual"
    ERASURE = "erasure"
    """The lead was erased on request; only the hash of its address is left."""


class Suppression(SQLModel, table=True):
    """One suppressed address, keyed by the SHA-256 of its normalised form so it outlives an erased lead."""

    __tablename__ = "suppressions"

    id: int | None = Field(default=None, primary_key=True)
    address_hash: str = Field(max_length=64, unique=True, description="Hex SHA-256 of the trimmed, lower-cased address.")
    reason: str = Field(max_length=20, description="The first reason the address was suppressed for.")
    source: str | None = Field(default=None, max_length=200, description="File, command or flow that added it.")
    created_at: datetime = Field(default_factory=now, sa_type=UTCDateTime, nullable=False)
