"""`leadflow trial` and `leadflow followups`: trial sign-ups and the survey emails."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leadflow.cli.common import console, current_settings, parse_time_option, prefect_api
from leadflow.errors import LeadflowError
from leadflow.settings import Settings

trial_app = typer.Typer(help="Record free-trial sign-ups (each lead becomes an MQL).", no_args_is_help=True)
followups_app = typer.Typer(help="The survey emails sent shortly before each trial ends.", no_args_is_help=True)


def schedule_surveys(settings: Settings, due_times: list[datetime]) -> None:
    """Schedule the survey runs on the Prefect server in use, if one is running; else print what happens instead."""
    from leadflow.clock import now
    from tasks.followup_schedule import schedule_on_available_server

    if not due_times:
        return
    report = schedule_on_available_server(due_times, settings=settings, at=now())
    if report is None:
        console.print(
            "No Prefect server is running, so no survey run was scheduled now; "
            "`leadflow serve` schedules every pending survey email when it starts."
        )
        return
    if report.scheduled:
        slots = ", ".join(f"{slot:%Y-%m-%d %H:%M}" for slot in report.scheduled[:5])
        more = f" and {len(report.scheduled) - 5} more" if len(report.scheduled) > 5 else ""
        console.print(f"Survey runs scheduled (UTC): {slots}{more}")
    if report.error:
        console.print(f"Survey runs not scheduled: {report.error}")


@trial_app.command("start")
def trial_start(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="Address of the lead who started the trial.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="When the trial started, ISO 8601 with an offset, e.g. 2026-03-29T13:30:00-08:00; default: now."),
    ] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, max=365, help="Trial length in days; default: LEADFLOW_TRIAL_DAYS.")] = None,
    timezone: Annotated[
        str | None, typer.Option("--timezone", help="IANA zone for an --at without offset, e.g. Europe/Berlin.")
    ] = None,
) -> None:
    """Record one trial sign-up: the lead becomes an MQL and its survey email is scheduled."""
    from models import session_scope
    from tasks.email_address import InvalidEmailAddress
    from tasks.trials import SignupOutcome, record_trial_signup

    settings = current_settings()
    started = parse_time_option(at, "--at", timezone)
    try:
        with session_scope() as session:
            result = record_trial_signup(
                email, session=session, started_at=started, days=days or settings.trial_days, source="leadflow trial start",
                actor="cli:trial-start", offset_hours=settings.survey_offset_hours,
            )
    except (InvalidEmailAddress, ValueError) as exc:
        raise LeadflowError(str(exc)) from exc

    if result.outcome in (SignupOutcome.STARTED, SignupOutcome.CREATED):
        created = " (new lead)" if result.outcome is SignupOutcome.CREATED else ""
        console.print(
            f"Trial recorded{created}: lead {result.lead_id} is now an MQL; the trial ends {result.trial_ends_at:%Y-%m-%d %H:%M} UTC "
            f"and the survey email is due {result.survey_due_at:%Y-%m-%d %H:%M} UTC."
        )
        schedule_surveys(settings, [result.survey_due_at] if result.survey_due_at else [])
    else:
        console.print(f"Nothing changed for lead {result.lead_id}: {result.outcome.value}, {result.reason}.")


@trial_app.command("import")
def trial_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV file with columns email, started_at and optionally days.")],
    days: Annotated[int | None, typer.Option("--days", min=1, max=365, help="Trial length for rows without one; default: LEADFLOW_TRIAL_DAYS.")] = None,
    timezone: Annotated[
        str | None,
        typer.Option("--timezone", help="IANA zone for start times without an offset; without it such rows are rejected."),
    ] = None,
) -> None:
    """Record the trial sign-ups in a CSV export; bad rows are reported by line and the rest recorded."""
    from leadflow.timeparse import load_zone
    from models import session_scope
    from tasks.trials import import_trial_signups

    settings = current_settings()
    zone = load_zone(timezone) if timezone else None
    with session_scope() as session:
        summary = import_trial_signups(
            file, session=session, default_days=days or settings.trial_days, offset_hours=settings.survey_offset_hours,
            naive_zone=zone, actor="cli:trial-import",
        )
    for line, reason in summary.rejections[:20]:
        console.print(f"  line {line}: rejected, {reason}")
    if summary.rejected > 20:
        console.print(f"  ... and {summary.rejected - 20:,} more rejected rows")
    console.print(
        f"read {summary.read:,} sign-ups: {summary.started:,} started, {summary.created:,} new leads started, "
        f"{summary.already_started:,} already started, {summary.ignored:,} ignored (customers, unsubscribed, "
        f"suppressed or past MQL), {summary.rejected:,} rejected"
    )
    schedule_surveys(settings, summary.survey_due_times)


@followups_app.command("run")
def followups_run(
    now_text: Annotated[
        str | None,
        typer.Option("--now", help="Treat this ISO 8601 time (with offset) as the current time; default: the real clock."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render and count, send and record nothing.")] = False,
) -> None:
    """Send every survey email that is due, through the survey-followup flow."""
    from flows.survey_followup import survey_followup

    settings = current_settings()
    at = parse_time_option(now_text, "--now") if now_text else None
    with prefect_api(settings) as ui_url:
        state = survey_followup(now=at, dry_run=dry_run, return_state=True)
        result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the survey-followup flow run failed: {result}") from result
    run = result.this_run
    console.print(
        f"Survey follow-up at {result.at:%Y-%m-%d %H:%M} UTC: {result.due:,} due, {result.already_handled:,} handled before; "
        + (f"{run.rendered:,} rendered (dry run)" if dry_run else
           f"{run.sent:,} sent, {result.still_deferred:,} still deferred, {run.bounced:,} bounced, {run.suppressed:,} suppressed, "
           f"{run.failed:,} failed, {run.ambiguous + result.recovered_ambiguous:,} ambiguous")
    )
    if not dry_run:
        console.print(f"Emails went to {result.destination}. Runs: {ui_url}/runs")
    if result.incomplete:
        raise typer.Exit(code=1)


@followups_app.command("upcoming")
def followups_upcoming(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many slots.")] = 20,
) -> None:
    """List when the pending survey emails will go out, by scheduled slot (reads the database only)."""
    from collections import Counter

    from sqlmodel import select

    from flows.survey_followup import CAMPAIGN_KIND, CAMPAIGN_NAME, STEP
    from leadflow.clock import now
    from models import Campaign, session_scope
    from tasks.audience import pending_survey_ends
    from tasks.followup_schedule import slot_end

    settings = current_settings()
    offset = timedelta(hours=settings.survey_offset_hours)
    at = now()
    with session_scope() as session:
        campaign = session.exec(select(Campaign).where(Campaign.kind == CAMPAIGN_KIND, Campaign.name == CAMPAIGN_NAME)).first()
        ends = pending_survey_ends(session=session, campaign_id=campaign.id if campaign else None, step=STEP, after=at + offset)
    slots = Counter(slot_end(end - offset, settings.followup_slot_minutes) for end in ends)
    if not slots:
        console.print("No survey emails are pending.")
        return
    table = Table(title="Pending survey emails by slot (UTC)")
    table.add_column("slot")
    table.add_column("leads", justify="right")
    for slot, count in sorted(slots.items())[:limit]:
        table.add_row(f"{slot:%Y-%m-%d %H:%M}", f"{count:,}")
    console.print(table)


