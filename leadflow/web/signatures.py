"""Signatures of intake webhooks: HMAC-SHA256 over the timestamp and the raw body.

A sender puts two headers on each request:

    X-Leadflow-Timestamp: 1764892800
    X-Leadflow-Signature: v1=<hex HMAC-SHA256 of b"1764892800." + raw body>

The signature covers the exact bytes sent, so the body's spacing and number
formats do not matter, and the timestamp lets a receiver reject a request
captured and replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re

TIMESTAMP_HEADER = "X-Leadflow-Timestamp"
SIGNATURE_HEADER = "X-Leadflow-Signature"
TOLERANCE_SECONDS = 300
"""A request is accepted only within this many seconds of its timestamp, either way."""

_SCHEME = "v1"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


class InvalidSignature(ValueError):
    """The request's signature headers are missing, malformed, wrong or outside the time window."""


def sign_webhook(body: bytes, *, secret: str, timestamp: int) -> str:
    """Return the `X-Leadflow-Signature` value for `body` sent at `timestamp` (Unix seconds)."""
    message = f"{timestamp}.".encode("ascii") + body
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return f"{_SCHEME}={digest}"


def verify_webhook(body: bytes, *, timestamp: str | None, signature: str | None, secret: str, now: float) -> int:
    """Check the signature headers of `body` at Unix time `now`; return the timestamp or raise `InvalidSignature`.

    `signature` may list several comma-separated `v1=` values, so a sender can sign
    with an old and a new secret while both ends change it.
    """
    if not timestamp or not signature:
        raise InvalidSignature(f"the {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers are required")
    if not _TIMESTAMP.fullmatch(timestamp.strip()):
        raise InvalidSignature(f"{TIMESTAMP_HEADER} must be a Unix time in whole seconds")
    sent_at = int(timestamp.strip())
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        raise InvalidSignature(
            f"{TIMESTAMP_HEADER} is {int(now - sent_at):+d} seconds from the receiver's clock, outside the "
            f"{TOLERANCE_SECONDS // 60}-minute window; sign each request when sending it and keep the clock in sync"
        )

    expected = sign_webhook(body, secret=secret, timestamp=sent_at).partition("=")[2]
    candidates = [part.strip() for part in signature.split(",")]
    digests = [
        value for scheme, _, value in (c.partition("=") for c in candidates)
        if scheme == _SCHEME and _HEX_DIGEST.fullmatch(value)
    ]
    if not digests:
        raise InvalidSignature(f"{SIGNATURE_HEADER} must read v1=<64 lower-case hex digits>")
    # compare_digest takes the same time wherever the first difference is, so timing reveals nothing.
    if not any(hmac.compare_digest(digest, expected) for digest in digests):
        raise InvalidSignature(
            "the signature does not match the body; sign the exact bytes sent, with the shared secret"
        )
    return sent_at
