"""Step 1 of the funnel: invite every subscriber who should get it to the free trial."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from pydantic import BaseModel, Field
from sqlmodel import select

from leadflow.clock import now, wall_clock
from leadflow.settings import get_settings
from models import Campaign, session_scope
from tasks.audience import count_invite_audience, invite_conditions, lead_is_invitable, select_lead_batch
from tasks.deferrals import retry_deferred_sends
from tasks.deliver import open_mailer
from tasks.emails import email_environment, render_trial_invite
from tasks.fan_out import MAX_SENDERS, refresh_planner_statistics, send_with_senders
from tasks.funnel import publish_funnel_artifact
from tasks.ledger import count_by_status, get_or_create_campaign
from tasks.recovery import Recovered, recover_abandoned_sends
from tasks.send import BatchResult, EmailStep, retry_when_server_unavailable, send_email_batch
from tasks.stages import current_actor
from tasks.throttle import configure_limits

STEP = "trial-invite"
STATISTICS_EVERY = 20
"""Batches between two refreshes of PostgreSQL's table statistics during a launch."""
CAMPAIGN_NAME_PATTERN = r"^\s*[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$"


def normalize_campaign_name(name: str) -> str:
    """Return the stored form of a campaign name: trimmed, inner spaces collapsed, lower-case.

    "Spring " and "spring" are one campaign, so a stray space or capital letter
    cannot start a second campaign that mails everyone again.
    """
    return " ".join(name.split()).lower()


class CampaignSummary(BaseModel):
    """Counts of one launch of a trial-invite campaign."""

    campaign: str
    dry_run: bool
    destination: str
    leads: int
    customers: int
    suppressed: int
    past_subscriber: int
    recently_invited: int = 0
    eligible: int
    already_handled: int
    this_run: BatchResult
    ledger: dict[str, int] = Field(default_factory=dict)
    """Ledger rows of the campaign by status after the run."""
    released: int = 0
    """Sends queued by a worker that died, sent again by this run."""
    recovered_ambiguous: int = 0
    """Sends a dead worker was handing over, marked ambiguous by this run."""

    @property
    def still_deferred(self) -> int:
        """Sends still deferred after this run: due later, or out of attempts."""
        return self.ledger.get("deferred", 0)

    @property
    def incomplete(self) -> int:
        return self.this_run.failed + self.still_deferred


def _invite_step(campaign_name: str) -> EmailStep:
    settings = get_settings()
    environment = email_environment(settings)
    return EmailStep(
        campaign_kind=STEP,
        step=STEP,
        render=lambda lead: render_trial_invite(lead, campaign=campaign_name, settings=settings, environment=environment),
        is_eligible=lead_is_invitable,
    )


@task(
    name="send-batch",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_when_server_unavailable,
    task_run_name="send-batch/{campaign_name}/{batch_number}",
)
def send_batch(campaign_name: str, batch_number: int, lead_ids: list[int], dry_run: bool = False) -> BatchResult:
    """Send the trial invite to one batch of leads; see `tasks.send.send_email_batch`."""
    return send_email_batch(
        _invite_step(campaign_name), campaign_name=campaign_name, lead_ids=lead_ids, settings=get_settings(),
        actor=current_actor(), logger=get_run_logger(), dry_run=dry_run,
    )


def _artifact_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{STEP}-{name}".lower()).strip("-")


def _summary_markdown(summary: CampaignSummary) -> str:
    run = summary.this_run
    rows = [
        ("leads on the list", summary.leads),
        ("customers (never invited)", summary.customers),
        ("suppressed or unsubscribed", summary.suppressed),
        ("already in a trial or further along", summary.past_subscriber),
        ("invited by another campaign recently", summary.recently_invited),
        ("eligible for the invite", summary.eligible),
        ("handled by an earlier launch", summary.already_handled),
    ]
    if summary.dry_run:
        rows += [("rendered (dry run, nothing sent)", run.rendered), ("failed to render", run.failed)]
    else:
        rows += [
            ("sent by this launch", run.sent),
            ("deferral replies (retried with backoff)", run.deferred),
            ("still deferred (a later launch retries)", summary.still_deferred),
            ("bounced (now suppressed)", run.bounced),
            ("on the suppression list at send time", run.suppressed),
            ("failed", run.failed),
            ("ambiguous (operator decides)", run.ambiguous + summary.recovered_ambiguous),
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
    senders: Annotated[int, Field(ge=0, le=MAX_SENDERS)] = 0,
) -> CampaignSummary:
    """Send the trial invite in batches, each recorded in the ledger before delivery.

    Launching the same campaign again sends only to leads that have not had it;
    deferred and failed sends are tried again.

    Args:
        name: Campaign name, such as spring-launch: letters, digits, spaces, dots, dashes and underscores.
            Case and surrounding spaces are ignored, so "Spring" and "spring " name one campaign.
        limit: Send to at most this many leads in this launch; the next launch continues.
        dry_run: Render every email and count the audience, but send and record nothing.
        senders: 0 sends from this flow run. With 1 or more, the audience is queued in the ledger and that many
            campaign-sender runs send it at the same time on Prefect workers. A dry run ignores it.
    """
    logger = get_run_logger()
    settings = get_settings()
    started = now()
    name = normalize_campaign_name(name)
    invited_since = started - timedelta(days=settings.invite_cooldown_days) if settings.invite_cooldown_days else None
    recovered = Recovered(released=0, ambiguous=0)
    refresh_planner_statistics()

    with session_scope() as session:
        if dry_run:
            campaign = session.exec(select(Campaign).where(Campaign.kind == STEP, Campaign.name == name)).first()
        else:
            campaign, created = get_or_create_campaign(session=session, kind=STEP, name=name)
            recovered = recover_abandoned_sends(
                session=session, campaign=campaign, step=STEP, wall_time=wall_clock(),
                lease=timedelta(minutes=settings.sending_lease_minutes),
            )
            if recovered.released:
                logger.warning("%d sends queued by a worker that stopped are sent again", recovered.released)
            if recovered.ambiguous:
                logger.warning(
                    "%d sends of a worker that stopped never recorded an outcome; marked ambiguous, not resent "
                    "(list them with: leadflow deliveries ambiguous)", recovered.ambiguous,
                )
        campaign_id = campaign.id if campaign is not None else None
        audience = count_invite_audience(
            session=session, campaign_id=campaign_id, step=STEP, invited_since=invited_since
        )

    if not dry_run:
        configure_limits(settings)
    target = audience.remaining if limit is None else min(limit, audience.remaining)
    destination = open_mailer(settings).description
    logger.info(
        "%s %s: %s of %s leads eligible, %s handled before, %s to go (%s customers, %s suppressed, "
        "%s in a trial or further along, %s invited by another campaign recently)",
        "dry run of" if dry_run else "launching", name, f"{audience.eligible:,}", f"{audience.leads:,}",
        f"{audience.already_handled:,}", f"{target:,}", f"{audience.customers:,}", f"{audience.suppressed:,}",
        f"{audience.past_subscriber:,}", f"{audience.recently_invited:,}",
    )
    progress_id = create_progress_artifact(progress=0.0, description=f"trial-invite/{name}: batches done")

    totals = BatchResult()
    if senders and not dry_run and campaign_id is not None:
        # The senders send what they can; the loop below sends what a sender that died left behind.
        totals.add(
            send_with_senders(
                name, campaign_id=campaign_id, step=STEP, senders=senders, limit=limit, settings=settings,
                conditions=invite_conditions(campaign_id=campaign_id, step=STEP, invited_since=invited_since),
                actor=current_actor(), at=started, logger=logger,
                on_progress=lambda done: update_progress_artifact(
                    progress_id, progress=min(100.0, 100.0 * done / target) if target else 100.0
                ),
            )
        )
    after_id = 0
    batch_number = 0
    while True:
        remaining = None if limit is None else limit - (totals.claimed + totals.rendered)
        if remaining is not None and remaining <= 0:
            break
        size = settings.batch_size if remaining is None else min(settings.batch_size, remaining)
        with session_scope() as session:
            lead_ids = select_lead_batch(
                session=session,
                conditions=invite_conditions(campaign_id=campaign_id, step=STEP, invited_since=invited_since),
                campaign_id=campaign_id,
                step=STEP,
                after_id=after_id, size=size,
            )
        if not lead_ids:
            break
        after_id = lead_ids[-1]
        batch_number += 1
        if batch_number % STATISTICS_EVERY == 0:
            # The ledger grows with every batch; PostgreSQL plans the audience query from its row counts.
            refresh_planner_statistics()
        result = send_batch(name, batch_number, lead_ids, dry_run)
        totals.add(result)
        done = totals.claimed + totals.rendered
        logger.info(
            "batch %d: %s sent, %s deferred, %s bounced, %s failed (%s of %s done)",
            batch_number, f"{result.sent:,}", f"{result.deferred:,}", f"{result.bounced:,}", f"{result.failed:,}",
            f"{done:,}", f"{target:,}",
        )
        update_progress_artifact(progress_id, progress=min(100.0, 100.0 * done / target) if target else 100.0)
    if campaign_id is not None and not dry_run and (limit is None or totals.claimed < limit):
        totals.add(
            retry_deferred_sends(
                lambda number, ids: send_batch(name, number, ids, False),
                conditions=invite_conditions(campaign_id=campaign_id, step=STEP, invited_since=invited_since),
                campaign_id=campaign_id, step=STEP, settings=settings, logger=logger, batch_number=batch_number,
            )
        )
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
        recently_invited=audience.recently_invited,
        eligible=audience.eligible, already_handled=audience.already_handled, this_run=totals, ledger=ledger,
        released=recovered.released, recovered_ambiguous=recovered.ambiguous,
    )
    create_markdown_artifact(
        _summary_markdown(summary), key=_artifact_key(name), description=f"Summary of trial-invite/{name}"
    )
    publish_funnel_artifact()
    logger.info(
        "%s %s: %s sent, %s still deferred, %s bounced, %s suppressed at send time, %s failed, %s ambiguous, "
        "%s handled before",
        "dry run of" if dry_run else "finished", name, f"{totals.sent:,}", f"{summary.still_deferred:,}",
        f"{totals.bounced:,}", f"{totals.suppressed:,}", f"{totals.failed:,}", f"{totals.ambiguous:,}",
        f"{audience.already_handled:,}",
    )
    if totals.ambiguous:
        logger.warning("%d sends are ambiguous: the server may have them; check before resending", totals.ambiguous)
    return summary
