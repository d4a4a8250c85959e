"""The email ledger: claim a key before sending, record the outcome after.

A key is (campaign, lead, step). Claiming inserts the row in status `sending`, or
takes back a row whose earlier attempt is known not to have been delivered
(`deferred`, `failed`). The database's unique constraint decides races: of two
runs claiming the same key, only one gets it back from the claim.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models import RETRYABLE_STATUSES, Campaign, EmailSend, SendStatus
from tasks.render_email import make_message_id


@dataclass(frozen=True)
class Claim:
    ledger_id: int
    lead_id: int
    message_id: str
    attempts: int


@dataclass(frozen=True)
class Outcome:
    ledger_id: int
    status: SendStatus
    at: datetime
    error: str | None = None
    smtp_code: int | None = None


def get_or_create_campaign(*, session: Session, kind: str, name: str) -> tuple[Campaign, bool]:
    """Return the campaign `kind/name` and whether this call created it."""
    campaign = session.exec(select(Campaign).where(Campaign.kind == kind, Campaign.name == name)).first()
    if campaign is not None:
        return campaign, False
    campaign = Campaign(kind=kind, name=name)
    session.add(campaign)
    session.flush()
    return campaign, True


def _insert_for(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the email ledger supports SQLite and PostgreSQL, not {dialect}")


def claim_sends(
    *,
    session: Session,
    campaign: Campaign,
    lead_ids: list[int],
    step: str,
    actor: str,
    at: datetime,
    domain: str,
) -> list[Claim]:
    """Claim the keys of `lead_ids` for this run and return the ones it got.

    A key already `sent`, `sending`, `bounced` or `ambiguous` is left alone and not returned.
    """
    if not lead_ids:
        return []
    rows = [
        {
            "campaign_id": campaign.id,
            "lead_id": lead_id,
            "step": step,
            "status": SendStatus.SENDING.value,
            "message_id": make_message_id(
                campaign_public_id=campaign.public_id, lead_id=lead_id, step=step, domain=domain
            ),
            "attempts": 1,
            "claimed_by": actor,
            "created_at": at,
            "claimed_at": at,
        }
        for lead_id in lead_ids
    ]
    insert = _insert_for(session)
    table = EmailSend.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["campaign_id", "lead_id", "step"],
        set_={
            "status": SendStatus.SENDING.value,
            "attempts": table.c.attempts + 1,
            "claimed_by": actor,
            "claimed_at": at,
            "error": None,
            "smtp_code": None,
        },
        # Plain comparisons: an IN list cannot be expanded inside an executemany.
        where=or_(*(table.c.status == status.value for status in sorted(RETRYABLE_STATUSES))),
    ).returning(table.c.id, table.c.lead_id, table.c.message_id, table.c.attempts)

    # SQLAlchemy sends the rows as multi-row INSERTs; RETURNING yields only the rows
    # this statement inserted or took back.
    result = session.execute(statement, rows)
    return [
        Claim(ledger_id=row.id, lead_id=row.lead_id, message_id=row.message_id, attempts=row.attempts)
        for row in result
    ]


def record_outcomes(*, session: Session, outcomes: list[Outcome]) -> None:
    """Write the outcome of each claimed send in one statement per status kind."""
    rows = [
        {
            "id": outcome.ledger_id,
            "status": outcome.status.value,
            "sent_at": outcome.at if outcome.status is SendStatus.SENT else None,
            "error": (outcome.error or None) and outcome.error[:1000],
            "smtp_code": outcome.smtp_code,
        }
        for outcome in outcomes
    ]
    if rows:
        session.execute(update(EmailSend), rows)


def mark_stale_sends_ambiguous(
    *, session: Session, campaign: Campaign, step: str, at: datetime, lease: timedelta
) -> int:
    """Mark `sending` rows older than `lease` as ambiguous and return how many.

    Such a row belongs to a run that died while handing the message over, so the
    server may or may not have it. An operator decides; leadflow does not resend it.
    """
    result = session.execute(
        update(EmailSend)
        .where(
            col(EmailSend.campaign_id) == campaign.id,
            col(EmailSend.step) == step,
            col(EmailSend.status) == SendStatus.SENDING.value,
            col(EmailSend.claimed_at) < at - lease,
        )
        .values(status=SendStatus.AMBIGUOUS.value, error="the run that was sending it stopped before recording the outcome")
    )
    return result.rowcount or 0


def count_by_status(*, session: Session, campaign: Campaign, step: str) -> dict[str, int]:
    """Return the number of ledger rows of this campaign step in each status."""
    statement = (
        select(EmailSend.status, func.count())
        .where(EmailSend.campaign_id == campaign.id, EmailSend.step == step)
        .group_by(EmailSend.status)
    )
    return {status: count for status, count in session.exec(statement)}
