"""Signed link tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from leadflow.tokens import ExpiredToken, InvalidToken, sign_token, verify_token

KEY = "k" * 40
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def test_round_trip() -> None:
    token = sign_token(key=KEY, purpose="unsubscribe", lead_id=42)

    claims = verify_token(token, key=KEY, purpose="unsubscribe", now=NOW)

    assert (claims.lead_id, claims.expires_at) == (42, 0)


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token.replace(".42.", ".43."),
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: token.rsplit(".", 1)[0],
        lambda token: "v2" + token[2:],
    ],
)
def test_forged_tokens_are_rejected(forge) -> None:  # noqa: ANN001
    token = sign_token(key=KEY, purpose="unsubscribe", lead_id=42)

    with pytest.raises(InvalidToken):
        verify_token(forge(token), key=KEY, purpose="unsubscribe", now=NOW)


def test_other_purpose_and_key_are_rejected() -> None:
    token = sign_token(key=KEY, purpose="trial", lead_id=42)

    with pytest.raises(InvalidToken, match="for 'trial'"):
        verify_token(token, key=KEY, purpose="unsubscribe", now=NOW)
    with pytest.raises(InvalidToken, match="signature"):
        verify_token(token, key="other" * 10, purpose="trial", now=NOW)


def test_expiry() -> None:
    token = sign_token(key=KEY, purpose="survey", lead_id=1, expires_at=NOW + timedelta(days=1))

    assert verify_token(token, key=KEY, purpose="survey", now=NOW).lead_id == 1
    with pytest.raises(InvalidToken, match="expired"):
        verify_token(token, key=KEY, purpose="survey", now=NOW + timedelta(days=2))


@pytest.mark.parametrize("token", ["", "é", "v1.survey.1.0.AAAA\n", "v1.survey.².0.AAAA", "x" * 300])
def test_odd_characters_are_invalid_tokens(token: str) -> None:
    with pytest.raises(InvalidToken, match="incomplete or damaged"):
        verify_token(token, key=KEY, purpose="survey", now=NOW)


def test_expired_token_is_an_expired_token() -> None:
    token = sign_token(key=KEY, purpose="survey", lead_id=42, expires_at=NOW - timedelta(seconds=1))

    with pytest.raises(ExpiredToken):
        verify_token(token, key=KEY, purpose="survey", now=NOW)
