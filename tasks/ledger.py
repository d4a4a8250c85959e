"""The email ledger: claim a key before sending, mark it handed over, record the outcome.

A key is (campaign, lead, step). A worker claims a batch of keys in one commit
(status `queued`), then for each message commits `sending` just before the SMTP
transaction and the outcome just after it. So at any moment a worker has at
most one row whose outcome is unknown. Claiming inserts the row, or takes back a row
that was not delivered (`pending`, `failed`, `released`, or `deferred` once its
backoff has passed and while it has attempts left). The database's unique constraint decides
races: of two workers claiming the same key, only one gets it back from the claim.
See docs/delivery.md for the whole protocol.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect, and_, bindparam, delete, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from models import IN_FLIGHT_STATUSES, SENDER_CLAIMABLE_STATUSES, Campaign, EmailSend, SendStatus
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
        table.c.status == SendStatus.PENDING.value,
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


# Parallel sending: a launcher writes the audience as `pending` rows, and any
# number of campaign-sender runs claim them in chunks until none are left.


def queue_pending(
    *,
    session: Session,
    campaign: Campaign,
    lead_ids: list[int],
    step: str,
    actor: str,
    at: datetime,
    wall_time: datetime,
    domain: str,
    max_attempts: int,
) -> int:
    """Write the keys of `lead_ids` as `pending` for campaign-sender runs to claim; return how many are pending now.

    A new key gets a row with no owner and no attempt counted. A key that a claim
    could take back (failed, released, pending, or deferred and due) becomes
    `pending` again. Any other key is left alone, so a key that was sent, is in
    flight or waits for its backoff never becomes pending.
    """
    if not lead_ids:
        return 0
    rows = [
        {
            "campaign_id": campaign.id,
            "lead_id": lead_id,
            "step": step,
            "status": SendStatus.PENDING.value,
            "message_id": make_message_id(
                campaign_public_id=campaign.public_id, lead_id=lead_id, step=step, domain=domain
            ),
            "attempts": 0,
            "claimed_by": actor,
            "owner": None,
            "created_at": at,
            "claimed_at": None,
        }
        for lead_id in lead_ids
    ]
    table = EmailSend.__table__  # type: ignore[attr-defined]
    statement = (
        dialect_insert(session)(table)
        .on_conflict_do_update(
            index_elements=["campaign_id", "lead_id", "step"],
            set_={
                "status": SendStatus.PENDING.value,
                "claimed_by": actor,
                "owner": None,
                "next_attempt_at": None,
            },
            where=_claimable(table, ready_at=wall_time, max_attempts=max_attempts),
        )
        .returning(table.c.id)
    )
    return len(session.execute(statement, rows).all())


def claim_next_sends(
    *, session: Session, campaign_id: int, step: str, actor: str, owner: str, wall_time: datetime, size: int
) -> list[Claim]:
    """Claim up to `size` pending or released keys of one campaign step as `queued` for `owner`, lowest id first.

    On PostgreSQL the candidate rows are locked with FOR UPDATE SKIP LOCKED, so
    concurrent claimers take different rows without waiting for each other.
    SQLite has no row locks: its UPDATE takes the database's write lock before
    it reads, so claimers run one after another. Run this as the first
    statement of its transaction, or SQLite may reject the write.
    """
    table = EmailSend.__table__  # type: ignore[attr-defined]
    claimable = [status.value for status in SENDER_CLAIMABLE_STATUSES]
    candidates = (
        sa_select(table.c.id)
        .where(table.c.campaign_id == campaign_id, table.c.step == step, table.c.status.in_(claimable))
        .order_by(table.c.id)
        .limit(size)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    statement = (
        update(table)
        # The status is checked again: on PostgreSQL a row another claimer changed after this
        # statement's snapshot is re-read, and must still be claimable.
        .where(table.c.id.in_(candidates.scalar_subquery()), table.c.status.in_(claimable))
        .values(
            status=SendStatus.QUEUED.value,
            attempts=table.c.attempts + 1,
            claimed_by=actor,
            owner=owner,
            claimed_at=wall_time,
            next_attempt_at=None,
            error=None,
            smtp_code=None,
        )
        .returning(table.c.id, table.c.lead_id, table.c.message_id, table.c.attempts)
    )
    claims = [
        Claim(ledger_id=row.id, lead_id=row.lead_id, message_id=row.message_id, attempts=row.attempts)
        for row in session.execute(statement)
    ]
    return sorted(claims, key=lambda claim: claim.ledger_id)


def count_sender_claimable(*, session: Session, campaign_id: int, step: str) -> int:
    """Return how many keys of this campaign step a campaign-sender run could claim now."""
    statement = select(func.count()).select_from(EmailSend).where(
        col(EmailSend.campaign_id) == campaign_id,
        col(EmailSend.step) == step,
        col(EmailSend.status).in_([status.value for status in SENDER_CLAIMABLE_STATUSES]),
    )
    return session.exec(statement).one()


def drop_unsent_claims(*, session: Session, ledger_ids: list[int], owner: str) -> int:
    """Delete rows that `owner` claimed and will not send, because the lead is no longer eligible; return how many.

    Only rows still `queued` for `owner` are deleted. Such a row was never
    handed to a mail server, so deleting it frees the key as if no launch had
    selected the lead. An in-process launch writes no row for such a lead either.
    """
    if not ledger_ids:
        return 0
    result = session.execute(
        delete(EmailSend).where(
            col(EmailSend.id).in_(ledger_ids),
            col(EmailSend.status) == SendStatus.QUEUED.value,
            col(EmailSend.owner) == owner,
        )
    )
    return result.rowcount or 0


def count_open_sends(*, session: Session, campaign_id: int, step: str) -> int:
    """Return how many keys of this campaign step are pending, released or in flight: work not finished yet."""
    open_statuses = SENDER_CLAIMABLE_STATUSES | IN_FLIGHT_STATUSES
    statement = select(func.count()).select_from(EmailSend).where(
        col(EmailSend.campaign_id) == campaign_id,
        col(EmailSend.step) == step,
        col(EmailSend.status).in_([status.value for status in open_statuses]),
    )
    return session.exec(statement).one()


def last_claim_of(*, session: Session, campaign_id: int, step: str, actor: str) -> tuple[str | None, datetime | None] | None:
    """Return the owner and claim time of the latest row `actor` claimed in this campaign step, or None when it claimed none."""
    statement = (
        select(EmailSend.owner, EmailSend.claimed_at)
        .where(col(EmailSend.campaign_id) == campaign_id, col(EmailSend.step) == step, col(EmailSend.claimed_by) == actor)
        .order_by(col(EmailSend.claimed_at).desc().nulls_last(), col(EmailSend.id).desc())
        .limit(1)
    )
    row = session.exec(statement).first()
    return None if row is None else (row[0], row[1])


def count_by_status_of_actors(*, session: Session, campaign_id: int, step: str, actors: list[str]) -> dict[str, int]:
    """Return the number of ledger rows of this campaign step last claimed by one of `actors`, in each status."""
    if not actors:
        return {}
    statement = (
        select(EmailSend.status, func.count())
        .where(col(EmailSend.campaign_id) == campaign_id, col(EmailSend.step) == step, col(EmailSend.claimed_by).in_(actors))
        .group_by(EmailSend.status)
    )
    return {status: count for status, count in session.exec(statement)}
