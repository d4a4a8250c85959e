"""Hand-off of each new SQL: an owner from the sales team, an email to that owner, and a signed CRM POST."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import func
from sqlmodel import Session, col, select

from leadflow.clock import now
from leadflow.settings import Settings
from models import Lead, LeadReview, SalesHandoff, Stage, SurveyResponse, session_scope
from tasks.emails import email_environment
from tasks.ledger import get_or_create_campaign
from tasks.render_email import RenderedEmail, render_email
from tasks.send import EmailStep, send_email_batch

HANDOFF_KIND = "sales-handoff"
HANDOFF_CAMPAIGN = "sales"
HANDOFF_STEP = "sales-handoff"
CRM_RETRY_DELAYS_SECONDS = (1.0, 4.0)
"""Pauses between CRM attempts; three attempts in all, and only after a timeout or a 5xx reply."""


@dataclass
class HandoffResult:
    assigned: int = 0
    emailed: int = 0
    email_failed: int = 0
    crm_sent: int = 0
    crm_failed: int = 0


def sqls_without_handoff(*, session: Session) -> list[int]:
    """Return the ids of SQLs that have no owner yet, oldest decision first."""
    statement = (
        select(Lead.id)
        .join(LeadReview, col(LeadReview.lead_id) == Lead.id)
        .where(
            col(Lead.stage) == Stage.SQL.value,
            ~select(SalesHandoff.id).where(col(SalesHandoff.lead_id) == Lead.id).exists(),
        )
        .order_by(col(LeadReview.decided_at), col(Lead.id))
    )
    return [lead_id for lead_id in session.exec(statement) if lead_id is not None]


def assign_owners(*, session: Session, lead_ids: list[int], team: list[str], at: datetime) -> int:
    """Give each lead an owner, taking the team in turn; a lead that has one keeps it.

    The turn continues from the number of hand-offs stored, so it is the same
    whether the leads arrive in one run or in many.
    """
    assigned = session.exec(select(func.count()).select_from(SalesHandoff)).one()
    count = 0
    for lead_id in lead_ids:
        if session.exec(select(SalesHandoff.id).where(SalesHandoff.lead_id == lead_id)).first() is not None:
            continue
        session.add(SalesHandoff(lead_id=lead_id, owner=team[assigned % len(team)], assigned_at=at))
        assigned += 1
        count += 1
    return count


def _handoff_context(lead: Lead, review: LeadReview, response: SurveyResponse | None, owner: str, settings: Settings) -> dict[str, Any]:
    trial = "not recorded"
    if lead.trial_started_at and lead.trial_ends_at:
        trial = f"{lead.trial_started_at:%Y-%m-%d} to {lead.trial_ends_at:%Y-%m-%d} (UTC)"
    decided = "by the rules" if review.decision == review.rule_decision else f"by {review.decided_by}"
    note = f"; note: {review.note}" if review.note else ""
    return {
        "lead": {
            "email": lead.email, "first_name": lead.first_name or "", "last_name": lead.last_name or "",
            "company": lead.company or "", "title": lead.title or "",
        },
        "review": review.explanation,
        "decision_text": f"qualified {decided} on {review.decided_at:%Y-%m-%d %H:%M} UTC{note}",
        "trial_dates": trial,
        "fit": response.fit if response else None,
        "pain_points": response.pain_points if response else None,
        "owner_name": owner.split("@", 1)[0],
        "sender": {"name": settings.sender_name, "address": settings.sender_address},
    }


def email_owners(*, lead_ids: list[int], settings: Settings, actor: str, logger: logging.Logger | logging.LoggerAdapter) -> tuple[int, int]:  # type: ignore[type-arg]
    """Send each lead's owner the hand-off email once, through the ledger; return (sent, not sent)."""
    if not lead_ids:
        return 0, 0
    environment = email_environment(settings)
    with session_scope() as session:
        get_or_create_campaign(session=session, kind=HANDOFF_KIND, name=HANDOFF_CAMPAIGN)
        details = {
            lead.id: (review, handoff, response)
            for lead, review, handoff, response in session.exec(
                select(Lead, LeadReview, SalesHandoff, SurveyResponse)
                .join(LeadReview, col(LeadReview.lead_id) == Lead.id)
                .join(SalesHandoff, col(SalesHandoff.lead_id) == Lead.id)
                .outerjoin(SurveyResponse, col(SurveyResponse.lead_id) == Lead.id)
                .where(col(Lead.id).in_(lead_ids))
            )
        }

    def render(lead: Lead) -> RenderedEmail:
        review, handoff, response = details[lead.id]
        return render_email(environment, "sales_handoff", _handoff_context(lead, review, response, handoff.owner, settings))

    step = EmailStep(
        campaign_kind=HANDOFF_KIND,
        step=HANDOFF_STEP,
        render=render,
        is_eligible=lambda lead: lead.id in details,
        recipient=lambda lead: details[lead.id][1].owner,
    )
    result = send_email_batch(
        step, campaign_name=HANDOFF_CAMPAIGN, lead_ids=lead_ids, settings=settings, actor=actor, logger=logger
    )
    return result.sent, result.claimed - result.sent


def sign_body(body: bytes, *, key: str, timestamp: int) -> str:
    """Return the signature header value: `v1=` and the hex HMAC-SHA256 of "<timestamp>." + body."""
    digest = hmac.new(key.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


def crm_payload(lead: Lead, review: LeadReview, owner: str) -> dict[str, Any]:
    return {
        "event": "lead.qualified",
        "event_id": f"lead-qualified-{lead.id}",
        "lead": {
            "id": lead.id, "email": lead.email, "first_name": lead.first_name, "last_name": lead.last_name,
            "company": lead.company, "title": lead.title,
        },
        "owner": owner,
        "review": review.explanation,
        "qualified_at": review.decided_at.isoformat(),
    }


def post_to_crm(
    payload: dict[str, Any], *, url: str, key: str, timeout: float, client: httpx.Client, sleep: Any = time.sleep
) -> tuple[bool, int, str | None]:
    """POST `payload` as signed JSON; retry only after a timeout or a 5xx reply. Return (ok, attempts, error)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    error: str | None = None
    for attempt in range(1, len(CRM_RETRY_DELAYS_SECONDS) + 2):
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Leadflow-Event-Id": str(payload["event_id"]),
            "X-Leadflow-Timestamp": str(timestamp),
            "X-Leadflow-Signature": sign_body(body, key=key, timestamp=timestamp),
        }
        try:
            response = client.post(url, content=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            error = f"timed out after {timeout:g} s ({type(exc).__name__})"
        except httpx.HTTPError as exc:
            return False, attempt, f"request failed: {exc}"
        else:
            if response.status_code < 300:
                return True, attempt, None
            error = f"the CRM replied {response.status_code}"
            if response.status_code < 500:
                return False, attempt, error
        if attempt <= len(CRM_RETRY_DELAYS_SECONDS):
            sleep(CRM_RETRY_DELAYS_SECONDS[attempt - 1])
    return False, len(CRM_RETRY_DELAYS_SECONDS) + 1, error


def notify_crm(*, lead_ids: list[int], settings: Settings, logger: logging.Logger | logging.LoggerAdapter) -> tuple[int, int]:  # type: ignore[type-arg]
    """POST each lead whose CRM status is not `sent` to the CRM webhook; return (sent, failed)."""
    if not settings.crm_webhook_url:
        return 0, 0
    sent = failed = 0
    with httpx.Client() as client:
        for lead_id in lead_ids:
            with session_scope() as session:
                row = session.exec(
                    select(Lead, LeadReview, SalesHandoff)
                    .join(LeadReview, col(LeadReview.lead_id) == Lead.id)
                    .join(SalesHandoff, col(SalesHandoff.lead_id) == Lead.id)
                    .where(col(Lead.id) == lead_id)
                ).first()
                if row is None or row[2].crm_status == "sent":
                    continue
                lead, review, handoff = row
                ok, attempts, error = post_to_crm(
                    crm_payload(lead, review, handoff.owner), url=settings.crm_webhook_url,
                    key=settings.secret_key.get_secret_value(), timeout=settings.crm_timeout_seconds, client=client,
                )
                handoff.crm_attempts += attempts
                handoff.crm_status = "sent" if ok else "failed"
                handoff.crm_sent_at = now() if ok else None
                handoff.crm_error = error[:1000] if error else None
                session.add(handoff)
            if ok:
                sent += 1
            else:
                failed += 1
                logger.warning("lead %s: the CRM webhook failed after %d attempts: %s", lead_id, attempts, error)
    return sent, failed
