"""Erase a lead on request: remove its personal data and keep only the hash of its address on the suppression list."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from models import EmailSend, Lead, SurveyResponse, SuppressionReason
from tasks.suppression import address_hash, add_hashes

ERASED_DOMAIN = "erased.invalid"
"""Domain of the placeholder addresses of erased leads; `.invalid` is reserved and never delivers (RFC 2606)."""


def erase_lead(*, session: Session, email: str, actor: str, at: datetime) -> int | None:
    """Erase the lead with address `email` and return its id, or None when no lead has that address.

    The row stays, so funnel counts and the ledger keep adding up. Its address
    becomes `erased-<id>@erased.invalid`, and its names, company, title and source
    are cleared. Its survey answers are deleted, and so are its ledger error texts,
    which can quote the address in the server's reply. The address hash goes on the
    suppression list even when no lead has the address, so a later import of it is
    suppressed.
    """
    normalized = email.strip().lower()
    add_hashes(session=session, hashes=[address_hash(normalized)], reason=SuppressionReason.ERASURE, source=actor, at=at)
    lead = session.exec(select(Lead).where(Lead.email == normalized)).first()
    if lead is None or lead.id is None:
        return None

    lead.email = f"erased-{lead.id}@{ERASED_DOMAIN}"
    lead.first_name = lead.last_name = lead.company = lead.title = lead.source = None
    lead.suppressed_at = lead.suppressed_at or at
    lead.suppression_reason = "erased on request"
    lead.updated_at = at
    session.add(lead)
    session.execute(delete(SurveyResponse).where(col(SurveyResponse.lead_id) == lead.id))
    session.execute(update(EmailSend).where(col(EmailSend.lead_id) == lead.id).values(error=None))
    return lead.id
