"""Reading times with offsets, without offsets, and across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from leadflow.errors import ConfigurationError
from leadflow.timeparse import InvalidTime, load_zone, parse_time


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-29T13:30:45-08:00", datetime(2026, 3, 29, 21, 30, 45, tzinfo=UTC)),
        ("2026-03-29T13:30:45Z", datetime(2026, 3, 29, 13, 30, 45, tzinfo=UTC)),
        ("2026-03-29 13:30:45+05:30", datetime(2026, 3, 29, 8, 0, 45, tzinfo=UTC)),
        (" 2026-03-29T13:30:45+00:00 ", datetime(2026, 3, 29, 13, 30, 45, tzinfo=UTC)),
    ],
)
def test_offsets_are_converted(text: str, expected: datetime) -> None:
    parsed = parse_time(text)

    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_naive_time_is_rejected_without_zone() -> None:
    with pytest.raises(InvalidTime, match="no UTC offset"):
        parse_time("2026-03-29T13:30:45")


def test_naive_time_read_in_given_zone() -> None:
    berlin = load_zone("Europe/Berlin")

    assert parse_time("2026-01-15T09:00", naive_zone=berlin) == datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
    assert parse_time("2026-07-15T09:00", naive_zone=berlin) == datetime(2026, 7, 15, 7, 0, tzinfo=UTC)


def test_skipped_local_time_is_rejected() -> None:
    with pytest.raises(InvalidTime, match="daylight saving"):
        parse_time("2026-03-29T02:30", naive_zone=load_zone("Europe/Berlin"))


def test_repeated_local_time_takes_first() -> None:
    parsed = parse_time("2026-10-25T02:30", naive_zone=load_zone("Europe/Berlin"))

    assert parsed == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "29/03/2026 13:30", "2026-13-01T00:00Z"])
def test_unreadable_times_are_rejected(text: str) -> None:
    with pytest.raises(InvalidTime):
        parse_time(text)


def test_unknown_zone_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="Mars/Olympus"):
        load_zone("Mars/Olympus")
