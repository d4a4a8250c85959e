"""Unsubscribing: the one function that the unsubscribe page and the one-click POST call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from models import Lead, SuppressionReason
from tasks.suppression import suppress_leads


@dataclass(frozen=True)
class UnsubscribeResult:
    lead_id: int
    found: bool
    """False when no lead has this id (it was deleted); nothing changed."""
    changed: bool
    """True when this call unsubscribed the lead; False when it was unsubscribed before."""
    unsubscribed_at: datetime | None


def unsubscribe_lead(lead_id: int, *, session: Session, at: datetime) -> UnsubscribeResult:
    """Mark lead `lead_id` unsubscribed at `at`, so that no campaign emails it again.

    The audience queries and the send-time checks exclude every lead with
    `unsubscribed_at` set, and the address goes on the suppression list. A second call keeps the first time and changes nothing.
    The stage stays as it is, because unsubscribing is not a step of the funnel.
    """
    lead = session.get(Lead, lead_id)
    if lead is None:
        return UnsubscribeResult(lead_id, found=False, changed=False, unsubscribed_at=None)
    if lead.unsubscribed_at is not None:
        return UnsubscribeResult(lead_id, found=True, changed=False, unsubscribed_at=lead.unsubscribed_at)

    # The suppression list keeps the address hash, so a later import or an erasure
    # of the lead cannot bring the address back into a campaign.
    suppress_leads(session=session, leads=[lead], reason=SuppressionReason.UNSUBSCRIBE, note="unsubscribed", at=at)
    return UnsubscribeResult(lead_id, found=True, changed=True, unsubscribed_at=at)
