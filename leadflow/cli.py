"""The `leadflow` command line."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
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
leads_app = typer.Typer(help="Import and inspect leads.", no_args_is_help=True)
campaign_app = typer.Typer(help="Launch and preview campaigns.", no_args_is_help=True)
server_app = typer.Typer(
    help="The local Prefect server that keeps every run visible in the UI (used when PREFECT_API_URL is unset).",
    no_args_is_help=True,
)
app.add_typer(leads_app, name="leads")
app.add_typer(campaign_app, name="campaign")
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


def _print_import_summary(summary: ImportSummary, rejects_path: Path | None = None) -> None:
    console.print(f"File: {summary.format}", markup=False, highlight=False)
    columns = ", ".join(f"{field} from {header!r}" for field, header in summary.columns.items())
    console.print(f"Columns: {columns}", markup=False, highlight=False)
    if summary.unused_email_columns:
        unused = ", ".join(repr(header) for header in summary.unused_email_columns)
        console.print(f"Email taken from {summary.columns['email']!r}, the first email column; not used: {unused}")
    for rejection in summary.rejections[:20]:
        console.print(f"  line {rejection.line}: rejected, {rejection.reason}", markup=False, highlight=False)
    if summary.rejected > 20:
        console.print(f"  ... and {summary.rejected - 20:,} more rejected rows")
    if rejects_path is not None:
        console.print(f"Rejected rows, with line number and reason: {rejects_path}")
    prefix = "Dry run, nothing saved: " if summary.dry_run else ""
    console.print(
        f"{prefix}read {summary.read:,} rows: {summary.imported:,} imported, {summary.updated:,} updated, "
        f"{summary.unchanged:,} unchanged, {summary.duplicates_merged:,} duplicates merged, "
        f"{summary.customers:,} customers, {summary.rejected:,} rejected; "
        f"{summary.suppressed:,} suppressed (do not email or no consent); "
        f"{summary.blank_lines:,} blank lines skipped"
    )
    if summary.read and not summary.changed:
        console.print("Nothing changed: every address was already stored with the same values.")


def _run_import(
    path: Path,
    customer_if: list[str],
    dry_run: bool,
    *,
    columns: list[str] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    rejects: Path | None = None,
) -> ImportSummary:
    from models import session_scope
    from tasks.import_leads import import_leads
    from tasks.list_columns import ColumnChoice, CustomerRule
    from tasks.list_file import parse_delimiter, parse_encoding

    rules = [CustomerRule.parse(text) for text in customer_if]
    choices = [ColumnChoice.parse(text) for text in columns or []]
    codec = parse_encoding(encoding) if encoding is not None else None
    separator = parse_delimiter(delimiter) if delimiter is not None else None
    with Progress(
        TextColumn("importing {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=error_console, transient=True, disable=not error_console.is_terminal,
    ) as progress:
        bar = progress.add_task(path.name, total=None)

        def report(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        with session_scope() as session:
            return import_leads(
                path,
                session=session,
                customer_rules=rules,
                column_choices=choices,
                encoding=codec,
                delimiter=separator,
                rejects_path=rejects,
                dry_run=dry_run,
                on_progress=report,
            )


@leads_app.command("import")
def leads_import(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row and an email column.")],
    customer_if: Annotated[
        list[str] | None,
        typer.Option(
            "--customer-if",
            metavar="COLUMN=VALUE",
            help='Mark rows whose COLUMN equals VALUE (case ignored) as customers; repeat for more, e.g. "Deal Stage=Closed Won".',
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            metavar="FIELD=HEADER",
            help='Read FIELD from the column HEADER, e.g. email="Work Email"; an empty HEADER ignores FIELD. '
            "FIELD is one of: email, first_name, last_name, full_name, company, title, customer, consent, do_not_email.",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", metavar="FILE", help="Write the rejected rows, with line number and reason, to this CSV file."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", metavar="DELIMITER", help="Field delimiter: comma, semicolon, tab or pipe; default: detected."),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option("--encoding", metavar="ENCODING", help="Text encoding, e.g. utf-8, utf-16, windows-1252, latin-1; default: detected."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check everything, save nothing.")] = False,
) -> None:
    """Import a mailing list: merge duplicates by address, mark customers, report bad rows by line."""
    summary = _run_import(
        file, customer_if or [], dry_run, columns=column, encoding=encoding, delimiter=delimiter, rejects=rejects
    )
    _print_import_summary(summary, rejects)


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
    if not summary.dry_run:
        console.print(f"Emails went to {summary.destination}.")
    if ui_url:
        console.print(f"Runs, logs and the summary artifact: {ui_url}/runs")


def _launch(settings: Settings, name: str, limit: int | None, dry_run: bool) -> CampaignSummary:
    from flows.trial_invite import CAMPAIGN_NAME_PATTERN, trial_invite

    if not re.match(CAMPAIGN_NAME_PATTERN, name):
        raise LeadflowError(
            f"invalid campaign name {name!r}: use up to 100 letters, digits, spaces, dots, dashes and underscores, "
            "starting with a letter or digit"
        )

    with _prefect_api(settings) as ui_url:
        state = trial_invite(name=name, limit=limit, dry_run=dry_run, return_state=True)
        result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the trial-invite flow run failed: {result}") from result
    _print_campaign_summary(result, ui_url)
    return result


@campaign_app.command("launch")
def campaign_launch(
    kind: Annotated[CampaignKind, typer.Argument(help="Which campaign step to run.")],
    name: Annotated[str, typer.Option("--name", help="Campaign name; launching the same name again sends nothing twice.")],
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
    kind: Annotated[CampaignKind, typer.Argument(help="Which campaign email to render.")],
    lead: Annotated[str | None, typer.Option("--lead", help="Render for this lead's address; default: the first eligible lead.")] = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the plain-text part.")] = False,
    name: Annotated[str, typer.Option("--name", help="Campaign name used in the links.")] = "preview",
) -> None:
    """Render one email without sending it: headers and the text (or HTML) part."""
    from sqlmodel import select

    from leadflow.clock import now
    from models import Lead, session_scope
    from tasks.audience import invite_conditions
    from tasks.email_address import InvalidEmailAddress, normalize_email
    from tasks.emails import email_environment, render_trial_invite, unsubscribe_url
    from tasks.render_email import build_message, make_message_id

    settings = _settings()
    with session_scope() as session:
        if lead is not None:
            try:
                address = normalize_email(lead)
            except InvalidEmailAddress as exc:
                raise LeadflowError(f"--lead: {exc}") from exc
            found = session.exec(select(Lead).where(Lead.email == address)).first()
            if found is None:
                raise LeadflowError(f"no lead with the address {address}; import it first or choose another --lead")
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
    name: Annotated[str | None, typer.Option("--name", help="Campaign name; default: demo-<UTC date and time>.")] = None,
) -> None:
    """Run the funnel so far on a generated sample list: import it and send the trial invite."""
    from leadflow.clock import now
    from leadflow.sample import write_sample_list

    settings = _settings()
    sample = write_sample_list(settings.data_dir / "sample-leads.csv", leads=leads, seed=seed)
    console.print(f"Sample list: {sample} ({leads:,} people on example domains, plus two rows with mistakes)")
    console.print(f"Database: {settings.resolved_database_url}")
    _print_import_summary(_run_import(sample, ["Customer=yes"], dry_run=False))

    campaign = name or now().astimezone(UTC).strftime("demo-%Y%m%d-%H%M%S")
    _launch(settings, campaign, None, False)
    if settings.smtp_url is None:
        console.print(f"Open the emails: ls {settings.resolved_outbox_dir}")


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
        raise typer.Exit(code=3)
    console.print(f"Local Prefect server running (pid {server.pid}): UI at {server.ui_url}")


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
