"""Email address syntax checks, without any DNS look-up."""

from __future__ import annotations

import re
import string

# The characters RFC 5322 allows unquoted in a local part ("atext"), plus the dot.
_LOCAL_CHARACTERS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.")
_DOMAIN_CHARACTERS = frozenset(string.ascii_lowercase + string.digits + "-")
# Zero-width characters that copying from web pages and spreadsheets leaves around an address.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
# Matches only addresses that `_normalize_checked` accepts and returns lower-cased: dot-separated
# atext words, one '@', then two or more labels of letters, digits and inner hyphens. The caller
# checks the lengths and the numeric top-level domain after the match.
_ATEXT_WORD = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"({_ATEXT_WORD}(?:\.{_ATEXT_WORD})*)@((?:{_LABEL}\.)+({_LABEL}))")


class InvalidEmailAddress(ValueError):
    """The value is not an address leadflow can send to; the message gives the reason."""


def normalize_email(raw: str) -> str:
    """Return `raw` trimmed and lower-cased, or raise `InvalidEmailAddress` with the reason.

    Trimming removes whitespace and zero-width characters. Lower-casing the local
    part is not what RFC 5321 promises, but every large mailbox provider treats it
    so, and mailing lists need `Ann@x.com` and `ann@x.com` to be one lead. Quoted
    local parts and every address with a non-ASCII character are rejected, because
    many SMTP servers cannot deliver them. An internationalised domain is accepted
    in its ASCII `xn--` form, which is then the lead's address.
    """
    # One regular expression accepts a usual address about four times faster than the
    # step-by-step checks, which handle the rest and word the rejections.
    plain = _PLAIN_ADDRESS.fullmatch(raw)
    if plain is not None:
        local, domain, top_level = plain.groups()
        if len(local) <= 64 and len(domain) <= 253 and not top_level.isdigit():
            return raw.lower()
    return _normalize_checked(raw)


def _normalize_checked(raw: str) -> str:
    """Normalise `raw` as `normalize_email` does, check by check, so that a rejection names the failed check."""
    value = raw.strip().strip(_INVISIBLE).strip()
    if not value:
        raise InvalidEmailAddress("the email address is empty")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or " " in value:
        raise InvalidEmailAddress(f"{shown!r} contains spaces or control characters")
    if not value.isascii():
        raise InvalidEmailAddress(
            f"{shown!r} has non-ASCII characters, which leadflow does not send to; "
            "write an internationalised domain in its xn-- form"
        )
    if value.count("@") != 1:
        raise InvalidEmailAddress(f"{shown!r} must contain exactly one '@'")

    local, _, domain = value.lower().partition("@")
    if not local or len(local) > 64:
        raise InvalidEmailAddress(f"{shown!r} needs 1 to 64 characters before the '@'")
    if not set(local) <= _LOCAL_CHARACTERS or local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidEmailAddress(f"{shown!r} has characters or dots in the wrong place before the '@'")

    domain = domain.rstrip(".") if domain.endswith(".") and not domain.endswith("..") else domain
    labels = domain.split(".")
    if len(domain) > 253 or len(labels) < 2:
        raise InvalidEmailAddress(f"{shown!r} needs a domain such as example.com after the '@'")
    for label in labels:
        if not label or len(label) > 63 or not set(label) <= _DOMAIN_CHARACTERS:
            raise InvalidEmailAddress(f"{shown!r} has an invalid domain label {label!r}")
        if label.startswith("-") or label.endswith("-"):
            raise InvalidEmailAddress(f"{shown!r} has a domain label that starts or ends with '-'")
    if labels[-1].isdigit():
        raise InvalidEmailAddress(f"{shown!r} ends in a numeric top-level domain")
    return f"{local}@{domain}"


def mask_email(address: str) -> str:
    """Return `address` with all but the first character of the local part hidden, for pages and logs."""
    local, at, domain = address.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


_ADDRESS_IN_TEXT = re.compile(r"[^\s'\"<>()@]+@[^\s'\"<>()@]+")


def mask_emails_in(text: str) -> str:
    """Return `text` with every address-like word masked by `mask_email`, for messages that go to logs."""
    return _ADDRESS_IN_TEXT.sub(lambda match: mask_email(match.group(0)), text)
