"""The trial-invite email: parsed back, checked part by part."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from leadflow.errors import TemplateRenderError
from leadflow.settings import Settings
from models import Lead
from tasks.emails import email_environment, render_trial_invite, unsubscribe_url
from tasks.render_email import (
    RenderedEmail,
    build_message,
    compose_message,
    get_environment,
    make_message_id,
    render_email,
    serialize_message,
    single_line,
)

# Rendering reads the settings and the templates, never the database.
pytestmark = pytest.mark.no_database

MOMENT = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def invite_for(lead: Lead, settings: Settings) -> EmailMessage:
    rendered = render_trial_invite(lead, campaign="spring", settings=settings, environment=email_environment(settings))
    built = compose_message(
        rendered,
        sender_name=settings.sender_name,
        sender_address=settings.sender_address,
        recipient_name=f"{lead.first_name or ''} {lead.last_name or ''}",
        recipient_address=lead.email,
        message_id=make_message_id(campaign_public_id="c1", lead_id=lead.id or 0, step="trial-invite", domain="example.com"),
        unsubscribe_url=unsubscribe_url(lead.id or 0, settings),
        date=MOMENT,
    )
    parsed = email.message_from_bytes(built.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_invite_is_multipart_alternative(settings: Settings) -> None:
    message = invite_for(Lead(id=7, email="ann@example.com", first_name="Ann", company="Acme"), settings)

    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]


def test_invite_headers(settings: Settings) -> None:
    message = invite_for(Lead(id=7, email="ann@example.com", first_name="Ann", last_name="Lee"), settings)

    assert message["To"].addresses[0].addr_spec == "ann@example.com"
    assert message["To"].addresses[0].display_name == "Ann Lee"
    assert message["Subject"] == "Ann, try Example Analytics free for 7 days"
    assert message["List-Unsubscribe"] == f"<{unsubscribe_url(7, settings)}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"].endswith("@example.com>")


def test_invite_body_greets_and_links(settings: Settings) -> None:
    message = invite_for(Lead(id=7, email="ann@example.com", first_name="Ann", company="Acme"), settings)
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()

    for body in (text, html):
        assert "Hi Ann," in body
        assert unsubscribe_url(7, settings) in body
        assert settings.sender_postal_address in body
        assert "http://127.0.0.1:8000/trial?ref=v1.trial.7." in body


def test_invite_without_first_name_greets_generically(settings: Settings) -> None:
    message = invite_for(Lead(id=8, email="x@example.com"), settings)

    assert "Hi there," in message.get_body(("plain",)).get_content()
    assert message["Subject"].startswith("Hello, try")


def test_html_part_escapes_lead_fields(settings: Settings) -> None:
    message = invite_for(Lead(id=9, email="x@example.com", first_name="<b>Ann</b>", company="A&B <script>"), settings)
    html = message.get_body(("html",)).get_content()

    assert "<script>" not in html
    assert "A&amp;B &lt;script&gt;" in html
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html


def test_line_breaks_never_reach_headers(settings: Settings) -> None:
    message = invite_for(Lead(id=10, email="x@example.com", first_name="Ann\r\nBcc: victim@example.org"), settings)

    assert message["Bcc"] is None
    assert "\n" not in message["Subject"]
    assert "\n" not in str(message["To"])


def test_long_unsubscribe_header_is_not_encoded(settings: Settings) -> None:
    message = invite_for(Lead(id=123456789, email="x@example.com"), settings)

    assert "=?" not in message["List-Unsubscribe"]


def test_message_id_is_stable_per_key() -> None:
    first = make_message_id(campaign_public_id="c1", lead_id=1, step="trial-invite", domain="example.com")
    again = make_message_id(campaign_public_id="c1", lead_id=1, step="trial-invite", domain="example.com")
    other_lead = make_message_id(campaign_public_id="c1", lead_id=2, step="trial-invite", domain="example.com")
    other_campaign = make_message_id(campaign_public_id="c2", lead_id=1, step="trial-invite", domain="example.com")

    assert first == again
    assert len({first, other_lead, other_campaign}) == 3


def test_missing_variable_fails_loudly(tmp_path: Path) -> None:
    folder = tmp_path / "emails" / "broken"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Hello {{ lead.first_name }}")
    (folder / "body.txt").write_text("Your code: {{ discount_code }}")
    (folder / "body.html").write_text("<p>{{ lead.first_name }}</p>")
    environment = get_environment(tmp_path)

    with pytest.raises(TemplateRenderError) as caught:
        render_email(environment, "broken", {"lead": {"first_name": "Ann"}})

    assert "broken/body.txt" in str(caught.value)
    assert "discount_code" in str(caught.value)


# Text without control characters other than line breaks and tabs, as in templates and lead fields.
_TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029") | st.sampled_from("\n\t.= "))
_NAMES = _TEXT.map(lambda value: value[:80])


def _parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text.replace("\r\n", "\n"), html.replace("\r\n", "\n")


def _display_name(data: bytes, header: str) -> str:
    """Return the display name of an address header, decoding RFC 2047 words as the RFC specifies.

    The `email` package's modern parser puts a space between two encoded words
    of one display name when the header is folded between them; RFC 2047 and
    mail clients join them. The legacy decoder follows the RFC.
    """
    raw = " ".join(str(email.message_from_bytes(data, policy=policy.compat32)[header]).split())
    phrase = raw.rpartition(" <")[0]
    if phrase.startswith("=?"):
        return str(make_header(decode_header(phrase)))
    parsed = email.message_from_bytes(data, policy=policy.default)
    return str(parsed[header].addresses[0].display_name)


@hypothesis_settings(max_examples=100, deadline=None)
@given(subject=_TEXT.filter(lambda value: value.strip()), name=_NAMES, sender=_NAMES, text=_TEXT, html=_TEXT)
def test_fast_builder_matches_email_package(subject: str, name: str, sender: str, text: str, html: str) -> None:
    """compose_message and build_message give messages that parse back to the same headers and parts."""
    arguments = {
        "sender_name": sender,
        "sender_address": "news@example.com",
        "recipient_name": name,
        "recipient_address": "ann.lee+tag@example.com",
        "message_id": "<4f1c7a@example.com>",
        "unsubscribe_url": "https://example.com/unsubscribe/v1.unsubscribe.7.abc",
        "date": MOMENT,
    }
    rendered = RenderedEmail(subject=subject, text=text, html=html)
    fast_bytes = compose_message(rendered, **arguments).data
    fast = email.message_from_bytes(fast_bytes, policy=policy.default)
    reference = email.message_from_bytes(serialize_message(build_message(rendered, **arguments)), policy=policy.default)

    assert isinstance(fast, EmailMessage) and isinstance(reference, EmailMessage)
    for header in ("Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version"):
        assert fast[header] == reference[header], header
    assert fast["To"].addresses[0].addr_spec == "ann.lee+tag@example.com"
    assert fast["From"].addresses[0].addr_spec == "news@example.com"
    assert _display_name(fast_bytes, "To") == single_line(name)
    assert _display_name(fast_bytes, "From") == single_line(sender)
    assert fast.get_content_type() == "multipart/alternative"
    assert _parts(fast) == _parts(reference)
    assert not fast.defects and not any(part.defects for part in fast.walk())
    # Seven-bit and within SMTP's line limit, so any server takes it without 8BITMIME.
    assert fast_bytes.isascii()
    assert max(len(line) for line in fast_bytes.split(b"\r\n")) <= 998
    assert b"\n" not in fast_bytes.replace(b"\r\n", b"")


def test_fast_builder_rejects_header_injection() -> None:
    with pytest.raises(ValueError, match="cannot go in an email header"):
        compose_message(
            RenderedEmail(subject="Hi", text="x", html="x"),
            sender_name="", sender_address="news@example.com", recipient_name="",
            recipient_address="ann@example.com>\r\nBcc: victim@example.org", message_id="<m@example.com>",
            unsubscribe_url=None, date=MOMENT,
        )


def test_encoded_lookalike_stays_literal() -> None:
    literal = "=?utf-8?b?QWRtaW4=?="
    data = compose_message(
        RenderedEmail(subject=literal, text="x", html="x"),
        sender_name=literal, sender_address="news@example.com", recipient_name="", recipient_address="ann@example.com",
        message_id="<m@example.com>", unsubscribe_url=None, date=MOMENT,
    ).data
    parsed = email.message_from_bytes(data, policy=policy.default)

    assert parsed["Subject"] == literal
    assert _display_name(data, "From") == literal
