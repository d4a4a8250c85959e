"""Audience queries for campaign steps, read in id order so memory stays flat on large lists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func
from sqlmodel import Session, col, select

from models import RETRYABLE_STATUSES, EmailSend, Lead, SendStatus, Stage


def _not_customer() -> Any:
    return and_(col(Lead.is_customer).is_(False), col(Lead.stage) != Stage.CUSTOMER.value)


def _not_suppressed() -> Any:
    return and_(col(Lead.suppressed_at).is_(None), col(Lead.unsubscribed_at).is_(None))


def _still_subscriber() -> Any:
    return and_(col(Lead.stage) == Stage.SUBSCRIBER.value, col(Lead.trial_started_at).is_(None))


# Ledger statuses that mean a lead may have the email: it counts as invited.
_DELIVERED_OR_MAYBE = (SendStatus.SENT.value, SendStatus.SENDING.value, SendStatus.AMBIGUOUS.value)


def _invited_elsewhere(*, campaign_id: int | None, step: str, since: datetime) -> Any:
    """Match leads that another campaign sent `step` to at or after `since`."""
    condition = exists().where(
        col(EmailSend.lead_id) == Lead.id,
        col(EmailSend.step) == step,
        col(EmailSend.status).in_(_DELIVERED_OR_MAYBE),
        col(EmailSend.created_at) >= since,
    )
    if campaign_id is not None:
        condition = condition.where(col(EmailSend.campaign_id) != campaign_id)
    return condition


def invite_conditions(
    *, campaign_id: int | None = None, step: str = "trial-invite", invited_since: datetime | None = None
) -> list[Any]:
    """SQL conditions for a trial invite: a subscriber, not a customer, not suppressed, not in a trial.

    With `invited_since`, a lead that another campaign invited at or after that time is left out too.
    """
    conditions = [_not_customer(), _not_suppressed(), _still_subscriber()]
    if invited_since is not None:
        conditions.append(~_invited_elsewhere(campaign_id=campaign_id, step=step, since=invited_since))
    return conditions


def _key_taken(campaign_id: int, step: str) -> Any:
    """Match leads with a ledger row in a status that keeps the key taken (any status not retryable)."""
    return exists().where(
        col(EmailSend.campaign_id) == campaign_id,
        col(EmailSend.lead_id) == Lead.id,
        col(EmailSend.step) == step,
        col(EmailSend.status).not_in([status.value for status in RETRYABLE_STATUSES]),
    )


def select_lead_batch(
    *, session: Session, conditions: list[Any], campaign_id: int | None, step: str, after_id: int, size: int
) -> list[int]:
    """Return up to `size` ids above `after_id` of leads that meet `conditions` and whose ledger key is free."""
    statement = select(Lead.id).where(*conditions, col(Lead.id) > after_id)
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
    recently_invited: int
    """Invited by another campaign within the cooldown."""
    eligible: int
    already_handled: int
    """Eligible leads whose ledger key is already taken (sent, bounced, ambiguous, in flight)."""

    @property
    def remaining(self) -> int:
        return self.eligible - self.already_handled


def count_invite_audience(
    *, session: Session, campaign_id: int | None, step: str, invited_since: datetime | None
) -> InviteAudience:
    """Count the list by why each lead will or will not get the invite, in one pass over the leads table."""
    customer = ~_not_customer()
    suppressed = and_(_not_customer(), ~_not_suppressed())
    past_subscriber = and_(_not_customer(), _not_suppressed(), ~_still_subscriber())
    by_stage = and_(*invite_conditions())
    eligible = and_(*invite_conditions(campaign_id=campaign_id, step=step, invited_since=invited_since))
    recently_invited = and_(by_stage, ~eligible)
    handled = and_(eligible, _key_taken(campaign_id, step)) if campaign_id is not None else None

    columns = [
        func.count(),
        func.count().filter(customer),
        func.count().filter(suppressed),
        func.count().filter(past_subscriber),
        func.count().filter(recently_invited),
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
        recently_invited=row[4],
        eligible=row[5],
        already_handled=row[6] if handled is not None else 0,
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



def survey_conditions(*, at: datetime, offset_hours: float) -> list[Any]:
    """SQL conditions for the survey email at time `at`: an `mql` lead whose trial ends within the offset."""
    return [
        _not_customer(),
        _not_suppressed(),
        col(Lead.stage) == Stage.MQL.value,
        col(Lead.trial_ends_at).is_not(None),
        col(Lead.trial_ends_at) <= at + timedelta(hours=offset_hours),
    ]


def lead_gets_survey(lead: Lead, *, at: datetime, offset_hours: float) -> bool:
    """Check in Python what `survey_conditions` checks in SQL; used again at send time."""
    return (
        not lead.is_customer
        and lead.stage == Stage.MQL.value
        and lead.suppressed_at is None
        and lead.unsubscribed_at is None
        and lead.trial_ends_at is not None
        and lead.trial_ends_at <= at + timedelta(hours=offset_hours)
    )


def count_due(*, session: Session, conditions: list[Any], campaign_id: int | None, step: str) -> tuple[int, int]:
    """Return how many leads meet `conditions`, and how many of those have their ledger key taken."""
    matching = and_(*conditions)
    columns = [func.count().filter(matching)]
    if campaign_id is not None:
        columns.append(func.count().filter(and_(matching, _key_taken(campaign_id, step))))
    row = session.exec(select(*columns).select_from(Lead)).one()
    return row[0], (row[1] if campaign_id is not None else 0)


def pending_survey_ends(
    *, session: Session, campaign_id: int | None, step: str, after: datetime
) -> list[datetime]:
    """Return the distinct trial end times of `mql` leads that still wait for a survey email due after `after`.

    `after` is compared with the trial end, so the caller subtracts the offset.
    """
    statement = (
        select(Lead.trial_ends_at)
        .where(
            _not_customer(),
            _not_suppressed(),
            col(Lead.stage) == Stage.MQL.value,
            col(Lead.trial_ends_at) > after,
        )
        .distinct()
    )
    if campaign_id is not None:
        statement = statement.where(~_key_taken(campaign_id, step))
    return [moment for moment in session.exec(statement) if moment is not None]
