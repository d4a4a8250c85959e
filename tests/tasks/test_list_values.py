"""Cleaning names and reading yes/no cells."""

from __future__ import annotations

import pytest

from tasks.list_values import InvalidFlag, clean_text, parse_flag


@pytest.mark.parametrize("spelling", ["Yes", "y", "TRUE", "t", "1", "x", "X", " yes ", "on", "ja", "Oui", "sí", "✓"])
def test_true_spellings(spelling: str) -> None:
    assert parse_flag(spelling) is True


@pytest.mark.parametrize("spelling", ["No", "n", "FALSE", "f", "0", "off", "nein", "Non", "não"])
def test_false_spellings(spelling: str) -> None:
    assert parse_flag(spelling) is False


@pytest.mark.parametrize("spelling", ["", "  "])
def test_empty_flag_is_unknown(spelling: str) -> None:
    assert parse_flag(spelling) is None


def test_other_flag_value_is_invalid() -> None:
    with pytest.raises(InvalidFlag, match="'maybe'"):
        parse_flag("maybe")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ann\r\nBcc: x@example.org", "Ann Bcc: x@example.org"),
        ("  Ann   Lee ", "Ann Lee"),
        ("A\tB", "A B"),
        ("Zero\u200bwidth", "Zero width"),
        ("Line\u2028separator\x85next", "Line separator next"),
        ("Bell\x07", "Bell"),
        ("Zoë", "Zoë"),
    ],
)
def test_clean_text_removes_control_characters(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected
