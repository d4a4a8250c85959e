"""`leadflow campaign`: launch and preview campaigns."""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from leadflow.cli.common import console, current_settings, error_console, prefect_api
from leadflow.errors import LeadflowError
from leadflow.settings import Settings

if TYPE_CHECKING:
    from flows.trial_invite import CampaignSummary

campaign_app = typer.Typer(help="Launch and preview campaigns.", no_args_is_help=True)


class CampaignKind(StrEnum):
    TRIAL_INVITE = "trial-invite"



def print_campaign_summary(summary: CampaignSummary, ui_url: str | None) -> None:
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
            ("deferral replies, retried with backoff", run.deferred),
            ("still deferred", summary.still_deferred),
            ("bounced, now suppressed", run.bounced),
            ("on the suppression list at send time", run.suppressed),
            ("failed", run.failed),
            ("ambiguous (leadflow deliveries ambiguous)", run.ambiguous + summary.recovered_ambiguous),
        ]
    for label, count in rows:
        table.add_row(label, f"{count:,}")
    console.print(table)
    if not summary.dry_run and run.sent:
        console.print(f"Emails went to {summary.destination}.")
    if ui_url:
        console.print(f"Runs, logs and the summary artifact: {ui_url}/runs")


def campaign_name(name: str) -> str:
    """Return the normalised campaign name, or raise `LeadflowError` naming the rule it breaks."""
    from flows.trial_invite import CAMPAIGN_NAME_PATTERN, normalize_campaign_name

    if not re.match(CAMPAIGN_NAME_PATTERN, name):
        raise LeadflowError(
            f"invalid campaign name {name!r}: use up to 100 letters, digits, spaces, dots, dashes and underscores, "
            "starting with a letter or digit"
        )
    return normalize_campaign_name(name)


def _launch_progress(settings: Settings, name: str, limit: int | None, dry_run: bool) -> AbstractContextManager[None]:
    from flows.trial_invite import STEP
    from leadflow.cli.progress import bar_enabled, count_invites_to_send, ledger_progress

    if dry_run or not bar_enabled():
        return nullcontext()
    total = count_invites_to_send(settings, name, limit)
    return ledger_progress(kind=STEP, name=name, step=STEP, total=total, label=f"sending trial-invite/{name}")


def launch_campaign(settings: Settings, name: str, limit: int | None, dry_run: bool, senders: int = 0) -> CampaignSummary:
    from flows.trial_invite import trial_invite

    name = campaign_name(name)

    with prefect_api(settings) as ui_url, _launch_progress(settings, name, limit, dry_run):
        state = trial_invite(name=name, limit=limit, dry_run=dry_run, senders=senders, return_state=True)
        result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the trial-invite flow run failed: {result}") from result
    print_campaign_summary(result, ui_url)
    return result


@campaign_app.command("launch")
def campaignlaunch_campaign(
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
    senders: Annotated[
        int,
        typer.Option(
            "--senders", min=0, max=64,
            help="Send through N campaign-sender runs at once, run by Prefect workers or `leadflow serve`; "
            "0 sends from this process.",
        ),
    ] = 0,
) -> None:
    """Send a campaign through its Prefect flow and print the summary."""
    summary = launch_campaign(current_settings(), name, limit, dry_run, senders)
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

    settings = current_settings()
    name = campaign_name(name)
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


