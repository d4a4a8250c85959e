"""The `leadflow` command line."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from leadflow.errors import LeadflowError
from leadflow.settings import Settings, apply_prefect_privacy_defaults, get_settings

if TYPE_CHECKING:
    from flows.trial_invite import CampaignSummary
    from tasks.import_leads import ImportSummary

app = typer.Typer(
    name="leadflow",
    help="Run the B2B lead-qualification funnel as Prefect flows. Settings come from LEADFLOW_* variables.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
leads_app = typer.Typer(help="Import mailing lists.", no_args_is_help=True)
campaign_app = typer.Typer(help="Launch and preview campaigns.", no_args_is_help=True)
server_app = typer.Typer(
    help="The local Prefect server that keeps every run visible in the UI (used when PREFECT_API_URL is unset).",
    no_args_is_help=True,
)
trial_app = typer.Typer(help="Record free-trial sign-ups (each lead becomes an MQL).", no_args_is_help=True)
followups_app = typer.Typer(help="The survey emails sent shortly before each trial ends.", no_args_is_help=True)
app.add_typer(leads_app, name="leads")
app.add_typer(campaign_app, name="campaign")
app.add_typer(trial_app, name="trial")
app.add_typer(followups_app, name="followups")
app.add_typer(server_app, name="server")

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)


class CampaignKind(StrEnum):
    TRIAL_INVITE = "trial-invite"


def _settings() -> Settings:
    return get_settings()


@contextmanager
def _prefect_api(settings: Settings) -> Iterator[str]:
    """Point Prefect at the configured server, or at leadflow's local one, started if needed."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from leadflow.prefect_server import ensure_server

    server = ensure_server(settings)
    if server.started_now:
        error_console.print(
            f"Started a local Prefect server (pid {server.pid}); it keeps running for the next commands. "
            f"UI: {server.ui_url}  Stop it with: leadflow server stop"
        )
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        yield server.ui_url


def _print_import_summary(summary: ImportSummary) -> None:
    columns = ", ".join(f"{field} from {header!r}" for field, header in summary.columns.items())
    console.print(f"Columns: {columns}")
    if summary.unused_email_columns:
        unused = ", ".join(repr(header) for header in summary.unused_email_columns)
        console.print(f"Email taken from {summary.columns['email']!r}, the first email column; not used: {unused}")
    for rejection in summary.rejections[:20]:
        console.print(f"  line {rejection.line}: rejected, {rejection.reason}")
    if summary.rejected > 20:
        console.print(f"  ... and {summary.rejected - 20:,} more rejected rows")
    prefix = "Dry run, nothing saved: " if summary.dry_run else ""
    console.print(
        f"{prefix}read {summary.read:,} rows: {summary.imported:,} imported, {summary.updated:,} updated, "
        f"{summary.unchanged:,} unchanged, {summary.duplicates_merged:,} duplicates merged, "
        f"{summary.customers:,} customers, {summary.rejected:,} rejected"
    )


def _run_import(path: Path, customer_if: list[str], dry_run: bool) -> ImportSummary:
    from models import session_scope
    from tasks.import_leads import import_leads
    from tasks.list_columns import CustomerRule

    rules = [CustomerRule.parse(text) for text in customer_if]
    with Progress(
        TextColumn("importing {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=error_console, transient=True, disable=not error_console.is_terminal,
    ) as progress:
        bar = progress.add_task(path.name, total=None)

        def report(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        with session_scope() as session:
            return import_leads(path, session=session, customer_rules=rules, dry_run=dry_run, on_progress=report)


@leads_app.command("import")
def leads_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV file with a header row and an email column.")],
    customer_if: Annotated[
        list[str] | None,
        typer.Option(
            "--customer-if",
            metavar="COLUMN=VALUE",
            help=(
                'Mark rows whose COLUMN equals VALUE (case and surrounding spaces ignored) as customers; '
                'repeat for more, e.g. "Deal Stage=Closed Won". A customer mark is never removed by a later import.'
            ),
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check everything, save nothing.")] = False,
) -> None:
    """Import a mailing list: merge duplicates by address, mark customers, report bad rows by line."""
    summary = _run_import(file, customer_if or [], dry_run)
    _print_import_summary(summary)


def _print_campaign_summary(summary: CampaignSummary, ui_url: str | None) -> None:
    run = summary.this_run
    table = Table(title=f"trial-invite/{summary.campaign}" + (" (dry run)" if summary.dry_run else ""))
    table.add_column("")
    table.add_column("count", justify="right")
    rows: list[tuple[str, int]] = [
        ("leads on the list", summary.leads),
        ("customers, not invited", summary.customers),
        ("suppressed or unsubscribed", summary.suppressed),
        ("in a trial or further along", summary.past_subscriber),
        ("invited by another campaign recently", summary.recently_invited),
        ("eligible", summary.eligible),
        ("handled by an earlier launch", summary.already_handled),
    ]
    if summary.dry_run:
        rows += [("would send (rendered)", run.rendered), ("failed to render", run.failed)]
    else:
        rows += [
            ("sent now", run.sent),
            ("deferred", run.deferred),
            ("bounced", run.bounced),
            ("failed", run.failed),
            ("ambiguous", run.ambiguous),
        ]
    for label, count in rows:
        table.add_row(label, f"{count:,}")
    console.print(table)
    if not summary.dry_run and run.sent:
        console.print(f"Emails went to {summary.destination}.")
    if ui_url:
        console.print(f"Runs, logs and the summary artifact: {ui_url}/runs")


def _campaign_name(name: str) -> str:
    """Return the normalised campaign name, or raise `LeadflowError` naming the rule it breaks."""
    from flows.trial_invite import CAMPAIGN_NAME_PATTERN, normalize_campaign_name

    if not re.match(CAMPAIGN_NAME_PATTERN, name):
        raise LeadflowError(
            f"invalid campaign name {name!r}: use up to 100 letters, digits, spaces, dots, dashes and underscores, "
            "starting with a letter or digit"
        )
    return normalize_campaign_name(name)


def _launch(settings: Settings, name: str, limit: int | None, dry_run: bool) -> CampaignSummary:
    from flows.trial_invite import trial_invite

    name = _campaign_name(name)

    with _prefect_api(settings) as ui_url:
        state = trial_invite(name=name, limit=limit, dry_run=dry_run, return_state=True)
        result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the trial-invite flow run failed: {result}") from result
    _print_campaign_summary(result, ui_url)
    return result


@campaign_app.command("launch")
def campaign_launch(
    kind: Annotated[CampaignKind, typer.Argument(metavar="KIND", help="Which campaign step to run: trial-invite.")],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Campaign name; case and surrounding spaces are ignored. Launching the same name again sends nothing twice.",
        ),
    ],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Send to at most N leads in this launch.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Render every email and count, send and record nothing.")] = False,
) -> None:
    """Send a campaign through its Prefect flow and print the summary."""
    summary = _launch(_settings(), name, limit, dry_run)
    if summary.incomplete:
        error_console.print(
            f"{summary.incomplete:,} emails were not delivered (deferred or failed); "
            "fix the cause shown above and launch the same campaign again to retry only those."
        )
        raise typer.Exit(code=1)


@campaign_app.command("preview")
def campaign_preview(
    kind: Annotated[CampaignKind, typer.Argument(metavar="KIND", help="Which campaign email to render: trial-invite.")],
    lead: Annotated[str | None, typer.Option("--lead", help="Render for this lead's address; default: the first eligible lead.")] = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the plain-text part.")] = False,
    name: Annotated[str, typer.Option("--name", help="Campaign name used in the links.")] = "preview",
) -> None:
    """Render one email without sending it: headers and the text (or HTML) part."""
    from sqlmodel import select

    from leadflow.clock import now
    from models import Lead, session_scope
    from tasks.audience import invite_conditions, lead_is_invitable
    from tasks.email_address import InvalidEmailAddress, normalize_email
    from tasks.emails import email_environment, render_trial_invite, unsubscribe_url
    from tasks.render_email import build_message, make_message_id

    settings = _settings()
    name = _campaign_name(name)
    with session_scope() as session:
        if lead is not None:
            try:
                address = normalize_email(lead)
            except InvalidEmailAddress as exc:
                raise LeadflowError(f"--lead: {exc}") from exc
            found = session.exec(select(Lead).where(Lead.email == address)).first()
            if found is None:
                raise LeadflowError(f"no lead with the address {address}; import it first or choose another --lead")
            if not lead_is_invitable(found):
                error_console.print(
                    f"Note: lead {found.id} would not get this email (stage {found.stage}"
                    f"{', customer' if found.is_customer else ''}"
                    f"{', suppressed' if found.suppressed_at else ''}{', unsubscribed' if found.unsubscribed_at else ''})."
                )
        else:
            found = session.exec(select(Lead).where(*invite_conditions()).order_by(Lead.id)).first()
            if found is None:
                raise LeadflowError("no lead would get this email; import a list first with: leadflow leads import FILE")

    rendered = render_trial_invite(found, campaign=name, settings=settings, environment=email_environment(settings))
    message = build_message(
        rendered,
        sender_name=settings.sender_name,
        sender_address=settings.sender_address,
        recipient_name=" ".join(part for part in (found.first_name, found.last_name) if part),
        recipient_address=found.email,
        message_id=make_message_id(campaign_public_id="preview", lead_id=found.id or 0, step=kind.value, domain=settings.sender_domain),
        unsubscribe_url=unsubscribe_url(found.id or 0, settings),
        date=now(),
    )
    for header in ("From", "To", "Subject", "List-Unsubscribe", "List-Unsubscribe-Post"):
        console.print(f"{header}: {message[header]}", markup=False, highlight=False)
    console.print()
    console.print(rendered.html if html else rendered.text, markup=False, highlight=False)


@app.command("demo")
def demo(
    leads: Annotated[int, typer.Option("--leads", min=1, max=100_000, help="Number of people on the sample list.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample list generator.")] = 7,
) -> None:
    """Run the funnel so far on a generated sample list: import it and send the trial invite.

    The demo rebuilds its own folder (data folder/demo) on every run: a new SQLite
    database and outbox, never your own database or SMTP server.
    """
    import shutil

    from leadflow.sample import write_sample_list
    from models import dispose_engines

    folder = _settings().data_dir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    os.environ["LEADFLOW_DATABASE_URL"] = f"sqlite:///{folder / 'leadflow.db'}"
    os.environ["LEADFLOW_OUTBOX_DIR"] = str(folder / "outbox")
    os.environ.pop("LEADFLOW_SMTP_URL", None)
    get_settings.cache_clear()
    dispose_engines()
    settings = _settings()

    sample = write_sample_list(folder / "sample-leads.csv", leads=leads, seed=seed)
    console.print(f"Demo folder, rebuilt on every run: {folder}")
    console.print(f"Sample list: {sample} ({leads:,} people on example domains, plus two rows with mistakes)")
    _print_import_summary(_run_import(sample, ["Customer=yes"], dry_run=False))

    _launch(settings, "demo", None, False)
    console.print(f"Open the emails: ls {settings.resolved_outbox_dir}")


def _schedule_surveys(settings: Settings, due_times: list[datetime]) -> None:
    """Schedule the survey runs on the Prefect server in use, if one is running; else print what happens instead."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from leadflow.clock import now
    from leadflow.prefect_server import configured_api_url, running_server
    from tasks.followup_schedule import schedule_survey_runs

    if not due_times:
        return
    server = running_server(settings)
    api_url = configured_api_url() or (server.url if server else None)
    if api_url is None:
        console.print(
            "No Prefect server is running, so no survey run was scheduled now; "
            "`leadflow serve` schedules every pending survey email when it starts."
        )
        return
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        report = schedule_survey_runs(due_times, settings=settings, at=now())
    if report.scheduled:
        slots = ", ".join(f"{slot:%Y-%m-%d %H:%M}" for slot in report.scheduled[:5])
        more = f" and {len(report.scheduled) - 5} more" if len(report.scheduled) > 5 else ""
        console.print(f"Survey runs scheduled (UTC): {slots}{more}")
    if report.error:
        console.print(f"Survey runs not scheduled: {report.error}")


def _parse_time_option(text: str | None, option: str, zone: str | None = None) -> datetime:
    from leadflow.clock import now
    from leadflow.timeparse import InvalidTime, load_zone, parse_time

    if text is None:
        return now()
    try:
        return parse_time(text, naive_zone=load_zone(zone) if zone else None)
    except InvalidTime as exc:
        raise LeadflowError(f"{option}: {exc}") from exc


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

    settings = _settings()
    started = _parse_time_option(at, "--at", timezone)
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
        _schedule_surveys(settings, [result.survey_due_at] if result.survey_due_at else [])
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

    settings = _settings()
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
    _schedule_surveys(settings, summary.survey_due_times)


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

    settings = _settings()
    at = _parse_time_option(now_text, "--now") if now_text else None
    with _prefect_api(settings) as ui_url:
        state = survey_followup(now=at, dry_run=dry_run, return_state=True)
        result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the survey-followup flow run failed: {result}") from result
    run = result.this_run
    console.print(
        f"Survey follow-up at {result.at:%Y-%m-%d %H:%M} UTC: {result.due:,} due, {result.already_handled:,} handled before; "
        + (f"{run.rendered:,} rendered (dry run)" if dry_run else
           f"{run.sent:,} sent, {run.deferred:,} deferred, {run.bounced:,} bounced, {run.failed:,} failed, {run.ambiguous:,} ambiguous")
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

    from flows.survey_followup import CAMPAIGN_KIND, CAMPAIGN_NAME, STEP
    from leadflow.clock import now
    from models import Campaign, session_scope
    from sqlmodel import select
    from tasks.audience import pending_survey_ends
    from tasks.followup_schedule import slot_end

    settings = _settings()
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


@app.command("serve")
def serve_command() -> None:
    """Serve the deployments of prefect.yaml so the scheduler can fire them; stop with Ctrl+C.

    On start it schedules a survey-followup run for every slot with survey emails
    pending, and one right away for any that fell due while nothing was serving.
    """
    from leadflow.serve import serve_deployments

    settings = _settings()

    def report(names: list[str], scheduled: int, overdue: int, error: str | None) -> None:
        console.print(f"Serving {', '.join(names)}; survey runs scheduled for {scheduled:,} slots, {overdue:,} overdue emails.")
        if error:
            console.print(f"Survey runs not scheduled: {error}")
        console.print("Flow runs start as separate processes. Stop with Ctrl+C.")

    with _prefect_api(settings) as ui_url:
        from prefect.settings import PREFECT_API_URL

        console.print(f"Prefect UI: {ui_url}")
        serve_deployments(settings, str(PREFECT_API_URL.value()), on_ready=report)


@server_app.command("start")
def server_start() -> None:
    """Start the local Prefect server in the background, or report the one that is running."""
    from leadflow.prefect_server import running_server, start_server

    settings = _settings()
    server = running_server(settings) or start_server(settings)
    state = "started" if server.started_now else "already running"
    pid = f" (pid {server.pid})" if server.pid else ""
    console.print(f"Prefect server {state}{pid}: UI at {server.ui_url}")


@server_app.command("status")
def server_status() -> None:
    """Print which Prefect API leadflow uses and whether its health check passes."""
    from leadflow.prefect_server import configured_api_url, is_healthy, running_server

    settings = _settings()
    configured = configured_api_url()
    if configured:
        health = "passes" if is_healthy(configured) else "fails"
        console.print(f"PREFECT_API_URL is set to {configured}; its health check {health}.")
        return
    server = running_server(settings)
    if server is None:
        console.print("No local Prefect server is running; the next command that runs a flow starts one.")
        # Exit code 3 lets scripts tell "not running" from a failure (1).
        raise typer.Exit(code=3)
    console.print(f"Local Prefect server running (pid {server.pid}): API {server.url}, UI {server.ui_url}")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the local Prefect server that leadflow started."""
    from leadflow.prefect_server import stop_server

    stopped = stop_server(_settings())
    if stopped is None:
        console.print("No local Prefect server was started by leadflow.")
        return
    console.print(f"Stopped the local Prefect server (pid {stopped.pid}).")


def main() -> None:
    """Entry point of the `leadflow` console script."""
    apply_prefect_privacy_defaults()
    try:
        app()
    except LeadflowError as exc:
        error_console.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
