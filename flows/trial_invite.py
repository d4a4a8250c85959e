"""Step 1 of the funnel: invite every subscriber who should get it to the free trial."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, Field
from sqlmodel import col, select

from leadflow.clock import now
from leadflow.errors import CampaignError, DeliveryError, TemplateRenderError
from leadflow.settings import get_settings
from models import Campaign, Lead, SendStatus, session_scope
from tasks.audience import count_invite_audience, lead_is_invitable, select_invite_batch, suppress_leads
from tasks.deliver import MailServerUnavailable, open_mailer
from tasks.emails import email_environment, render_trial_invite, unsubscribe_url
from tasks.ledger import (
    Outcome,
    claim_sends,
    count_by_status,
    get_or_create_campaign,
    mark_stale_sends_ambiguous,
    record_outcomes,
)
from tasks.render_email import build_message

STEP = "trial-invite"
CAMPAIGN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$"


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


class CampaignSummary(BaseModel):
    """Counts of one launch of a trial-invite campaign."""

    campaign: str
    dry_run: bool
    destination: str
    leads: int
    customers: int
    suppressed: int
    past_subscriber: int
    eligible: int
    already_handled: int
    this_run: BatchResult
    ledger: dict[str, int] = Field(default_factory=dict)
    """Ledger rows of the campaign by status after the run."""

    @property
    def incomplete(self) -> int:
        return self.this_run.failed + self.this_run.deferred


def _actor() -> str:
    run_id = flow_run.get_id()
    return f"flow-run:{run_id}" if run_id else "cli"


def _retry_when_server_unavailable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a batch only when the mail server could not be reached; other errors will not heal."""
    try:
        state.result()
    except MailServerUnavailable:
        return True
    except Exception:
        return False
    return False


def _display_name(lead: Lead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


@task(
    name="send-batch",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=_retry_when_server_unavailable,
    task_run_name="send-batch/{campaign_name}/{batch_number}",
)
def send_batch(campaign_name: str, batch_number: int, lead_ids: list[int], dry_run: bool = False) -> BatchResult:
    """Claim, render and deliver the trial invite for one batch of leads, then record every outcome.

    A lead whose ledger key another run has claimed is skipped. One lead's failure
    (a template error, a rejected recipient) is recorded and the batch goes on;
    an unreachable mail server defers the rest of the batch and raises
    `MailServerUnavailable`, so Prefect retries the batch.
    """
    logger = get_run_logger()
    settings = get_settings()
    environment = email_environment(settings)
    result = BatchResult()
    actor = _actor()
    started = now()

    with session_scope() as session:
        campaign = session.exec(select(Campaign).where(Campaign.kind == STEP, Campaign.name == campaign_name)).first()
        leads = {lead.id: lead for lead in session.exec(select(Lead).where(col(Lead.id).in_(lead_ids)))}
        eligible_ids = [lead_id for lead_id in lead_ids if lead_id in leads and lead_is_invitable(leads[lead_id])]
        if dry_run:
            claims = []
        else:
            if campaign is None:
                raise CampaignError(f"campaign {STEP}/{campaign_name} does not exist; launch it again")
            claims = claim_sends(
                session=session, campaign=campaign, lead_ids=eligible_ids, step=STEP, actor=actor,
                at=started, domain=settings.sender_domain,
            )
    # The claims are committed before any message goes out: a crash from here on
    # leaves them in `sending`, never free to be sent a second time.

    if dry_run:
        for lead_id in eligible_ids:
            lead = leads[lead_id]
            try:
                rendered = render_trial_invite(lead, campaign=campaign_name, settings=settings, environment=environment)
                build_message(
                    rendered, sender_name=settings.sender_name, sender_address=settings.sender_address,
                    recipient_name=_display_name(lead), recipient_address=lead.email,
                    message_id="<dry-run@localhost>", unsubscribe_url=unsubscribe_url(lead_id, settings), date=started,
                )
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
                rendered = render_trial_invite(lead, campaign=campaign_name, settings=settings, environment=environment)
                message = build_message(
                    rendered, sender_name=settings.sender_name, sender_address=settings.sender_address,
                    recipient_name=_display_name(lead), recipient_address=lead.email,
                    message_id=claim.message_id, unsubscribe_url=unsubscribe_url(lead.id or 0, settings), date=now(),
                )
            except (TemplateRenderError, ValueError) as exc:
                logger.error("lead %s: the invite could not be built: %s", lead.id, exc)
                outcomes.append(Outcome(claim.ledger_id, SendStatus.FAILED, now(), str(exc)))
                continue
            try:
                mailer.send(message, sender=settings.sender_address, recipient=lead.email)
            except MailServerUnavailable as exc:
                unavailable = exc
                outcomes.append(Outcome(claim.ledger_id, SendStatus.DEFERRED, now(), str(exc)))
                continue
            except DeliveryError as exc:
                if exc.outcome != "deferred":
                    logger.warning("lead %s: %s (%s)", lead.id, exc, exc.outcome)
                outcomes.append(Outcome(claim.ledger_id, SendStatus(exc.outcome), now(), str(exc), exc.smtp_code))
                continue
            outcomes.append(Outcome(claim.ledger_id, SendStatus.SENT, now()))

    lead_of_ledger_row = {claim.ledger_id: claim.lead_id for claim in claims}
    bounced_ids = [lead_of_ledger_row[item.ledger_id] for item in outcomes if item.status is SendStatus.BOUNCED]
    with session_scope() as session:
        record_outcomes(session=session, outcomes=outcomes)
        if bounced_ids:
            suppress_leads(session=session, lead_ids=bounced_ids, reason="hard bounce on the trial invite", at=now())
    for outcome in outcomes:
        setattr(result, outcome.status.value, getattr(result, outcome.status.value) + 1)

    if unavailable is not None:
        logger.warning("%s; %d emails of this batch deferred", unavailable, result.deferred)
        raise unavailable
    return result


def _artifact_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{STEP}-{name}".lower()).strip("-")


def _summary_markdown(summary: CampaignSummary) -> str:
    run = summary.this_run
    rows = [
        ("leads on the list", summary.leads),
        ("customers (never invited)", summary.customers),
        ("suppressed or unsubscribed", summary.suppressed),
        ("already in a trial or further along", summary.past_subscriber),
        ("eligible for the invite", summary.eligible),
        ("handled by an earlier launch", summary.already_handled),
    ]
    if summary.dry_run:
        rows += [("rendered (dry run, nothing sent)", run.rendered), ("failed to render", run.failed)]
    else:
        rows += [
            ("sent by this launch", run.sent),
            ("deferred (try again later)", run.deferred),
            ("bounced", run.bounced),
            ("failed", run.failed),
            ("ambiguous (operator decides)", run.ambiguous),
        ]
    lines = [
        f"# Trial invite: {summary.campaign}",
        "",
        f"Delivery to {summary.destination}." if not summary.dry_run else "Dry run: nothing was sent or recorded.",
        "",
        "| | count |",
        "| --- | ---: |",
        *(f"| {label} | {count:,} |" for label, count in rows),
    ]
    if summary.ledger:
        lines += ["", "Ledger after this launch: " + ", ".join(f"{status} {count:,}" for status, count in sorted(summary.ledger.items()))]
    return "\n".join(lines)


@flow(
    name="trial-invite",
    flow_run_name="trial-invite/{name}",
    description="Email the free-trial invitation to every subscriber who is not a customer, suppressed or already in a trial.",
)
def trial_invite(
    name: Annotated[str, Field(pattern=CAMPAIGN_NAME_PATTERN)],
    limit: Annotated[int | None, Field(ge=1)] = None,
    dry_run: bool = False,
) -> CampaignSummary:
    """Send the trial invite in batches, each recorded in the ledger before delivery.

    Launching the same campaign again sends only to leads that have not had it;
    deferred and failed sends are tried again.

    Args:
        name: Campaign name, such as spring-launch: letters, digits, spaces, dots, dashes and underscores.
        limit: Send to at most this many leads in this launch; the next launch continues.
        dry_run: Render every email and count the audience, but send and record nothing.
    """
    logger = get_run_logger()
    settings = get_settings()
    started = now()

    with session_scope() as session:
        if dry_run:
            campaign = session.exec(select(Campaign).where(Campaign.kind == STEP, Campaign.name == name)).first()
        else:
            campaign, created = get_or_create_campaign(session=session, kind=STEP, name=name)
            stale = mark_stale_sends_ambiguous(
                session=session, campaign=campaign, step=STEP, at=started,
                lease=timedelta(minutes=settings.sending_lease_minutes),
            )
            if stale:
                logger.warning(
                    "%d sends of an earlier run never recorded an outcome; marked ambiguous, not resent", stale
                )
        campaign_id = campaign.id if campaign is not None else None
        audience = count_invite_audience(session=session, campaign_id=campaign_id, step=STEP)

    target = audience.remaining if limit is None else min(limit, audience.remaining)
    destination = open_mailer(settings).description
    logger.info(
        "%s %s: %s of %s leads eligible, %s handled before, %s to go (%s customers, %s suppressed, %s past the invite)",
        "dry run of" if dry_run else "launching", name, f"{audience.eligible:,}", f"{audience.leads:,}",
        f"{audience.already_handled:,}", f"{target:,}", f"{audience.customers:,}", f"{audience.suppressed:,}",
        f"{audience.past_subscriber:,}",
    )
    progress_id = create_progress_artifact(progress=0.0, description=f"trial-invite/{name}: batches done")

    totals = BatchResult()
    after_id = 0
    batch_number = 0
    while True:
        remaining = None if limit is None else limit - (totals.claimed + totals.rendered)
        if remaining is not None and remaining <= 0:
            break
        size = settings.batch_size if remaining is None else min(settings.batch_size, remaining)
        with session_scope() as session:
            lead_ids = select_invite_batch(session=session, campaign_id=campaign_id, step=STEP, after_id=after_id, size=size)
        if not lead_ids:
            break
        after_id = lead_ids[-1]
        batch_number += 1
        result = send_batch(name, batch_number, lead_ids, dry_run)
        totals.add(result)
        done = totals.claimed + totals.rendered
        logger.info(
            "batch %d: %s sent, %s deferred, %s bounced, %s failed (%s of %s done)",
            batch_number, f"{result.sent:,}", f"{result.deferred:,}", f"{result.bounced:,}", f"{result.failed:,}",
            f"{done:,}", f"{target:,}",
        )
        update_progress_artifact(progress_id, progress=min(100.0, 100.0 * done / target) if target else 100.0)
    update_progress_artifact(progress_id, progress=100.0)

    ledger: dict[str, int] = {}
    if campaign_id is not None:
        with session_scope() as session:
            stored = session.get(Campaign, campaign_id)
            if stored is not None:
                ledger = count_by_status(session=session, campaign=stored, step=STEP)

    summary = CampaignSummary(
        campaign=name, dry_run=dry_run, destination=destination, leads=audience.leads,
        customers=audience.customers, suppressed=audience.suppressed, past_subscriber=audience.past_subscriber,
        eligible=audience.eligible, already_handled=audience.already_handled, this_run=totals, ledger=ledger,
    )
    create_markdown_artifact(
        _summary_markdown(summary), key=_artifact_key(name), description=f"Summary of trial-invite/{name}"
    )
    logger.info(
        "%s %s: %s sent, %s deferred, %s bounced, %s failed, %s ambiguous, %s handled before",
        "dry run of" if dry_run else "finished", name, f"{totals.sent:,}", f"{totals.deferred:,}",
        f"{totals.bounced:,}", f"{totals.failed:,}", f"{totals.ambiguous:,}", f"{audience.already_handled:,}",
    )
    if totals.ambiguous:
        logger.warning("%d sends are ambiguous: the server may have them; check before resending", totals.ambiguous)
    return summary
