"""Retry deferred sends within a run: wait for their backoff, then send them again through the same ledger."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, or_
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from leadflow.clock import wall_clock
from leadflow.settings import Settings
from models import EmailSend, Lead, SendStatus, session_scope
from tasks.send import BatchResult

MIN_PAUSE_SECONDS = 0.25
"""Shortest pause between two retry passes, so a send that stays due but cannot be claimed cannot spin the loop."""


def _retryable_deferred(*, campaign_id: int, step: str, max_attempts: int) -> Any:
    return and_(
        col(EmailSend.campaign_id) == campaign_id,
        col(EmailSend.step) == step,
        col(EmailSend.status) == SendStatus.DEFERRED.value,
        col(EmailSend.attempts) < max_attempts,
    )


def select_due_deferred(
    *, session: Session, conditions: list[Any], campaign_id: int, step: str, max_attempts: int,
    wall_time: datetime, after_id: int, size: int,
) -> list[int]:
    """Return up to `size` ids above `after_id` of leads meeting `conditions` whose deferred send is due now."""
    due = exists().where(
        col(EmailSend.lead_id) == Lead.id,
        _retryable_deferred(campaign_id=campaign_id, step=step, max_attempts=max_attempts),
        or_(col(EmailSend.next_attempt_at).is_(None), col(EmailSend.next_attempt_at) <= wall_time),
    )
    statement = select(Lead.id).where(*conditions, due, col(Lead.id) > after_id).order_by(col(Lead.id)).limit(size)
    return [lead_id for lead_id in session.exec(statement) if lead_id is not None]


def next_deferred_time(
    *, session: Session, conditions: list[Any], campaign_id: int, step: str, max_attempts: int
) -> datetime | None:
    """Return when the next deferred send of leads meeting `conditions` becomes due, or None when none is left to retry."""
    # An alias, so the ledger subqueries inside `conditions` do not correlate with this query's ledger rows.
    deferred = aliased(EmailSend)
    statement = select(func.min(func.coalesce(deferred.next_attempt_at, deferred.claimed_at))).where(
        deferred.campaign_id == campaign_id,
        deferred.step == step,
        deferred.status == SendStatus.DEFERRED.value,
        deferred.attempts < max_attempts,
        col(deferred.lead_id).in_(select(Lead.id).where(*conditions)),
    )
    return session.exec(statement).one()


def retry_deferred_sends(
    send_batch: Callable[[int, list[int]], BatchResult],
    *,
    conditions: list[Any],
    campaign_id: int,
    step: str,
    settings: Settings,
    logger: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    batch_number: int,
) -> BatchResult:
    """Send the deferred sends of this campaign step again as they fall due, for up to `LEADFLOW_RETRY_WAIT_SECONDS`.

    `send_batch(batch_number, lead_ids)` sends one batch (the flow's task). Sends
    still deferred when the wait is used up stay in the ledger for a later run. A
    send with no attempts left is not retried at all.
    """
    totals = BatchResult()
    if settings.retry_wait_seconds == 0:
        return totals
    waited = 0.0
    scope = {"conditions": conditions, "campaign_id": campaign_id, "step": step, "max_attempts": settings.max_send_attempts}
    while True:
        after_id = 0
        while True:
            with session_scope() as session:
                lead_ids = select_due_deferred(
                    session=session, wall_time=wall_clock(), after_id=after_id, size=settings.batch_size, **scope
                )
            if not lead_ids:
                break
            after_id = lead_ids[-1]
            batch_number += 1
            logger.info("retrying %d deferred sends (batch %d)", len(lead_ids), batch_number)
            totals.add(send_batch(batch_number, lead_ids))

        with session_scope() as session:
            upcoming = next_deferred_time(session=session, **scope)
        if upcoming is None:
            return totals
        pause = max((upcoming - wall_clock()).total_seconds(), MIN_PAUSE_SECONDS)
        if waited + pause > settings.retry_wait_seconds:
            logger.warning(
                "deferred sends remain; the next is due in %.0f s, past this run's retry wait, so a later run sends them",
                pause,
            )
            return totals
        time.sleep(pause)
        waited += pause
