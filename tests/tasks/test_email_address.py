"""Address syntax checks."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.email_address import InvalidEmailAddress, _normalize_checked, normalize_email


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


def outcome(normalize: Callable[[str], str], raw: str) -> str | None:
    """Return the normalised address, or None when `normalize` rejects `raw`."""
    try:
        return normalize(raw)
    except InvalidEmailAddress:
        return None


# Characters near every boundary of the checks: atext, dots, hyphens, digits, case,
# spaces, zero-width and non-ASCII characters.
ADDRESS_CHARACTERS = "aZ09.-_+'!@ \t\u200b\xe9"


@settings(max_examples=3000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet=ADDRESS_CHARACTERS, max_size=30),
        st.builds(
            "{}@{}.{}".format,
            st.text(alphabet=ADDRESS_CHARACTERS, min_size=1, max_size=70),
            st.text(alphabet=ADDRESS_CHARACTERS, min_size=1, max_size=70),
            st.text(alphabet=ADDRESS_CHARACTERS, min_size=1, max_size=5),
        ),
    )
)
def test_fast_path_matches_full_checks(raw: str) -> None:
    assert outcome(normalize_email, raw) == outcome(_normalize_checked, raw)


@pytest.mark.parametrize(
    "raw",
    [
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "ann@" + "a" * 63 + ".com",
        "ann@" + "a" * 64 + ".com",
        "ann@" + ("a" * 60 + ".") * 4 + "com",
        "ann@" + ("a" * 60 + ".") * 5 + "com",
        "ann@example.c0m",
        "ann@example.12",
        "ann@1.2.example",
        "ann@example.com\n",
    ],
)
def test_fast_path_matches_full_checks_at_limits(raw: str) -> None:
    assert outcome(normalize_email, raw) == outcome(_normalize_checked, raw)
