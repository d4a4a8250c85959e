"""One function per email: each returns the rendered subject, text and HTML for one lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment

from leadflow.settings import Settings
from leadflow.tokens import sign_token
from models import Lead
from tasks.render_email import RenderedEmail, get_environment, render_email

TRIAL_INVITE = "trial_invite"
SURVEY = "survey"


def email_environment(settings: Settings) -> Environment:
    return get_environment(settings.templates_dir)


def unsubscribe_url(lead_id: int, settings: Settings) -> str:
    """Return the link for every footer and List-Unsubscribe header; it never expires, because anti-spam laws require a working opt-out."""
    token = sign_token(key=settings.secret_key.get_secret_value(), purpose="unsubscribe", lead_id=lead_id)
    return f"{settings.public_url}/unsubscribe/{token}"


def trial_url(lead_id: int, campaign: str, settings: Settings) -> str:
    """Return the trial sign-up link; its `ref` token lets the product report the sign-up for this lead."""
    token = sign_token(key=settings.secret_key.get_secret_value(), purpose="trial", lead_id=lead_id)
    return f"{settings.resolved_trial_url}?{urlencode({'ref': token, 'utm_campaign': campaign})}"


def base_context(lead: Lead, settings: Settings) -> dict[str, Any]:
    """Variables every email template can use; missing profile fields are empty strings."""
    if lead.id is None:
        raise ValueError("the lead must be saved before an email is rendered for it")
    return {
        "lead_id": lead.id,
        "lead": {
            "email": lead.email,
            "first_name": lead.first_name or "",
            "last_name": lead.last_name or "",
            "company": lead.company or "",
            "title": lead.title or "",
        },
        "sender": {
            "name": settings.sender_name,
            "address": settings.sender_address,
            "postal_address": settings.sender_postal_address,
        },
        "product_name": settings.product_name,
        "unsubscribe_url": unsubscribe_url(lead.id, settings),
    }


def render_trial_invite(lead: Lead, *, campaign: str, settings: Settings, environment: Environment) -> RenderedEmail:
    """Render the trial invitation for `lead` in campaign `campaign`."""
    context = base_context(lead, settings)
    context["trial_url"] = trial_url(context["lead_id"], campaign, settings)
    context["trial_days"] = settings.trial_days
    context["campaign"] = campaign
    return render_email(environment, TRIAL_INVITE, context)


def survey_link_expiry(trial_ends_at: datetime, settings: Settings) -> datetime:
    return trial_ends_at + timedelta(days=settings.survey_link_days)


def survey_url(lead_id: int, trial_ends_at: datetime, settings: Settings) -> str:
    """Return the signed link to this lead's survey: `<public URL>/survey/<token>`.

    The token names the lead and the purpose `survey` and expires
    `LEADFLOW_SURVEY_LINK_DAYS` after the trial ends.
    """
    token = sign_token(
        key=settings.secret_key.get_secret_value(),
        purpose="survey",
        lead_id=lead_id,
        expires_at=survey_link_expiry(trial_ends_at, settings),
    )
    return f"{settings.public_url}/survey/{token}"


def render_survey(lead: Lead, *, settings: Settings, environment: Environment) -> RenderedEmail:
    """Render the survey email for `lead`, whose trial end must be known. Dates are shown in UTC."""
    if lead.trial_ends_at is None:
        raise ValueError(f"lead {lead.id} has no trial end, so it cannot get the survey email")
    ends = lead.trial_ends_at.astimezone(UTC)
    context = base_context(lead, settings)
    context["survey_url"] = survey_url(context["lead_id"], ends, settings)
    context["trial_end_date"] = f"{ends:%A} {ends.day} {ends:%B}"
    context["trial_end_time"] = f"{ends:%H:%M} UTC"
    expires = survey_link_expiry(ends, settings)
    context["survey_expires_date"] = f"{expires.day} {expires:%B %Y}"
    return render_email(environment, SURVEY, context)
