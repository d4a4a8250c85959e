"""Step 3 of the funnel: the survey email, sent once to each trial user shortly before the trial ends."""

from __future__ import annotations

from datetime import datetime, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel

from leadflow import clock
from leadflow.settings import get_settings
from models import session_scope
from tasks.audience import count_due, lead_gets_survey, select_lead_batch, survey_conditions
from tasks.deliver import open_mailer
from tasks.emails import email_environment, render_survey
from tasks.funnel import publish_funnel_artifact
from tasks.ledger import get_or_create_campaign, mark_stale_sends_ambiguous
from tasks.send import BatchResult, EmailStep, retry_when_server_unavailable, send_email_batch

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

    @property
    def incomplete(self) -> int:
        return self.this_run.failed + self.this_run.deferred


def _actor() -> str:
    run_id = flow_run.get_id()
    return f"flow-run:{run_id}" if run_id else "cli"


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
            actor=_actor(), logger=get_run_logger(), dry_run=dry_run,
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

    Each lead gets it once, through the email ledger; a run at any later time
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
        if not dry_run:
            stale = mark_stale_sends_ambiguous(
                session=session, campaign=campaign, step=STEP, at=at,
                lease=timedelta(minutes=settings.sending_lease_minutes),
            )
            if stale:
                logger.warning("%d survey sends of an earlier run never recorded an outcome; marked ambiguous", stale)
        campaign_id = campaign.id
        due, already_handled = count_due(session=session, conditions=conditions, campaign_id=campaign_id, step=STEP)

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

    summary = FollowupSummary(
        at=at, dry_run=dry_run, destination=open_mailer(settings).description, due=due,
        already_handled=already_handled, this_run=totals,
    )
    create_markdown_artifact(
        _summary_markdown(summary), key="survey-followup-last-run", description="Summary of the last survey follow-up"
    )
    publish_funnel_artifact()
    logger.info(
        "survey follow-up done: %s sent, %s deferred, %s bounced, %s failed, %s ambiguous",
        f"{totals.sent:,}", f"{totals.deferred:,}", f"{totals.bounced:,}", f"{totals.failed:,}", f"{totals.ambiguous:,}",
    )
    return summary


def _summary_markdown(summary: FollowupSummary) -> str:
    run = summary.this_run
    rows = [
        ("trial users due for the survey", summary.due),
        ("handled by an earlier run", summary.already_handled),
        ("sent by this run", run.sent),
        ("deferred", run.deferred),
        ("bounced", run.bounced),
        ("failed", run.failed),
        ("ambiguous", run.ambiguous),
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
