"""The suppression list: add addresses, and keep leads that match it out of every campaign.

Entries are keyed by the SHA-256 of the trimmed, lower-cased address, so an entry
stays after its lead is erased and still matches when the address is imported
again. Plain SHA-256 rather than an HMAC: a keyed hash would stop matching
the moment the key changed, and a lost or rotated key would quietly let erased and
unsubscribed people be emailed again. The cost is that someone who can read the
table can confirm a guessed address; docs/delivery.md weighs the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from models import Lead, Suppression, SuppressionReason


def address_hash(email: str) -> str:
    """Return the hex SHA-256 of `email` trimmed and lower-cased, the key of the suppression list."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def add_hashes(
    *, session: Session, hashes: Iterable[str], reason: SuppressionReason, source: str, at: datetime
) -> int:
    """Add address hashes to the list and return how many were new; a listed hash keeps its first reason."""
    rows = [
        {"address_hash": value, "reason": reason.value, "source": source[:200], "created_at": at}
        for value in dict.fromkeys(hashes)
    ]
    if not rows:
        return 0
    already = set(session.exec(select(Suppression.address_hash).where(col(Suppression.address_hash).in_([row["address_hash"] for row in rows]))))
    # Imported here because tasks.ledger loads Jinja for the email templates, and
    # importing a list, which uses this module, needs neither.
    from tasks.ledger import dialect_insert

    insert = dialect_insert(session)
    statement = insert(Suppression.__table__).on_conflict_do_nothing(index_elements=["address_hash"])  # type: ignore[attr-defined]
    session.execute(statement, rows)
    return len([row for row in rows if row["address_hash"] not in already])


def mark_lead_suppressed(lead: Lead, *, reason: SuppressionReason, note: str, at: datetime) -> None:
    """Set the lead's suppression fields; an earlier suppression or unsubscribe time is kept."""
    if lead.suppressed_at is None:
        lead.suppressed_at = at
        lead.suppression_reason = note[:200]
    if reason is SuppressionReason.UNSUBSCRIBE and lead.unsubscribed_at is None:
        lead.unsubscribed_at = at
    lead.updated_at = at


def suppress_leads(
    *, session: Session, leads: list[Lead], reason: SuppressionReason, note: str, at: datetime
) -> int:
    """Put the addresses of `leads` on the list and mark the leads suppressed; return how many entries were new."""
    for lead in leads:
        mark_lead_suppressed(lead, reason=reason, note=note, at=at)
        session.add(lead)
    return add_hashes(session=session, hashes=[address_hash(lead.email) for lead in leads], reason=reason, source=note, at=at)


def suppress_address(
    *, session: Session, email: str, reason: SuppressionReason, source: str, at: datetime
) -> bool:
    """Put one address on the list and mark its lead, if any; return True when the address was not listed before."""
    lead = session.exec(select(Lead).where(Lead.email == email.strip().lower())).first()
    if lead is not None:
        mark_lead_suppressed(lead, reason=reason, note=f"{reason.value} ({source})", at=at)
        session.add(lead)
    return add_hashes(session=session, hashes=[address_hash(email)], reason=reason, source=source, at=at) == 1


def listed_reasons(*, session: Session, emails: Iterable[str]) -> dict[str, str]:
    """Return, for each of `emails` that is on the list, the reason it was listed for."""
    # While the list is empty, as before the first unsubscribe or bounce, this one-row
    # query replaces hashing every address and looking up as many hashes.
    if session.exec(select(Suppression.address_hash).limit(1)).first() is None:
        return {}
    by_hash = {address_hash(email): email for email in emails}
    if not by_hash:
        return {}
    statement = select(Suppression.address_hash, Suppression.reason).where(col(Suppression.address_hash).in_(list(by_hash)))
    return {by_hash[value]: reason for value, reason in session.exec(statement)}


def mark_listed_leads(*, session: Session, emails: Iterable[str], at: datetime) -> int:
    """Mark suppressed every lead among `emails` whose address is on the list; return how many changed.

    Importers call this after writing leads, so an address that was unsubscribed,
    bounced or erased stays out of campaigns when it comes back in a list.
    """
    changed = 0
    for email, reason in listed_reasons(session=session, emails=emails).items():
        result = session.execute(
            update(Lead)
            .where(col(Lead.email) == email, col(Lead.suppressed_at).is_(None))
            .values(suppressed_at=at, suppression_reason=f"on the suppression list ({reason})", updated_at=at)
        )
        changed += result.rowcount or 0
    return changed
