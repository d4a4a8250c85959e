"""Address syntax checks."""

from __future__ import annotations

import pytest

from tasks.email_address import InvalidEmailAddress, normalize_email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  bob.smith+news@sub.example.org ", "bob.smith+news@sub.example.org"),
        ("o'brien@example.ie", "o'brien@example.ie"),
        ("x@example.com.", "x@example.com"),
        ("\u200bann@example.com\ufeff", "ann@example.com"),
        ("\xa0ann@example.com\t", "ann@example.com"),
        ("ann@xn--bcher-kva.example", "ann@xn--bcher-kva.example"),
    ],
)
def test_normalize_accepts(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "two@@example.com",
        "a@b@example.com",
        "@example.com",
        "ann@",
        "ann@localhost",
        "ann@exa mple.com",
        ".ann@example.com",
        "ann..lee@example.com",
        "ann@-example.com",
        "ann@example.123",
        "ann@exam_ple.com",
        "josé@example.com",
        "ann@bücher.example",
        "ann@ｅxample.com",
        "ann@example.com\r\nBcc: x@example.org",
        "a" * 65 + "@example.com",
    ],
)
def test_normalize_rejects(raw: str) -> None:
    with pytest.raises(InvalidEmailAddress):
        normalize_email(raw)
