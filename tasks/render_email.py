"""Render the Jinja email templates and build standard MIME messages from them."""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, select_autoescape

from leadflow.errors import ConfigurationError, TemplateRenderError

# Every email is a folder under templates/emails/ holding subject.txt, body.txt and body.html.

# Serialisation policy for delivery: CRLF line ends, and headers folded only
# past RFC 5322's 998-character limit. The default of 78 would encode a long
# List-Unsubscribe URL as an RFC 2047 word, which mail clients cannot follow.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)

# A UUID namespace for Message-IDs, so the same ledger key always gives the same id.
_MESSAGE_ID_NAMESPACE = uuid.UUID("7c6f1f3e-3b0a-4a9e-9d67-1c1f6a8e2b55")


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=4)
def get_environment(templates_dir: Path) -> Environment:
    """Return the one Jinja environment for `templates_dir`: strict about missing variables, escaping HTML."""
    emails_dir = templates_dir / "emails"
    if not emails_dir.is_dir():
        raise ConfigurationError(
            f"email templates not found in {emails_dir}; set LEADFLOW_TEMPLATES_DIR to the folder that contains emails/"
        )
    return Environment(
        loader=FileSystemLoader(emails_dir),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        keep_trailing_newline=True,
        # A template is loaded once per process; checking its file's time on every render cost a stat call per email.
        auto_reload=False,
    )


def render_email(environment: Environment, email: str, context: Mapping[str, Any]) -> RenderedEmail:
    """Render the subject, text and HTML of the email folder `email` with `context`.

    The subject is rendered first and passed to the bodies as `subject`. Raises
    `TemplateRenderError` naming the template and the cause, for example a
    variable the template uses but the context lacks.
    """

    def render_part(part: str, values: Mapping[str, Any]) -> str:
        name = f"{email}/{part}"
        try:
            return environment.get_template(name).render(values)
        except TemplateError as exc:
            raise TemplateRenderError(f"template {name} failed to render: {exc}; fix the template or its data") from exc

    subject = single_line(render_part("subject.txt", context))
    if not subject:
        raise TemplateRenderError(f"template {email}/subject.txt rendered an empty subject")
    with_subject = {**context, "subject": subject}
    return RenderedEmail(
        subject=subject, text=render_part("body.txt", with_subject), html=render_part("body.html", with_subject)
    )


def make_message_id(*, campaign_public_id: str, lead_id: int, step: str, domain: str) -> str:
    """Return the Message-ID of one ledger key; the same key always gives the same id."""
    unique = uuid.uuid5(_MESSAGE_ID_NAMESPACE, f"{campaign_public_id}/{lead_id}/{step}")
    return f"<{unique}@{domain}>"


def single_line(value: str | None) -> str:
    """Collapse a header value onto one line: CR, LF and other whitespace runs become one space."""
    return " ".join((value or "").split())


def build_message(
    rendered: RenderedEmail,
    *,
    sender_name: str,
    sender_address: str,
    recipient_name: str,
    recipient_address: str,
    message_id: str,
    unsubscribe_url: str | None,
    date: datetime,
) -> EmailMessage:
    """Build a multipart/alternative message with RFC 8058 one-click unsubscribe headers.

    `unsubscribe_url` is None only for internal notices (the sales hand-off), which
    go to colleagues rather than to a mailing list.
    """
    message = EmailMessage()
    message["From"] = Address(display_name=single_line(sender_name), addr_spec=sender_address)
    message["To"] = Address(display_name=single_line(recipient_name), addr_spec=recipient_address)
    message["Subject"] = single_line(rendered.subject)
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if unsubscribe_url is not None:
        message["List-Unsubscribe"] = f"<{single_line(unsubscribe_url)}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def serialize_message(message: EmailMessage) -> bytes:
    """Return the message as it goes on the wire and into .eml files."""
    return message.as_bytes(policy=WIRE_POLICY)


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready to hand over: its Message-ID and its bytes, with CRLF line ends and no dot-stuffing."""

    message_id: str
    data: bytes

    @classmethod
    def from_email(cls, message: EmailMessage) -> OutgoingMessage:
        return cls(message_id=str(message["Message-ID"]), data=serialize_message(message))


# Characters a display name may contain without quotes: RFC 5322 atext and spaces.
_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~ ")
_PRINTABLE_ASCII = frozenset(chr(code) for code in range(0x20, 0x7F))
_ENCODED_WORD_TEXT = 45
"""Bytes of UTF-8 per RFC 2047 encoded word: 60 base64 characters, 72 with the markers, under the 75 allowed."""
_MAX_HEADER_LINE = 998


def _encoded_words(value: str) -> str:
    """Encode `value` as RFC 2047 base64 words, one per folded line, never splitting a character."""
    words: list[str] = []
    chunk = bytearray()
    for character in value:
        encoded = character.encode("utf-8")
        if len(chunk) + len(encoded) > _ENCODED_WORD_TEXT:
            words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
            chunk = bytearray()
        chunk += encoded
    if chunk:
        words.append(f"=?utf-8?b?{base64.b64encode(chunk).decode('ascii')}?=")
    return "\r\n ".join(words)


def _unstructured(value: str) -> str:
    """Return a header value as it goes on the wire: as it is when it is short printable ASCII, else encoded."""
    # Text that looks like an encoded word is encoded itself, so no reader decodes it by mistake.
    if _PRINTABLE_ASCII.issuperset(value) and len(value) <= _MAX_HEADER_LINE - 80 and "=?" not in value:
        return value
    return _encoded_words(value)


def _mailbox(name: str, address: str) -> str:
    """Return `Name <address>`, quoting or encoding the name as RFC 5322 and RFC 2047 require."""
    if not _PRINTABLE_ASCII.issuperset(address) or any(character in address for character in ' <>"'):
        raise ValueError(f"{address!r} cannot go in an email header; fix the address")
    if not name:
        return address
    if "=?" in name or not _PRINTABLE_ASCII.issuperset(name):
        return f"{_encoded_words(name)} <{address}>"
    if _ATEXT.issuperset(name):
        return f"{name} <{address}>"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>'


def _body_part(content_type: str, text: str) -> tuple[bytes, bytes]:
    """Return the headers and the encoded body of one text part, the body ending in CRLF.

    The CRLF before the next boundary belongs to the boundary, so the caller
    adds one more to keep the part's last line break.
    """
    # Bytes split only at CR and LF, where str.splitlines would also split at U+2028 and the like.
    lines = text.encode("utf-8").splitlines()
    data = b"\r\n".join(lines) + b"\r\n"
    if data.isascii() and max(map(len, lines), default=0) <= _MAX_HEADER_LINE:
        encoding = b"7bit"
    else:
        # Quoted-printable keeps lines under 77 characters and every byte 7-bit.
        data = binascii.b2a_qp(data, istext=True)
        encoding = b"quoted-printable"
    headers = b"Content-Type: " + content_type.encode("ascii") + b'; charset="utf-8"\r\nContent-Transfer-Encoding: ' + encoding
    return headers, data


def compose_message(
    rendered: RenderedEmail,
    *,
    sender_name: str,
    sender_address: str,
    recipient_name: str,
    recipient_address: str,
    message_id: str,
    unsubscribe_url: str | None,
    date: datetime,
) -> OutgoingMessage:
    """Write the message of `build_message` straight to bytes, for sending many of them.

    The result is the same standard multipart/alternative message that
    `build_message` builds, with the same headers and parts, but it skips the
    header parsing and refolding of the `email` package, which cost about
    1.5 ms per message. Tests parse both back and compare them.
    """
    if not _PRINTABLE_ASCII.issuperset(message_id):
        raise ValueError(f"the Message-ID {message_id!r} must be printable ASCII")
    headers = [
        f"From: {_mailbox(single_line(sender_name), sender_address)}",
        f"To: {_mailbox(single_line(recipient_name), recipient_address)}",
        f"Subject: {_unstructured(single_line(rendered.subject))}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: {message_id}",
    ]
    if unsubscribe_url is not None:
        link = single_line(unsubscribe_url)
        if not _PRINTABLE_ASCII.issuperset(link) or len(link) > _MAX_HEADER_LINE - 40:
            raise ValueError(f"the unsubscribe link {link!r} must be printable ASCII and shorter than 950 characters")
        headers += [f"List-Unsubscribe: <{link}>", "List-Unsubscribe-Post: List-Unsubscribe=One-Click"]
    text_headers, text_body = _body_part("text/plain", rendered.text)
    html_headers, html_body = _body_part("text/html", rendered.html)

    boundary = "=_lf_" + uuid.uuid5(_MESSAGE_ID_NAMESPACE, message_id).hex
    marker = boundary.encode("ascii")
    while marker in text_body or marker in html_body:
        marker += b"_"
    boundary = marker.decode("ascii")
    headers += ["MIME-Version: 1.0", f'Content-Type: multipart/alternative; boundary="{boundary}"']

    delimiter = b"--" + marker
    data = b"".join(
        (
            "\r\n".join(headers).encode("ascii"), b"\r\n\r\n",
            delimiter, b"\r\n", text_headers, b"\r\n\r\n", text_body,
            b"\r\n", delimiter, b"\r\n", html_headers, b"\r\n\r\n", html_body,
            b"\r\n", delimiter, b"--\r\n",
        )
    )
    return OutgoingMessage(message_id=message_id, data=data)
