"""Recover the ledger rows of worker processes that died, and let an operator resolve ambiguous sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from models import IN_FLIGHT_STATUSES, Campaign, EmailSend, Lead, SendStatus, SuppressionReason
from tasks.liveness import current_owner, owner_is_dead
from tasks.suppression import suppress_leads


@dataclass(frozen=True)
class Recovered:
    released: int
    """Queued sends that were never handed over; the next claim sends them."""
    ambiguous: int
    """Sends that were being handed over; an operator decides."""


def _dead_owners(*, session: Session, campaign: Campaign, step: str, wall_time: datetime, lease: timedelta) -> list[str | None]:
    """Return the owners of in-flight rows of this campaign step that are dead, or silent for longer than `lease`."""
    statement = (
        select(EmailSend.owner, func.max(EmailSend.claimed_at))
        .where(
            col(EmailSend.campaign_id) == campaign.id,
            col(EmailSend.step) == step,
            col(EmailSend.status).in_([status.value for status in IN_FLIGHT_STATUSES]),
        )
        .group_by(EmailSend.owner)
    )
    me = current_owner()
    dead: list[str | None] = []
    for owner, last_seen in session.exec(statement):
        if owner == me:
            continue
        known = owner_is_dead(owner) if owner else None
        if known is None:
            known = last_seen is None or last_seen < wall_time - lease
        if known:
            dead.append(owner)
    return dead


def recover_abandoned_sends(
    *, session: Session, campaign: Campaign, step: str, wall_time: datetime, lease: timedelta
) -> Recovered:
    """Release the queued rows and mark ambiguous the `sending` rows of dead workers of this campaign step.

    A worker is dead when its process is checked and gone (same host), or when it
    has not claimed or handed over anything for `lease` (any host). A queued row
    was never handed to the server, so sending it again cannot duplicate it. A
    `sending` row may have reached the server, so it is never resent automatically.
    """
    released = ambiguous = 0
    for owner in _dead_owners(session=session, campaign=campaign, step=step, wall_time=wall_time, lease=lease):
        owned = col(EmailSend.owner).is_(None) if owner is None else col(EmailSend.owner) == owner
        scope = (col(EmailSend.campaign_id) == campaign.id, col(EmailSend.step) == step, owned)
        released += session.execute(
            update(EmailSend)
            .where(*scope, col(EmailSend.status) == SendStatus.QUEUED.value)
            .values(
                status=SendStatus.RELEASED.value,
                attempts=col(EmailSend.attempts) - 1,
                error="the worker that queued it stopped before handing it over",
            )
        ).rowcount or 0
        ambiguous += session.execute(
            update(EmailSend)
            .where(*scope, col(EmailSend.status) == SendStatus.SENDING.value)
            .values(
                status=SendStatus.AMBIGUOUS.value,
                error="the worker stopped while handing it to the mail server; the server may have it",
            )
        ).rowcount or 0
    return Recovered(released=released, ambiguous=ambiguous)


@dataclass(frozen=True)
class AmbiguousSend:
    ledger_id: int
    campaign: str
    step: str
    lead_id: int
    email: str
    message_id: str
    claimed_at: datetime | None
    error: str | None


def list_ambiguous(*, session: Session, campaign_name: str | None = None) -> list[AmbiguousSend]:
    """Return every ambiguous send, oldest claim first, optionally of campaigns named `campaign_name`."""
    statement = (
        select(EmailSend, Campaign, Lead)
        .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
        .join(Lead, col(Lead.id) == EmailSend.lead_id)
        .where(col(EmailSend.status) == SendStatus.AMBIGUOUS.value)
        .order_by(col(EmailSend.claimed_at), col(EmailSend.id))
    )
    if campaign_name is not None:
        statement = statement.where(col(Campaign.name) == campaign_name)
    return [
        AmbiguousSend(
            ledger_id=send.id or 0, campaign=f"{campaign.kind}/{campaign.name}", step=send.step, lead_id=lead.id or 0,
            email=lead.email, message_id=send.message_id, claimed_at=send.claimed_at, error=send.error,
        )
        for send, campaign, lead in session.exec(statement)
    ]


class Resolution(StrEnum):
    SENT = "sent"
    """The server's log shows it accepted the message."""
    RESEND = "resend"
    """The server never accepted it: the next launch sends it again."""
    BOUNCED = "bounced"
    """The server rejected the recipient for good: the lead is suppressed."""


def resolve_ambiguous(
    *, session: Session, message_ids: list[str], resolution: Resolution, actor: str, at: datetime
) -> list[str]:
    """Record an operator's decision on ambiguous sends; return the Message-IDs that were not ambiguous."""
    wanted = {f"<{value.strip().strip('<>')}>" for value in message_ids}
    sends = list(
        session.exec(
            select(EmailSend).where(
                col(EmailSend.message_id).in_(wanted), col(EmailSend.status) == SendStatus.AMBIGUOUS.value
            )
        )
    )
    note = f"resolved as {resolution.value} by {actor}"
    for send in sends:
        send.error = note
        if resolution is Resolution.SENT:
            send.status, send.sent_at = SendStatus.SENT.value, at
        elif resolution is Resolution.RESEND:
            # Released rows are claimed again without counting this attempt.
            send.status, send.attempts = SendStatus.RELEASED.value, max(send.attempts - 1, 0)
        else:
            send.status = SendStatus.BOUNCED.value
        session.add(send)
    if resolution is Resolution.BOUNCED and sends:
        leads = list(session.exec(select(Lead).where(col(Lead.id).in_([send.lead_id for send in sends]))))
        suppress_leads(session=session, leads=leads, reason=SuppressionReason.HARD_BOUNCE, note=note, at=at)
    return sorted(wanted - {send.message_id for send in sends})
