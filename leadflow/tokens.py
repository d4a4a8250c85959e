"""Signed tokens for the links in emails: bound to one lead and one purpose, with an optional expiry.

A token reads `v1.<purpose>.<lead id>.<expiry>.<signature>`, where expiry is a
Unix time in seconds (0: never expires) and the signature is the first 128 bits
of HMAC-SHA256 over the rest, base64url-encoded. Nothing in a token is secret;
the signature only proves that leadflow made it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime

_VERSION = "v1"
_PURPOSE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# Everything a token can contain: the base64url alphabet and the dots between parts.
_TOKEN_CHARACTERS = re.compile(r"[A-Za-z0-9._-]{1,200}")


class InvalidToken(ValueError):
    """The token is malformed, forged, for another purpose, or expired."""


class ExpiredToken(InvalidToken):
    """The token was made by leadflow for this purpose, but its expiry has passed."""


@dataclass(frozen=True)
class TokenClaims:
    purpose: str
    lead_id: int
    expires_at: int


def _signature(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def sign_token(*, key: str, purpose: str, lead_id: int, expires_at: datetime | None = None) -> str:
    """Return a token that lets its holder act as lead `lead_id` for `purpose` only."""
    if not _PURPOSE.match(purpose):
        raise ValueError(f"token purpose {purpose!r} must be lower-case letters, digits and dashes")
    expiry = int(expires_at.timestamp()) if expires_at is not None else 0
    payload = f"{_VERSION}.{purpose}.{lead_id}.{expiry}"
    return f"{payload}.{_signature(key.encode(), payload)}"


def verify_token(token: str, *, key: str, purpose: str, now: datetime) -> TokenClaims:
    """Return the claims of a valid token for `purpose`; raise `InvalidToken` otherwise."""
    # Links come from anywhere, so reject other characters before any of them is encoded or parsed.
    if not _TOKEN_CHARACTERS.fullmatch(token):
        raise InvalidToken("the link is incomplete or damaged; open it again from the email")
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != _VERSION:
        raise InvalidToken("the link is incomplete or damaged; open it again from the email")
    _, token_purpose, lead_text, expiry_text, signature = parts
    expected = _signature(key.encode(), ".".join(parts[:4]))
    if not hmac.compare_digest(signature, expected):
        raise InvalidToken("the link's signature does not match; open it again from the email")
    if token_purpose != purpose:
        raise InvalidToken(f"this link is for {token_purpose!r}, not {purpose!r}")
    if not lead_text.isdigit() or not expiry_text.isdigit():
        raise InvalidToken("the link is incomplete or damaged; open it again from the email")
    expiry = int(expiry_text)
    if expiry and now.timestamp() > expiry:
        raise ExpiredToken("the link has expired")
    return TokenClaims(purpose=token_purpose, lead_id=int(lead_text), expires_at=expiry)
