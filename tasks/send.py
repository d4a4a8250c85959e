"""Send one batch of one email step: claim the ledger keys, render, deliver, record each outcome.

Every flow that emails leads calls `send_email_batch` from its own Prefect task,
so all of them share the ledger protocol of tasks.ledger and docs/delivery.md.
A batch's keys are claimed as `queued` in one commit before any message goes out.
Each message is marked `sending` in a commit of its own just before the SMTP
transaction, and its outcome is committed just after it. So a worker killed at
any moment leaves at most one send whose outcome is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlmodel import Session, col, select

from leadflow.clock import now, wall_clock
from leadflow.errors import CampaignError, DeliveryError, TemplateRenderError
from leadflow.settings import Settings
from models import Campaign, Lead, SendStatus, SuppressionReason, session_scope
from tasks.deliver import MailServerUnavailable, Mailer, open_mailer
from tasks.emails import unsubscribe_url
from tasks.ledger import Claim, Outcome, claim_sends, mark_handed_over, record_outcomes, release_queued
from tasks.liveness import current_owner
from tasks.render_email import RenderedEmail, build_message
from tasks.suppression import listed_reasons, mark_listed_leads, suppress_leads
from tasks.throttle import Pacer, connection_slot

MAX_BACKOFF = timedelta(hours=1)
DRY_RUN_MESSAGE_ID = "<dry-run@localhost>"


class BatchResult(BaseModel):
    """Counts of one batch, by ledger outcome."""

    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    """Deferral replies (4xx, or no server) in this batch; a later retry in the same run may still send them."""
    bounced: int = 0
    failed: int = 0
    """Sends that failed for a reason waiting will not fix (a template error, a rejected message)."""
    ambiguous: int = 0
    suppressed: int = 0
    """Leads found on the suppression list at send time and left out."""
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
    recipient: Callable[[Lead], str] | None = None
    """For internal notices about a lead (the sales hand-off): the colleague's address to send to.

    Such an email carries no unsubscribe headers, ignores the suppression list,
    and a bounce does not suppress the lead, because the lead never receives it.
    """

    def address_for(self, lead: Lead) -> str:
        return self.recipient(lead) if self.recipient is not None else lead.email


def display_name(lead: Lead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


def _build(step: EmailStep, lead: Lead, *, settings: Settings, message_id: str, at: datetime) -> object:
    internal = step.recipient is not None
    return build_message(
        step.render(lead),
        sender_name=settings.sender_name,
        sender_address=settings.sender_address,
        recipient_name="" if internal else display_name(lead),
        recipient_address=step.address_for(lead),
        message_id=message_id,
        unsubscribe_url=None if internal else unsubscribe_url(lead.id or 0, settings),
        date=at,
    )


def retry_delay(attempts: int, settings: Settings) -> timedelta:
    """Return the backoff before the next try of a send deferred on its `attempts`-th try: doubling, at most an hour."""
    return min(timedelta(seconds=settings.retry_backoff_seconds * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _leave_out_suppressed(leads: dict[int, Lead], lead_ids: list[int], *, session: Session, at: datetime) -> list[int]:
    """Return `lead_ids` without the leads whose address is on the suppression list, marking those leads suppressed."""
    listed = listed_reasons(session=session, emails=[leads[lead_id].email for lead_id in lead_ids])
    if not listed:
        return lead_ids
    mark_listed_leads(session=session, emails=list(listed), at=at)
    return [lead_id for lead_id in lead_ids if leads[lead_id].email not in listed]


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
    """Claim, render and deliver `step` for one batch of leads, recording each outcome as it comes.

    A lead whose ledger key is taken, or whose address is on the suppression list,
    is skipped. One lead's failure (a template error, a deferral, a rejected
    recipient, a dropped connection) is recorded and the batch goes on. An
    unreachable mail server releases the rest of the batch and raises
    `MailServerUnavailable`, so the caller's task can be retried.
    """
    result = BatchResult()
    started = now()
    owner = current_owner()

    with session_scope() as session:
        leads = {lead.id: lead for lead in session.exec(select(Lead).where(col(Lead.id).in_(lead_ids)))}
        eligible_ids = [lead_id for lead_id in lead_ids if lead_id in leads and step.is_eligible(leads[lead_id])]
        if dry_run:
            claims = []
        else:
            allowed_ids = (
                eligible_ids
                if step.recipient is not None
                else _leave_out_suppressed(leads, eligible_ids, session=session, at=started)  # type: ignore[arg-type]
            )
            result.suppressed = len(eligible_ids) - len(allowed_ids)
            campaign = session.exec(
                select(Campaign).where(Campaign.kind == step.campaign_kind, Campaign.name == campaign_name)
            ).first()
            if campaign is None:
                raise CampaignError(f"campaign {step.campaign_kind}/{campaign_name} does not exist; launch it again")
            claims = claim_sends(
                session=session, campaign=campaign, lead_ids=allowed_ids, step=step.step, actor=actor, owner=owner,
                at=started, wall_time=wall_clock(), domain=settings.sender_domain, max_attempts=settings.max_send_attempts,
            )
    # The claims are committed as `queued` before any message goes out: no other
    # worker can claim them now, and if this process dies they are released again.

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
    result.not_claimed = len(lead_ids) - len(claims) - result.suppressed
    deliver_claims(step, claims, leads, settings=settings, owner=owner, logger=logger, result=result)  # type: ignore[arg-type]
    return result


def deliver_claims(
    step: EmailStep,
    claims: list[Claim],
    leads: dict[int, Lead],
    *,
    settings: Settings,
    owner: str,
    logger: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    result: BatchResult,
) -> None:
    """Render and hand over each claimed send, recording its outcome in the ledger and counting it in `result`.

    `leads` maps each claim's lead id to its lead. Raises `MailServerUnavailable`
    after releasing the claims not yet handed over.
    """
    pacer = Pacer(settings.send_rate_per_second)
    with connection_slot(settings), open_mailer(settings) as mailer:
        for index, claim in enumerate(claims):
            lead = leads[claim.lead_id]
            try:
                message = _build(step, lead, settings=settings, message_id=claim.message_id, at=now())
            except (TemplateRenderError, ValueError) as exc:
                logger.error("lead %s: the %s email could not be built: %s", lead.id, step.step, exc)
                _record(Outcome(claim.ledger_id, SendStatus.FAILED, now(), str(exc)), lead, step=step, result=result)
                continue

            pacer.wait(len(claims) - index)
            with session_scope() as session:
                handed_over = mark_handed_over(session=session, ledger_id=claim.ledger_id, owner=owner, wall_time=wall_clock())
            if not handed_over:
                logger.warning("lead %s: the ledger row is no longer queued for this worker; not sent", lead.id)
                result.not_claimed += 1
                continue

            try:
                outcome = _hand_over(mailer, message, step.address_for(lead), claim, settings=settings)
            except MailServerUnavailable as exc:
                deferred = Outcome(
                    claim.ledger_id, SendStatus.DEFERRED, now(), str(exc),
                    next_attempt_at=wall_clock() + retry_delay(claim.attempts, settings),
                )
                _record(deferred, lead, step=step, result=result)
                rest = [later.ledger_id for later in claims[index + 1 :]]
                with session_scope() as session:
                    release_queued(session=session, ledger_ids=rest, reason=f"not sent: {exc}")
                logger.warning("%s; 1 email deferred, %d released for a retry", exc, len(rest))
                raise
            if outcome.status not in (SendStatus.SENT, SendStatus.DEFERRED):
                logger.warning("lead %s: %s (%s)", lead.id, outcome.error, outcome.status.value)
            _record(outcome, lead, step=step, result=result)
    if result.deferred:
        logger.warning("%d emails of this batch deferred by the server; they are retried after a backoff", result.deferred)


def _hand_over(mailer: Mailer, message: object, recipient: str, claim: Claim, *, settings: Settings) -> Outcome:
    """Send one message and return its outcome; `MailServerUnavailable` propagates."""
    try:
        mailer.send(message, sender=settings.sender_address, recipient=recipient)  # type: ignore[arg-type]
    except MailServerUnavailable:
        raise
    except DeliveryError as exc:
        status = SendStatus(exc.outcome)
        retry_at = wall_clock() + retry_delay(claim.attempts, settings) if status is SendStatus.DEFERRED else None
        return Outcome(claim.ledger_id, status, now(), str(exc), exc.smtp_code, next_attempt_at=retry_at)
    return Outcome(claim.ledger_id, SendStatus.SENT, now())


def _record(outcome: Outcome, lead: Lead, *, step: EmailStep, result: BatchResult) -> None:
    """Commit one outcome, suppressing the lead in the same transaction when it bounced, and count it."""
    with session_scope() as session:
        record_outcomes(session=session, outcomes=[outcome])
        if outcome.status is SendStatus.BOUNCED and step.recipient is None:
            stored = session.get(Lead, lead.id)
            if stored is not None:
                suppress_leads(
                    session=session, leads=[stored], reason=SuppressionReason.HARD_BOUNCE,
                    note=f"hard bounce on the {step.step} email", at=outcome.at,
                )
    setattr(result, outcome.status.value, getattr(result, outcome.status.value) + 1)


def retry_when_server_unavailable(task: object, task_run: object, state: object) -> bool:
    """Retry a batch only when the mail server could not be reached; other errors will not heal by waiting."""
    try:
        state.result()  # type: ignore[attr-defined]
    except MailServerUnavailable:
        return True
    except Exception:
        return False
    return False
