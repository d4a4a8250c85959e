"""`leadflow deliveries`, `leadflow suppression` and `leadflow leads erase`: the operator's delivery commands."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from leadflow.cli.common import console, error_console
from leadflow.cli.leads import leads_app
from leadflow.errors import LeadflowError

deliveries_app = typer.Typer(help="List and resolve sends whose outcome is unknown.", no_args_is_help=True)
suppression_app = typer.Typer(help="The suppression list: addresses no campaign may email.", no_args_is_help=True)

REASONS = ("unsubscribe", "hard-bounce", "manual")


def mask_address(email: str) -> str:
    """Return `email` with the local part hidden but its first character, as logs and listings show it."""
    local, at, domain = email.partition("@")
    return f"{local[:1]}***{at}{domain}" if at else "***"


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


@deliveries_app.command("ambiguous")
def deliveries_ambiguous(
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign name.")] = None,
) -> None:
    """List the sends that may or may not have reached the mail server, oldest first.

    Check each Message-ID in the mail server's log, then record what you found with
    `leadflow deliveries resolve`. leadflow never resends these on its own.
    """
    from models import session_scope
    from tasks.recovery import list_ambiguous

    with session_scope() as session:
        sends = list_ambiguous(session=session, campaign_name=campaign.strip().lower() if campaign else None)
    if not sends:
        console.print("No ambiguous sends.")
        return
    # One line per send, never wrapped, so each Message-ID can be copied whole.
    console.print(f"{len(sends):,} ambiguous sends (Message-ID, campaign, lead, address, handed over, reason):")
    for send in sends:
        moment = f"{send.claimed_at:%Y-%m-%d %H:%M:%S} UTC" if send.claimed_at else "-"
        console.print(
            f"{send.message_id}  {send.campaign}  lead {send.lead_id}  {mask_address(send.email)}  {moment}  {send.error or ''}",
            markup=False, highlight=False,
        )


@deliveries_app.command("resolve")
def deliveries_resolve(
    message_ids: Annotated[list[str], typer.Argument(metavar="MESSAGE_ID...", help="Message-IDs from `deliveries ambiguous`, with or without <>.")],
    outcome: Annotated[
        str,
        typer.Option(
            "--as",
            help="sent: the server has it; resend: it never arrived, send it at the next launch; "
            "bounced: the server rejected the recipient, suppress the lead.",
        ),
    ],
) -> None:
    """Record what the mail server's log shows for ambiguous sends."""
    from leadflow.clock import now
    from models import session_scope
    from tasks.recovery import Resolution

    try:
        resolution = Resolution(outcome)
    except ValueError:
        raise LeadflowError(f"--as {outcome!r} is not one of: sent, resend, bounced") from None
    from tasks.recovery import resolve_ambiguous

    with session_scope() as session:
        unknown = resolve_ambiguous(
            session=session, message_ids=message_ids, resolution=resolution, actor=_operator(), at=now()
        )
    for message_id in unknown:
        error_console.print(f"{message_id}: not found among the ambiguous sends; check it with: leadflow deliveries ambiguous")
    console.print(f"Resolved {len(set(message_ids)) - len(unknown):,} sends as {resolution.value}.")
    if unknown:
        raise typer.Exit(code=1)


@suppression_app.command("add")
def suppression_add(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="Address to suppress.")],
    reason: Annotated[str, typer.Option("--reason", help="unsubscribe, hard-bounce or manual.")] = "manual",
) -> None:
    """Put one address on the suppression list; its lead, now or imported later, gets no campaign email."""
    from leadflow.clock import now
    from models import SuppressionReason, session_scope
    from tasks.email_address import InvalidEmailAddress, normalize_email
    from tasks.suppression import suppress_address

    if reason not in REASONS:
        raise LeadflowError(f"--reason {reason!r} is not one of: {', '.join(REASONS)}")
    try:
        address = normalize_email(email)
    except InvalidEmailAddress as exc:
        raise LeadflowError(f"EMAIL: {exc}") from exc
    with session_scope() as session:
        added = suppress_address(
            session=session, email=address, reason=SuppressionReason(reason), source=_operator(), at=now()
        )
    console.print(f"{mask_address(address)} {'added to' if added else 'was already on'} the suppression list.")


@suppression_app.command("import")
def suppression_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV file with a header row and an email column.")],
    reason: Annotated[str, typer.Option("--reason", help="unsubscribe, hard-bounce or manual.")] = "manual",
) -> None:
    """Add every address of a CSV file to the suppression list; a value of 64 hex digits is taken as a SHA-256 hash."""
    from leadflow.clock import now
    from models import SuppressionReason, session_scope
    from tasks.suppression_import import import_suppressions

    if reason not in REASONS:
        raise LeadflowError(f"--reason {reason!r} is not one of: {', '.join(REASONS)}")
    with session_scope() as session:
        summary = import_suppressions(file, session=session, reason=SuppressionReason(reason), at=now())
    for line, problem in summary.rejections[:20]:
        console.print(f"  line {line}: rejected, {problem}")
    console.print(
        f"read {summary.read:,} rows: {summary.added:,} added, {summary.already_listed:,} already listed or repeated, "
        f"{summary.rejected:,} rejected; {summary.leads_suppressed:,} leads newly suppressed"
    )


def leads_erase(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="Address of the lead to erase.")],
    yes: Annotated[bool, typer.Option("--yes", help="Erase without asking.")] = False,
) -> None:
    """Erase a lead's personal data on request; the address hash stays on the suppression list."""
    from leadflow.clock import now
    from models import session_scope
    from tasks.erasure import erase_lead

    if not yes and not typer.confirm(f"Erase the personal data of {email.strip()}? This cannot be undone."):
        raise typer.Exit(code=1)
    with session_scope() as session:
        lead_id = erase_lead(session=session, email=email, actor=_operator(), at=now())
    if lead_id is None:
        console.print("No lead has that address; its hash is on the suppression list, so a later import stays suppressed.")
    else:
        console.print(f"Erased lead {lead_id}; its address hash stays on the suppression list.")


def register(app: typer.Typer) -> None:
    """Add these command groups to the `leadflow` application."""
    app.add_typer(deliveries_app, name="deliveries")
    app.add_typer(suppression_app, name="suppression")
    leads_app.command("erase")(leads_erase)
