"""The one place flows and tasks take the current time from, so tests and demos can move it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_frozen_now: ContextVar[datetime | None] = ContextVar("leadflow_frozen_now", default=None)


def now() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    frozen = _frozen_now.get()
    return frozen if frozen is not None else datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Convert an aware datetime to UTC; reject a naive one, whose zone is unknown."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no time zone; give one, for example {value.isoformat()}+00:00")
    return value.astimezone(UTC)


@contextmanager
def frozen_at(moment: datetime) -> Iterator[datetime]:
    """Make `now()` return `moment` inside the block (in this thread or task)."""
    token = _frozen_now.set(as_utc(moment))
    try:
        yield as_utc(moment)
    finally:
        _frozen_now.reset(token)


def wall_clock() -> datetime:
    """Return the real current time in UTC, never frozen.

    Leases and retry backoff use it: they are about real processes and real mail
    servers, so a moved flow clock must not stretch or skip them.
    """
    return datetime.now(UTC)
