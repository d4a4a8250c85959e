"""sign_webhook and verify_webhook on their own."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from leadflow.web.signatures import InvalidSignature, sign_webhook, verify_webhook

SECRET = "s" * 40
NOW = 1_800_000_000


def test_signature_is_hmac_of_timestamp_and_body() -> None:
    body = b'{"event_id": "e"}'

    signature = sign_webhook(body, secret=SECRET, timestamp=NOW)

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == f"v1={expected}"


def test_window_is_five_minutes_each_way() -> None:
    body = b"{}"
    for offset in (-300, 0, 300):
        signature = sign_webhook(body, secret=SECRET, timestamp=NOW + offset)
        assert verify_webhook(body, timestamp=str(NOW + offset), signature=signature, secret=SECRET, now=NOW) == NOW + offset
    for offset in (-301, 301):
        signature = sign_webhook(body, secret=SECRET, timestamp=NOW + offset)
        with pytest.raises(InvalidSignature, match="window"):
            verify_webhook(body, timestamp=str(NOW + offset), signature=signature, secret=SECRET, now=NOW)


def test_one_of_several_signatures_may_match() -> None:
    body = b"{}"
    old = sign_webhook(body, secret="old" * 12, timestamp=NOW)
    new = sign_webhook(body, secret=SECRET, timestamp=NOW)

    assert verify_webhook(body, timestamp=str(NOW), signature=f"{old}, {new}", secret=SECRET, now=NOW) == NOW


@pytest.mark.parametrize(
    "signature",
    ["", "v1=", "v1=" + "g" * 64, "v1=" + "A" * 64, "v2=" + "0" * 64, "v1=é" + "0" * 63, "v1=" + "0" * 64],
)
def test_bad_signatures_are_rejected(signature: str) -> None:
    with pytest.raises(InvalidSignature):
        verify_webhook(b"{}", timestamp=str(NOW), signature=signature, secret=SECRET, now=NOW)


@pytest.mark.parametrize("timestamp", ["", "12.5", "-1", "１２３", "1" * 13, None])
def test_bad_timestamps_are_rejected(timestamp: str | None) -> None:
    with pytest.raises(InvalidSignature):
        verify_webhook(b"{}", timestamp=timestamp, signature="v1=" + "0" * 64, secret=SECRET, now=NOW)
