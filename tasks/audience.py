"""Audience queries for campaign steps, read in id order so memory stays flat on large lists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, update
from sqlmodel import Session, col, select

from models import RETRYABLE_STATUSES, EmailSend, Lead, Stage


def _not_customer() -> Any:
    return and_(col(Lead.is_customer).is_(False), col(Lead.stage) != Stage.CUSTOMER.value)


def _not_suppressed() -> Any:
    return and_(col(Lead.suppressed_at).is_(None), col(Lead.unsubscribed_at).is_(None))


def _still_subscriber() -> Any:
    return and_(col(Lead.stage) == Stage.SUBSCRIBER.value, col(Lead.trial_started_at).is_(None))


def invite_conditions() -> list[Any]:
    """SQL conditions for a trial invite: a subscriber, not a customer, not suppressed, not in a trial."""
    return [_not_customer(), _not_suppressed(), _still_subscriber()]


def _key_taken(campaign_id: int, step: str) -> Any:
    """Match leads with a ledger row in a status that keeps the key taken (any status not retryable)."""
    return exists().where(
        col(EmailSend.campaign_id) == campaign_id,
        col(EmailSend.lead_id) == Lead.id,
        col(EmailSend.step) == step,
        col(EmailSend.status).not_in([status.value for status in RETRYABLE_STATUSES]),
    )


def select_invite_batch(
    *, session: Session, campaign_id: int | None, step: str, after_id: int, size: int
) -> list[int]:
    """Return up to `size` ids above `after_id` of leads who should get the invite and have not had it."""
    statement = select(Lead.id).where(*invite_conditions(), col(Lead.id) > after_id)
    if campaign_id is not None:
        statement = statement.where(~_key_taken(campaign_id, step))
    statement = statement.order_by(col(Lead.id)).limit(size)
    return [lead_id for lead_id in session.exec(statement) if lead_id is not None]


@dataclass(frozen=True)
class InviteAudience:
    """Lead counts of the mailing list for one trial-invite campaign, by reason."""

    leads: int
    customers: int
    suppressed: int
    past_subscriber: int
    """Already in a trial or further along the funnel."""
    eligible: int
    already_handled: int
    """Eligible leads whose ledger key is already taken (sent, bounced, ambiguous, in flight)."""

    @property
    def remaining(self) -> int:
        return self.eligible - self.already_handled


def count_invite_audience(*, session: Session, campaign_id: int | None, step: str) -> InviteAudience:
    """Count the list by why each lead will or will not get the invite, in one pass over the leads table."""
    customer = ~_not_customer()
    suppressed = and_(_not_customer(), ~_not_suppressed())
    past_subscriber = and_(_not_customer(), _not_suppressed(), ~_still_subscriber())
    eligible = and_(*invite_conditions())
    handled = and_(eligible, _key_taken(campaign_id, step)) if campaign_id is not None else None

    columns = [
        func.count(),
        func.count().filter(customer),
        func.count().filter(suppressed),
        func.count().filter(past_subscriber),
        func.count().filter(eligible),
    ]
    if handled is not None:
        columns.append(func.count().filter(handled))
    row = session.exec(select(*columns).select_from(Lead)).one()
    return InviteAudience(
        leads=row[0],
        customers=row[1],
        suppressed=row[2],
        past_subscriber=row[3],
        eligible=row[4],
        already_handled=row[5] if handled is not None else 0,
    )


def lead_is_invitable(lead: Lead) -> bool:
    """Check in Python what `invite_conditions` checks in SQL; used again at send time."""
    return (
        not lead.is_customer
        and lead.stage == Stage.SUBSCRIBER.value
        and lead.suppressed_at is None
        and lead.unsubscribed_at is None
        and lead.trial_started_at is None
    )



def suppress_leads(*, session: Session, lead_ids: list[int], reason: str, at: datetime) -> None:
    """Suppress `lead_ids` so that no campaign emails them again; an earlier suppression is kept."""
    session.execute(
        update(Lead)
        .where(col(Lead.id).in_(lead_ids), col(Lead.suppressed_at).is_(None))
        .values(suppressed_at=at, suppression_reason=reason[:200], updated_at=at)
    )
