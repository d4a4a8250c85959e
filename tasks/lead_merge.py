"""Merge chunks of parsed list rows into the leads table with a few statements per chunk, not one per row."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, Table, bindparam, select, text, update
from sqlmodel import Session

from leadflow.clock import now
from models import ALLOWED_TRANSITIONS, Lead, Stage, StageChange
from models.bulk import insert_many
from tasks.stages import stage_change_values

if TYPE_CHECKING:
    from tasks.import_leads import ImportSummary, ParsedRow
    from tasks.seen_addresses import SeenAddresses

_LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
_HISTORY: Table = StageChange.__table__  # type: ignore[attr-defined]
_PROFILE_COLUMNS = ("first_name", "last_name", "company", "title")
_STORED_COLUMNS = [
    _LEADS.c[name]
    for name in ("id", "email", *_PROFILE_COLUMNS, "stage", "is_customer", "marketing_consent", "suppressed_at")
]
# Built once, because building an IN clause of a thousand values costs more than running it.
_SELECT_STORED = select(*_STORED_COLUMNS).where(_LEADS.c.email.in_(bindparam("emails", expanding=True)))
_SELECT_IDS = select(_LEADS.c.email, _LEADS.c.id).where(_LEADS.c.email.in_(bindparam("emails", expanding=True)))


def _profile_changes(stored: Row[Any], profile: dict[str, str]) -> dict[str, str]:
    """Return the non-empty values of `profile` that differ from the stored lead's."""
    return {name: value for name, value in profile.items() if value and getattr(stored, name) != value}


def _flag_changes(stored: Row[Any], row: ParsedRow, *, file: str, at: datetime) -> dict[str, Any]:
    """Return the consent value and the suppression that `row` adds to the stored lead.

    A suppression is never lifted by an import, so a later "yes" leaves it in place.
    """
    changes: dict[str, Any] = {}
    if row.consent is not None and stored.marketing_consent != row.consent:
        changes["marketing_consent"] = row.consent
    reason = row.suppression_reason
    if reason is not None and stored.suppressed_at is None:
        changes["suppressed_at"] = at
        changes["suppression_reason"] = f"{reason} in {file} line {row.line}"[:200]
    return changes


def _new_lead_values(row: ParsedRow, *, file: str, at: datetime) -> dict[str, Any]:
    """Return the column values of the lead that `row` creates. The columns left out are NULL."""
    reason = row.suppression_reason
    return {
        "email": row.email,
        "first_name": row.profile.get("first_name") or None,
        "last_name": row.profile.get("last_name") or None,
        "company": row.profile.get("company") or None,
        "title": row.profile.get("title") or None,
        "stage": Stage.CUSTOMER.value if row.is_customer else Stage.SUBSCRIBER.value,
        "is_customer": row.is_customer,
        "marketing_consent": row.consent,
        "suppressed_at": at if reason is not None else None,
        "suppression_reason": f"{reason} in {file} line {row.line}"[:200] if reason is not None else None,
        "source": file[-200:],
        "created_at": at,
        "updated_at": at,
    }


def _stored_lead_changes(
    stored: Row[Any], row: ParsedRow, *, file: str, actor: str, at: datetime
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Return the columns that `row` changes on a stored lead, and the history row of its move to `customer`."""
    changes: dict[str, Any] = _profile_changes(stored, row.profile)
    changes.update(_flag_changes(stored, row, file=file, at=at))
    history_row = None
    if row.is_customer and not stored.is_customer:
        changes["is_customer"] = True
        if Stage.CUSTOMER in ALLOWED_TRANSITIONS[Stage(stored.stage)]:
            changes["stage"] = Stage.CUSTOMER.value
            history_row = stage_change_values(
                lead_id=stored.id, current=stored.stage, target=Stage.CUSTOMER,
                reason=f"marked customer in {file} line {row.line}", actor=actor, at=at,
            )
    if changes:
        changes["updated_at"] = at
    return changes, history_row


def _plan_lookups_with_values(session: Session) -> None:
    """Make PostgreSQL plan each statement of this transaction with its parameter values.

    psycopg prepares a statement on its fifth run, and PostgreSQL may then reuse
    one generic plan. A generic plan of the address look-up, made while the leads
    table was still nearly empty, scans the whole table and compares every row
    with each of a thousand addresses. With it, importing 100,000 rows into a new
    PostgreSQL 15 database took 240 s instead of 11 s. With a plan per run,
    PostgreSQL picks the index once the table has grown. The setting ends with
    the transaction.
    """
    session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def merge_chunk(
    chunk: dict[str, ParsedRow], *, session: Session, summary: ImportSummary, seen: SeenAddresses, actor: str
) -> None:
    """Merge one chunk of distinct addresses into the leads table with a few statements, not one per row.

    One query reads the chunk's stored leads. One executemany inserts the new
    leads, and one query reads their ids back. The changed leads are updated
    with one executemany per set of changed columns, and the stage history rows
    are inserted with one more.
    """
    if session.get_bind().dialect.name == "postgresql":
        _plan_lookups_with_values(session)
    moment = now()
    file = summary.file
    emails = list(chunk)
    stored_leads = {stored.email: stored for stored in session.execute(_SELECT_STORED, {"emails": emails})}
    # Every address of an earlier chunk was stored with that chunk, so only the stored
    # addresses of this one can have been read before.
    read_before = seen.add(emails, look_up=stored_leads)
    new_rows: list[ParsedRow] = []
    updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    history: list[dict[str, Any]] = []

    for email, row in chunk.items():
        stored = stored_leads.get(email)
        first_in_file = email not in read_before
        summary.duplicates_merged += not first_in_file
        if stored is None:
            new_rows.append(row)
            summary.imported += 1
            summary.customers += row.is_customer
            summary.suppressed += row.suppression_reason is not None
            continue

        if row.is_customer and (first_in_file or not stored.is_customer):
            summary.customers += 1
        if row.suppression_reason is not None and (first_in_file or stored.suppressed_at is None):
            summary.suppressed += 1
        # NOTE: a repeat of an address in a later chunk is merged here, after the first
        # occurrence was written, so re-importing a file whose repeats differ rewrites that lead.
        changes, history_row = _stored_lead_changes(stored, row, file=file, actor=actor, at=moment)
        if changes:
            updates.setdefault(tuple(sorted(changes)), []).append({"lead_id": stored.id, **changes})
        if history_row is not None:
            history.append(history_row)
        if first_in_file:
            summary.updated += bool(changes)
            summary.unchanged += not changes

    # An UPDATE executemany sets the columns named by its parameters' keys, so each
    # set of changed columns gets its own statement.
    for parameters in updates.values():
        session.execute(update(_LEADS).where(_LEADS.c.id == bindparam("lead_id")), parameters)
    if new_rows:
        history.extend(_insert_new_leads(new_rows, session=session, file=file, actor=actor, at=moment))
    insert_many(session, _HISTORY, history)


def _insert_new_leads(
    rows: list[ParsedRow], *, session: Session, file: str, actor: str, at: datetime
) -> list[dict[str, Any]]:
    """Insert a lead for each row and return the history rows of its import and, for a customer, its move to `customer`."""
    insert_many(session, _LEADS, [_new_lead_values(row, file=file, at=at) for row in rows])
    new_emails = [row.email for row in rows]
    ids: dict[str, int] = {email: lead_id for email, lead_id in session.execute(_SELECT_IDS, {"emails": new_emails})}

    history: list[dict[str, Any]] = []
    for row in rows:
        lead_id = ids[row.email]
        history.append(
            stage_change_values(
                lead_id=lead_id, current=None, target=Stage.SUBSCRIBER,
                reason=f"imported from {file} line {row.line}", actor=actor, at=at,
            )
        )
        if row.is_customer:
            history.append(
                stage_change_values(
                    lead_id=lead_id, current=Stage.SUBSCRIBER, target=Stage.CUSTOMER,
                    reason=f"marked customer in {file} line {row.line}", actor=actor, at=at,
                )
            )
    return history
