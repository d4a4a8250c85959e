"""Render the Jinja email templates and build standard MIME messages from them."""

from __future__ import annotations

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
