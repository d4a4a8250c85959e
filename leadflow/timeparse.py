"""Read times given on the command line or in CSV files, and convert them to UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow.errors import ConfigurationError


class InvalidTime(ValueError):
    """The text is not a time leadflow can read; the message gives the reason and an example."""


def load_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone `name`, such as Europe/Berlin, or raise `ConfigurationError`."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin or UTC") from exc


def parse_time(text: str, *, naive_zone: ZoneInfo | None = None) -> datetime:
    """Parse an ISO 8601 time and return it in UTC.

    A time with an offset (`2026-03-29T13:30:45-08:00`, or `Z` for UTC) is converted.
    A time without one is read in `naive_zone` when given, and rejected otherwise,
    because guessing a zone would shift every trial by hours. A naive time that a
    daylight-saving change skips (02:30 on a spring-forward night) is rejected. One
    that it repeats takes the first of the two moments.
    """
    value = text.strip()
    if not value:
        raise InvalidTime("the time is empty; give one such as 2026-03-29T13:30:00+00:00")
    try:
        parsed = datetime.fromisoformat(value.replace(" UTC", "+00:00"))
    except ValueError as exc:
        raise InvalidTime(f"{value!r} is not an ISO 8601 time such as 2026-03-29T13:30:00+02:00") from exc

    if parsed.tzinfo is not None and parsed.utcoffset() is not None:
        return parsed.astimezone(UTC)
    if naive_zone is None:
        raise InvalidTime(
            f"{value!r} has no UTC offset; add one (for example {parsed.isoformat()}+00:00) or name the zone it is in"
        )
    local = parsed.replace(tzinfo=naive_zone, fold=0)
    if local.astimezone(UTC).astimezone(naive_zone).replace(tzinfo=None) != parsed:
        raise InvalidTime(f"{value!r} does not exist in {naive_zone.key}: the clocks skip it for daylight saving time")
    return local.astimezone(UTC)
