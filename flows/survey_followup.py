"""Step 3 of the funnel: the survey email, sent once to each trial user shortly before the trial ends."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from leadflow import clock
from leadflow.settings import get_settings
from models import Campaign, session_scope
from tasks.audience import count_due, lead_gets_survey, select_lead_batch, survey_conditions
from tasks.deferrals import retry_deferred_sends
from tasks.deliver import open_mailer
from tasks.emails import email_environment, render_survey
from tasks.funnel import publish_funnel_artifact
from tasks.ledger import count_deferred, get_or_create_campaign
from tasks.recovery import recover_abandoned_sends
from tasks.send import BatchResult, EmailStep, retry_when_server_unavailable, send_email_batch
from tasks.stages import current_actor
from tasks.throttle import configure_limits

CAMPAIGN_KIND = "survey-followup"
CAMPAIGN_NAME = "survey"
"""Every survey email belongs to this one campaign, so the ledger key is (survey, lead, survey)."""
STEP = "survey"


class FollowupSummary(BaseModel):
    """Counts of one survey-followup run."""

    at: datetime
    dry_run: bool
    destination: str
    due: int
    already_handled: int
    this_run: BatchResult
    still_deferred: int = 0
    """Survey sends still deferred after this run: due later, or out of attempts."""
    recovered_ambiguous: int = 0
    """Sends a dead worker was handing over, marked ambiguous by this run."""

    @property
    def incomplete(self) -> int:
        return self.this_run.failed + self.still_deferred


def _survey_step(at: datetime) -> EmailStep:
    settings = get_settings()
    environment = email_environment(settings)
    return EmailStep(
        campaign_kind=CAMPAIGN_KIND,
        step=STEP,
        render=lambda lead: render_survey(lead, settings=settings, environment=environment),
        is_eligible=lambda lead: lead_gets_survey(lead, at=at, offset_hours=settings.survey_offset_hours),
    )


@task(
    name="send-survey-batch",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_when_server_unavailable,
    task_run_name="send-survey-batch/{batch_number}",
)
def send_survey_batch(batch_number: int, lead_ids: list[int], at: datetime, dry_run: bool = False) -> BatchResult:
    """Send the survey email to one batch of leads; see `tasks.send.send_email_batch`."""
    with clock.frozen_at(at):
        return send_email_batch(
            _survey_step(at), campaign_name=CAMPAIGN_NAME, lead_ids=lead_ids, settings=get_settings(),
            actor=current_actor(), logger=get_run_logger(), dry_run=dry_run,
        )


def _run_name() -> str:
    scheduled = flow_run.get_scheduled_start_time()
    parameters = flow_run.get_parameters()
    moment = parameters.get("now") or scheduled or clock.now()
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    label = clock.as_utc(moment).strftime("%Y-%m-%d %H:%M UTC") if moment.tzinfo else moment.isoformat()
    return f"survey-followup/{label}"


@flow(
    name="survey-followup",
    flow_run_name=_run_name,
    description="Email the survey to every trial user whose trial ends within the offset, once per lead.",
)
def survey_followup(now: datetime | None = None, dry_run: bool = False) -> FollowupSummary:
    """Send the survey email to every `mql` lead whose trial ends within `LEADFLOW_SURVEY_OFFSET_HOURS`.

    Each lead gets it once, through the email ledger. A run at any later time
    sends the ones whose due time passed while nothing was running.

    Args:
        now: Treat this moment as the current time (ISO 8601 with an offset); empty means the real clock.
        dry_run: Render every due email and count, but send and record nothing.
    """
    logger = get_run_logger()
    settings = get_settings()
    at = clock.as_utc(now) if now is not None else clock.now()
    conditions = survey_conditions(at=at, offset_hours=settings.survey_offset_hours)

    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind=CAMPAIGN_KIND, name=CAMPAIGN_NAME)
        recovered_ambiguous = 0
        if not dry_run:
            recovered = recover_abandoned_sends(
                session=session, campaign=campaign, step=STEP, wall_time=clock.wall_clock(),
                lease=timedelta(minutes=settings.sending_lease_minutes),
            )
            recovered_ambiguous = recovered.ambiguous
            if recovered.released:
                logger.warning("%d survey sends queued by a worker that stopped are sent again", recovered.released)
            if recovered.ambiguous:
                logger.warning(
                    "%d survey sends of a worker that stopped never recorded an outcome; marked ambiguous "
                    "(list them with: leadflow deliveries ambiguous)", recovered.ambiguous,
                )
        campaign_id = campaign.id
        due, already_handled = count_due(session=session, conditions=conditions, campaign_id=campaign_id, step=STEP)

    if not dry_run:
        configure_limits(settings)
    logger.info(
        "%s at %s: %s trial users due for the survey, %s of them handled before",
        "dry run" if dry_run else "survey follow-up", at.isoformat(), f"{due:,}", f"{already_handled:,}",
    )
    totals = BatchResult()
    after_id = 0
    batch_number = 0
    while True:
        with session_scope() as session:
            lead_ids = select_lead_batch(
                session=session, conditions=conditions, campaign_id=campaign_id, step=STEP,
                after_id=after_id, size=settings.batch_size,
            )
        if not lead_ids:
            break
        after_id = lead_ids[-1]
        batch_number += 1
        totals.add(send_survey_batch(batch_number, lead_ids, at, dry_run))
    if not dry_run:
        totals.add(
            retry_deferred_sends(
                lambda number, ids: send_survey_batch(number, ids, at, False),
                conditions=conditions, campaign_id=campaign_id, step=STEP, settings=settings, logger=logger,
                batch_number=batch_number,
            )
        )
        with session_scope() as session:
            stored = session.get(Campaign, campaign_id)
            # Every survey email shares one campaign. Only sends that a later run still retries count
            # as deferred, because one that used up its attempts would otherwise fail every later run.
            still_deferred, gave_up = (
                count_deferred(session=session, campaign=stored, step=STEP, max_attempts=settings.max_send_attempts)
                if stored
                else (0, 0)
            )
        if gave_up:
            logger.warning(
                "%d survey emails were deferred %d times and are not retried again; they stay deferred in the ledger",
                gave_up, settings.max_send_attempts,
            )
    else:
        still_deferred = 0

    summary = FollowupSummary(
        at=at, dry_run=dry_run, destination=open_mailer(settings).description, due=due,
        already_handled=already_handled, this_run=totals, still_deferred=still_deferred,
        recovered_ambiguous=recovered_ambiguous,
    )
    create_markdown_artifact(
        _summary_markdown(summary), key="survey-followup-last-run", description="Summary of the last survey follow-up"
    )
    publish_funnel_artifact()
    logger.info(
        "survey follow-up done: %s sent, %s still deferred, %s bounced, %s failed, %s ambiguous",
        f"{totals.sent:,}", f"{still_deferred:,}", f"{totals.bounced:,}", f"{totals.failed:,}", f"{totals.ambiguous:,}",
    )
    return summary


def _summary_markdown(summary: FollowupSummary) -> str:
    run = summary.this_run
    rows = [
        ("trial users due for the survey", summary.due),
        ("handled by an earlier run", summary.already_handled),
        ("sent by this run", run.sent),
        ("deferral replies (retried with backoff)", run.deferred),
        ("still deferred (a later run retries)", summary.still_deferred),
        ("bounced (now suppressed)", run.bounced),
        ("on the suppression list at send time", run.suppressed),
        ("failed", run.failed),
        ("ambiguous (operator decides)", run.ambiguous + summary.recovered_ambiguous),
    ]
    if summary.dry_run:
        rows.append(("rendered (dry run)", run.rendered))
    return "\n".join(
        [
            f"# Survey follow-up at {summary.at:%Y-%m-%d %H:%M} UTC",
            "",
            "| | count |",
            "| --- | ---: |",
            *(f"| {label} | {count:,} |" for label, count in rows),
        ]
    )
