"""The email ledger: claim a key before sending, mark it handed over, record the outcome.

A key is (campaign, lead, step). A worker claims a batch of keys in one commit
(status `queued`), then for each message commits `sending` just before the SMTP
transaction and the outcome just after it. So at any moment a worker has at
most one row whose outcome is unknown. Claiming inserts the row, or takes back a row
that was not delivered (`failed`, `released`, or `deferred` once its backoff has
passed and while it has attempts left). The database's unique constraint decides
races: of two workers claiming the same key, only one gets it back from the claim.
See docs/delivery.md for the whole protocol.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, and_, bindparam, func, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models import Campaign, EmailSend, SendStatus
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
    next_attempt_at: datetime | None = None
    """Deferred sends only: the wall-clock time before which no claim takes the key again."""


def get_or_create_campaign(*, session: Session, kind: str, name: str) -> tuple[Campaign, bool]:
    """Return the campaign `kind/name` and whether this call created it."""
    campaign = session.exec(select(Campaign).where(Campaign.kind == kind, Campaign.name == name)).first()
    if campaign is not None:
        return campaign, False
    campaign = Campaign(kind=kind, name=name)
    session.add(campaign)
    session.flush()
    return campaign, True


def dialect_insert(session: Session) -> Any:
    """Return the INSERT construct of the session's dialect, which has ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the email ledger supports SQLite and PostgreSQL, not {dialect}")


def _claimable(table: Any, *, ready_at: datetime, max_attempts: int) -> Any:
    """Match ledger rows that a new claim may take back."""
    # Plain comparisons: an IN list cannot be expanded inside an executemany.
    return or_(
        table.c.status == SendStatus.FAILED.value,
        table.c.status == SendStatus.RELEASED.value,
        and_(
            table.c.status == SendStatus.DEFERRED.value,
            table.c.attempts < max_attempts,
            or_(table.c.next_attempt_at.is_(None), table.c.next_attempt_at <= ready_at),
        ),
    )


def claim_sends(
    *,
    session: Session,
    campaign: Campaign,
    lead_ids: list[int],
    step: str,
    actor: str,
    owner: str,
    at: datetime,
    wall_time: datetime,
    domain: str,
    max_attempts: int,
) -> list[Claim]:
    """Claim the keys of `lead_ids` as `queued` for the worker `owner` and return the ones it got.

    `at` is the flow's time, stored as the creation time of new rows. `wall_time`
    is the real current time. It is stored as the claim time, from which later
    launches judge whether `owner` is alive, and it decides which deferred sends are due.
    A key in any other state than the claimable ones is left alone and not returned.
    """
    if not lead_ids:
        return []
    rows = [
        {
            "campaign_id": campaign.id,
            "lead_id": lead_id,
            "step": step,
            "status": SendStatus.QUEUED.value,
            "message_id": make_message_id(
                campaign_public_id=campaign.public_id, lead_id=lead_id, step=step, domain=domain
            ),
            "attempts": 1,
            "claimed_by": actor,
            "owner": owner,
            "created_at": at,
            "claimed_at": wall_time,
        }
        for lead_id in lead_ids
    ]
    insert = dialect_insert(session)
    table = EmailSend.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["campaign_id", "lead_id", "step"],
        set_={
            "status": SendStatus.QUEUED.value,
            "attempts": table.c.attempts + 1,
            "claimed_by": actor,
            "owner": owner,
            "claimed_at": wall_time,
            "next_attempt_at": None,
            "error": None,
            "smtp_code": None,
        },
        where=_claimable(table, ready_at=wall_time, max_attempts=max_attempts),
    ).returning(table.c.id, table.c.lead_id, table.c.message_id, table.c.attempts)

    # SQLAlchemy sends the rows as multi-row INSERTs; RETURNING yields only the rows
    # this statement inserted or took back.
    result = session.execute(statement, rows)
    return [
        Claim(ledger_id=row.id, lead_id=row.lead_id, message_id=row.message_id, attempts=row.attempts)
        for row in result
    ]


_TABLE = EmailSend.__table__  # type: ignore[attr-defined]

# Table-level statements, compiled once and cached by SQLAlchemy: the ORM's bulk
# update path costs about eight times as much per message.
_HAND_OVER = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("b_id"),
        _TABLE.c.status == SendStatus.QUEUED.value,
        _TABLE.c.owner == bindparam("b_owner"),
    )
    .values(status=SendStatus.SENDING.value, claimed_at=bindparam("b_at"))
)
_RECORD_OUTCOME = (
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        sent_at=bindparam("b_sent_at"),
        error=bindparam("b_error"),
        smtp_code=bindparam("b_smtp_code"),
        next_attempt_at=bindparam("b_next_attempt_at"),
    )
)


def _outcome_values(outcome: Outcome) -> dict[str, Any]:
    return {
        "b_id": outcome.ledger_id,
        "b_status": outcome.status.value,
        "b_sent_at": outcome.at if outcome.status is SendStatus.SENT else None,
        "b_error": (outcome.error or None) and outcome.error[:1000],
        "b_smtp_code": outcome.smtp_code,
        "b_next_attempt_at": outcome.next_attempt_at,
    }


class _Prepared:
    """A statement compiled once for one dialect, with the bind processors of its parameters."""

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.names = compiled.positiontup if compiled.positional else None
        required = {name: None for name, bind in compiled.binds.items() if bind.required}
        self.constants = {name: value for name, value in compiled.construct_params(required).items() if name not in required}
        # The dialect's own type, as SQLAlchemy uses: for SQLite it turns a datetime into its stored text form.
        self.processors = {
            name: processor
            for name, bind in compiled.binds.items()
            if name in required and (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None
        }

    def parameters(self, values: dict[str, Any]) -> Any:
        merged = {**self.constants, **values}
        for name, processor in self.processors.items():
            merged[name] = processor(merged[name])
        return merged if self.names is None else tuple(merged[name] for name in self.names)


_prepared: dict[tuple[str, str], _Prepared] = {}
_prepared_lock = threading.Lock()


def _prepare(name: str, statement: Any, dialect: Dialect) -> _Prepared:
    key = (dialect.name, name)
    with _prepared_lock:
        if key not in _prepared:
            _prepared[key] = _Prepared(statement, dialect)
        return _prepared[key]


class HandOverWriter:
    """Writes the ledger changes of one sending connection: the `sending` mark before each message, the outcome after it.

    The two statements are compiled once and run on the database driver's own
    cursor. They run once per message, and SQLAlchemy's execution path cost
    several times the database's own work for them. The caller commits with
    `connection.commit()`, so the writes share a transaction with anything else
    it runs on `connection`.
    """

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        dialect = connection.dialect
        self._hand_over = _prepare("hand-over", _HAND_OVER, dialect)
        self._record = _prepare("record-outcome", _RECORD_OUTCOME, dialect)
        self._cursor: Any = None

    def _driver_cursor(self) -> Any:
        if not self.connection.in_transaction():
            self.connection.begin()
        if self._cursor is None:
            self._cursor = self.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    def record(self, outcomes: list[Outcome]) -> None:
        cursor = self._driver_cursor()
        for outcome in outcomes:
            cursor.execute(self._record.sql, self._record.parameters(_outcome_values(outcome)))

    def hand_over(self, *, ledger_id: int, owner: str, wall_time: datetime) -> bool:
        """Mark one queued row of `owner` as `sending`; return False when it is no longer this worker's to send."""
        cursor = self._driver_cursor()
        cursor.execute(self._hand_over.sql, self._hand_over.parameters({"b_id": ledger_id, "b_owner": owner, "b_at": wall_time}))
        return cursor.rowcount == 1

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def mark_handed_over(*, session: Session | Connection, ledger_id: int, owner: str, wall_time: datetime) -> bool:
    """Move one queued row of `owner` to `sending`; return False when the row is no longer this worker's to send."""
    result = session.execute(_HAND_OVER, {"b_id": ledger_id, "b_owner": owner, "b_at": wall_time})
    return (result.rowcount or 0) == 1  # type: ignore[attr-defined]


def release_queued(*, session: Session | Connection, ledger_ids: list[int], reason: str) -> int:
    """Give queued rows back, never handed over, so the next claim takes them; return how many."""
    if not ledger_ids:
        return 0
    result = session.execute(
        update(_TABLE)
        .where(_TABLE.c.id.in_(ledger_ids), _TABLE.c.status == SendStatus.QUEUED.value)
        .values(status=SendStatus.RELEASED.value, attempts=_TABLE.c.attempts - 1, error=reason[:1000])
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


def record_outcomes(*, session: Session | Connection, outcomes: list[Outcome]) -> None:
    """Write the outcome of each claimed send, all in one statement."""
    rows = [_outcome_values(outcome) for outcome in outcomes]
    if rows:
        session.execute(_RECORD_OUTCOME, rows)


def count_by_status(*, session: Session, campaign: Campaign, step: str) -> dict[str, int]:
    """Return the number of ledger rows of this campaign step in each status."""
    statement = (
        select(EmailSend.status, func.count())
        .where(EmailSend.campaign_id == campaign.id, EmailSend.step == step)
        .group_by(EmailSend.status)
    )
    return {status: count for status, count in session.exec(statement)}


def count_deferred(*, session: Session, campaign: Campaign, step: str, max_attempts: int) -> tuple[int, int]:
    """Return (deferred sends a later run still retries, deferred sends that used up all `max_attempts`)."""
    statement = select(
        func.count().filter(col(EmailSend.attempts) < max_attempts),
        func.count().filter(col(EmailSend.attempts) >= max_attempts),
    ).where(
        col(EmailSend.campaign_id) == campaign.id,
        col(EmailSend.step) == step,
        col(EmailSend.status) == SendStatus.DEFERRED.value,
    )
    retryable, exhausted = session.exec(statement).one()
    return retryable, exhausted
