"""The email ledger's claim protocol on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlmodel import select

from leadflow.settings import Settings
from models import EmailSend, Lead, SendStatus, get_engine, session_scope
from tasks.ledger import (
    HandOverWriter,
    Outcome,
    claim_sends,
    get_or_create_campaign,
    mark_handed_over,
    record_outcomes,
    release_queued,
)
from tasks.liveness import current_owner

MOMENT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
MAX_ATTEMPTS = 3


def make_leads(count: int) -> list[int]:
    with session_scope() as session:
        leads = [Lead(email=f"lead{number}@example.com") for number in range(count)]
        session.add_all(leads)
        session.flush()
        return [lead.id for lead in leads if lead.id is not None]


def claim(lead_ids: list[int], owner: str, wall_time: datetime = MOMENT) -> list[int]:
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        claims = claim_sends(
            session=session, campaign=campaign, lead_ids=lead_ids, step="trial-invite", actor="test", owner=owner,
            at=MOMENT, wall_time=wall_time, domain="example.com", max_attempts=MAX_ATTEMPTS,
        )
        return [item.lead_id for item in claims]


def ledger_rows() -> list[EmailSend]:
    with session_scope() as session:
        return list(session.exec(select(EmailSend).order_by(EmailSend.lead_id)))


def record(rows: list[EmailSend], statuses: list[SendStatus], next_attempt_at: datetime | None = None) -> None:
    with session_scope() as session:
        record_outcomes(
            session=session,
            outcomes=[
                Outcome(row.id or 0, status, MOMENT, "x", next_attempt_at=next_attempt_at)
                for row, status in zip(rows, statuses, strict=True)
            ],
        )


def test_claim_queues_for_the_owner(settings: Settings) -> None:
    lead_ids = make_leads(2)

    claimed = claim(lead_ids, "worker-1")

    assert claimed == lead_ids
    assert {(row.status, row.owner, row.attempts) for row in ledger_rows()} == {(SendStatus.QUEUED, "worker-1", 1)}


def test_second_claim_gets_nothing(settings: Settings) -> None:
    lead_ids = make_leads(3)

    first = claim(lead_ids, "worker-1")
    second = claim(lead_ids, "worker-2")

    assert first == lead_ids
    assert second == []
    assert [row.owner for row in ledger_rows()] == ["worker-1"] * 3


def test_overlapping_claims_split_the_keys(settings: Settings) -> None:
    lead_ids = make_leads(4)

    first = claim(lead_ids[:3], "worker-1")
    second = claim(lead_ids[1:], "worker-2")

    assert first == lead_ids[:3]
    assert second == [lead_ids[3]]
    assert len(ledger_rows()) == 4


def test_undelivered_statuses_are_claimed_again(settings: Settings) -> None:
    lead_ids = make_leads(6)
    claim(lead_ids, "worker-1")
    statuses = [
        SendStatus.SENT, SendStatus.FAILED, SendStatus.DEFERRED, SendStatus.BOUNCED, SendStatus.AMBIGUOUS,
        SendStatus.RELEASED,
    ]
    record(ledger_rows(), statuses)

    again = claim(lead_ids, "worker-2")

    assert again == [lead_ids[1], lead_ids[2], lead_ids[5]]
    retried = {row.lead_id: row for row in ledger_rows()}
    assert retried[lead_ids[1]].attempts == 2
    assert retried[lead_ids[1]].status == SendStatus.QUEUED
    assert retried[lead_ids[1]].error is None
    assert retried[lead_ids[0]].sent_at == MOMENT


def test_deferred_waits_for_its_backoff(settings: Settings) -> None:
    lead_ids = make_leads(1)
    claim(lead_ids, "worker-1")
    record(ledger_rows(), [SendStatus.DEFERRED], next_attempt_at=MOMENT + timedelta(minutes=5))

    early = claim(lead_ids, "worker-2", wall_time=MOMENT + timedelta(minutes=4))
    due = claim(lead_ids, "worker-2", wall_time=MOMENT + timedelta(minutes=5))

    assert early == []
    assert due == lead_ids
    assert ledger_rows()[0].next_attempt_at is None


def test_deferred_stops_after_max_attempts(settings: Settings) -> None:
    lead_ids = make_leads(1)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert claim(lead_ids, "worker-1") == lead_ids, f"attempt {attempt}"
        record(ledger_rows(), [SendStatus.DEFERRED])

    assert claim(lead_ids, "worker-1") == []
    assert ledger_rows()[0].attempts == MAX_ATTEMPTS


def test_message_id_survives_a_retry(settings: Settings) -> None:
    lead_ids = make_leads(1)
    claim(lead_ids, "worker-1")
    before = ledger_rows()[0]
    record([before], [SendStatus.DEFERRED])

    claim(lead_ids, "worker-2")

    assert ledger_rows()[0].message_id == before.message_id


def test_hand_over_checks_owner_and_status(settings: Settings) -> None:
    lead_ids = make_leads(1)
    claim(lead_ids, "worker-1")
    row_id = ledger_rows()[0].id or 0

    with session_scope() as session:
        by_other = mark_handed_over(session=session, ledger_id=row_id, owner="worker-2", wall_time=MOMENT)
    with session_scope() as session:
        by_owner = mark_handed_over(session=session, ledger_id=row_id, owner="worker-1", wall_time=MOMENT)
    with session_scope() as session:
        twice = mark_handed_over(session=session, ledger_id=row_id, owner="worker-1", wall_time=MOMENT)

    assert (by_other, by_owner, twice) == (False, True, False)
    assert ledger_rows()[0].status == SendStatus.SENDING


def test_release_gives_back_the_attempt(settings: Settings) -> None:
    lead_ids = make_leads(2)
    claim(lead_ids, current_owner())
    rows = ledger_rows()

    with session_scope() as session:
        released = release_queued(session=session, ledger_ids=[row.id or 0 for row in rows], reason="server down")

    assert released == 2
    assert {(row.status, row.attempts) for row in ledger_rows()} == {(SendStatus.RELEASED, 0)}
    assert claim(lead_ids, "worker-2") == lead_ids
    assert {row.attempts for row in ledger_rows()} == {1}


def test_count_deferred_splits_exhausted(settings: Settings) -> None:
    from tasks.ledger import count_deferred

    lead_ids = make_leads(3)
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="survey-followup", name="survey")
        for number, (lead_id, attempts, status) in enumerate(
            [(lead_ids[0], 2, SendStatus.DEFERRED), (lead_ids[1], 5, SendStatus.DEFERRED), (lead_ids[2], 5, SendStatus.SENT)]
        ):
            session.add(
                EmailSend(
                    campaign_id=campaign.id, lead_id=lead_id, step="survey", status=status.value,
                    message_id=f"<m{number}@example.com>", attempts=attempts,
                )
            )
        session.flush()

        retryable, exhausted = count_deferred(session=session, campaign=campaign, step="survey", max_attempts=5)

    assert (retryable, exhausted) == (1, 1)


def stored_times() -> list[tuple[object, object]]:
    """Return the claimed_at and sent_at columns as the database stores them, text on SQLite."""
    with get_engine().connect() as connection:
        return [tuple(row) for row in connection.execute(text("SELECT claimed_at, sent_at FROM email_ledger ORDER BY lead_id"))]


def test_writer_stores_what_sqlalchemy_stores(settings: Settings) -> None:
    lead_ids = make_leads(2)
    claim(lead_ids, "worker-1")
    first, second = ledger_rows()
    whole_second = datetime(2026, 12, 4, 13, 0, tzinfo=UTC)

    with session_scope() as session:
        mark_handed_over(session=session, ledger_id=first.id or 0, owner="worker-1", wall_time=whole_second)
        record_outcomes(session=session, outcomes=[Outcome(first.id or 0, SendStatus.SENT, whole_second)])
    with get_engine().connect() as connection:
        writer = HandOverWriter(connection)
        handed_over = writer.hand_over(ledger_id=second.id or 0, owner="worker-1", wall_time=whole_second)
        writer.record([Outcome(second.id or 0, SendStatus.SENT, whole_second)])
        writer.close()
        connection.commit()

    assert handed_over
    by_sqlalchemy, by_writer = stored_times()
    assert by_writer == by_sqlalchemy
    assert [(row.status, row.sent_at, row.claimed_at) for row in ledger_rows()] == [
        (SendStatus.SENT, whole_second, whole_second),
        (SendStatus.SENT, whole_second, whole_second),
    ]


def test_writer_hands_over_only_the_owners_queued_row(settings: Settings) -> None:
    lead_ids = make_leads(1)
    claim(lead_ids, "worker-1")
    row_id = ledger_rows()[0].id or 0

    with get_engine().connect() as connection:
        writer = HandOverWriter(connection)
        by_other = writer.hand_over(ledger_id=row_id, owner="worker-2", wall_time=MOMENT)
        by_owner = writer.hand_over(ledger_id=row_id, owner="worker-1", wall_time=MOMENT)
        twice = writer.hand_over(ledger_id=row_id, owner="worker-1", wall_time=MOMENT)
        writer.close()
        connection.commit()

    assert (by_other, by_owner, twice) == (False, True, False)
    assert ledger_rows()[0].status == SendStatus.SENDING
