"""Send one batch of one email step: claim the ledger keys, render, deliver, record the outcomes.

Every flow that emails leads calls `send_email_batch` from its own Prefect task,
so all of them share the ledger rule: a key is claimed and committed before its
message goes out, and a key that is taken is never sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import col, select

from leadflow.clock import now
from leadflow.errors import CampaignError, DeliveryError, TemplateRenderError
from leadflow.settings import Settings
from models import Campaign, Lead, SendStatus, session_scope
from tasks.audience import suppress_leads
from tasks.deliver import MailServerUnavailable, open_mailer
from tasks.emails import unsubscribe_url
from tasks.ledger import Outcome, claim_sends, record_outcomes
from tasks.render_email import RenderedEmail, build_message

DRY_RUN_MESSAGE_ID = "<dry-run@localhost>"


class BatchResult(BaseModel):
    """Counts of one batch, by ledger outcome."""

    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    bounced: int = 0
    failed: int = 0
    ambiguous: int = 0
    not_claimed: int = 0
    """Leads already handled by another run, or no longer eligible, by the time the batch ran."""
    rendered: int = 0
    """Dry runs only: emails rendered and built without sending."""

    def add(self, other: BatchResult) -> None:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class EmailStep:
    """One kind of email and the rules for sending it."""

    campaign_kind: str
    step: str
    """Third part of the ledger key, such as `trial-invite` or `survey`."""
    render: Callable[[Lead], RenderedEmail]
    is_eligible: Callable[[Lead], bool]
    """Checked again at send time, because a lead can change between selection and sending."""


def display_name(lead: Lead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


def _build(step: EmailStep, lead: Lead, *, settings: Settings, message_id: str, at: datetime) -> object:
    return build_message(
        step.render(lead),
        sender_name=settings.sender_name,
        sender_address=settings.sender_address,
        recipient_name=display_name(lead),
        recipient_address=lead.email,
        message_id=message_id,
        unsubscribe_url=unsubscribe_url(lead.id or 0, settings),
        date=at,
    )


def send_email_batch(
    step: EmailStep,
    *,
    campaign_name: str,
    lead_ids: list[int],
    settings: Settings,
    actor: str,
    logger: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    dry_run: bool = False,
) -> BatchResult:
    """Claim, render and deliver `step` for one batch of leads, then record every outcome.

    A lead whose ledger key is taken is skipped. One lead's failure (a template
    error, a rejected recipient) is recorded and the batch goes on. An unreachable
    mail server defers the rest of the batch and raises `MailServerUnavailable`
    after recording, so the caller's task can be retried.
    """
    result = BatchResult()
    started = now()

    with session_scope() as session:
        leads = {lead.id: lead for lead in session.exec(select(Lead).where(col(Lead.id).in_(lead_ids)))}
        eligible_ids = [lead_id for lead_id in lead_ids if lead_id in leads and step.is_eligible(leads[lead_id])]
        if dry_run:
            claims = []
        else:
            campaign = session.exec(
                select(Campaign).where(Campaign.kind == step.campaign_kind, Campaign.name == campaign_name)
            ).first()
            if campaign is None:
                raise CampaignError(f"campaign {step.campaign_kind}/{campaign_name} does not exist; launch it again")
            claims = claim_sends(
                session=session, campaign=campaign, lead_ids=eligible_ids, step=step.step, actor=actor,
                at=started, domain=settings.sender_domain,
            )
    # The claims are committed before any message goes out: a crash from here on
    # leaves them in `sending`, where no later run can claim them again.

    if dry_run:
        for lead_id in eligible_ids:
            try:
                _build(step, leads[lead_id], settings=settings, message_id=DRY_RUN_MESSAGE_ID, at=started)
                result.rendered += 1
            except TemplateRenderError as exc:
                result.failed += 1
                logger.error("lead %s: %s", lead_id, exc)
        result.not_claimed = len(lead_ids) - len(eligible_ids)
        return result

    result.claimed = len(claims)
    result.not_claimed = len(lead_ids) - len(claims)
    outcomes: list[Outcome] = []
    unavailable: MailServerUnavailable | None = None

    with open_mailer(settings) as mailer:
        for claim in claims:
            lead = leads[claim.lead_id]
            if unavailable is not None:
                outcomes.append(Outcome(claim.ledger_id, SendStatus.DEFERRED, now(), str(unavailable)))
                continue
            try:
                message = _build(step, lead, settings=settings, message_id=claim.message_id, at=now())
            except (TemplateRenderError, ValueError) as exc:
                logger.error("lead %s: the %s email could not be built: %s", lead.id, step.step, exc)
                outcomes.append(Outcome(claim.ledger_id, SendStatus.FAILED, now(), str(exc)))
                continue
            try:
                mailer.send(message, sender=settings.sender_address, recipient=lead.email)  # type: ignore[arg-type]
            except MailServerUnavailable as exc:
                unavailable = exc
                outcomes.append(Outcome(claim.ledger_id, SendStatus.DEFERRED, now(), str(exc)))
                continue
            except DeliveryError as exc:
                if exc.outcome != SendStatus.DEFERRED:
                    logger.warning("lead %s: %s (%s)", lead.id, exc, exc.outcome)
                outcomes.append(Outcome(claim.ledger_id, SendStatus(exc.outcome), now(), str(exc), exc.smtp_code))
                continue
            outcomes.append(Outcome(claim.ledger_id, SendStatus.SENT, now()))

    lead_of_ledger_row = {claim.ledger_id: claim.lead_id for claim in claims}
    bounced_ids = [lead_of_ledger_row[item.ledger_id] for item in outcomes if item.status is SendStatus.BOUNCED]
    with session_scope() as session:
        record_outcomes(session=session, outcomes=outcomes)
        if bounced_ids:
            suppress_leads(session=session, lead_ids=bounced_ids, reason=f"hard bounce on the {step.step} email", at=now())
    for outcome in outcomes:
        setattr(result, outcome.status.value, getattr(result, outcome.status.value) + 1)

    if unavailable is not None:
        logger.warning("%s; %d emails of this batch deferred", unavailable, result.deferred)
        raise unavailable
    return result


def retry_when_server_unavailable(task: object, task_run: object, state: object) -> bool:
    """Retry a batch only when the mail server could not be reached; other errors will not heal by waiting."""
    try:
        state.result()  # type: ignore[attr-defined]
    except MailServerUnavailable:
        return True
    except Exception:
        return False
    return False
