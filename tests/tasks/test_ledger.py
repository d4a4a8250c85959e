"""The email ledger's no-duplicate rule on a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from leadflow.settings import Settings
from models import EmailSend, Lead, SendStatus, session_scope
from tasks.ledger import Outcome, claim_sends, get_or_create_campaign, mark_stale_sends_ambiguous, record_outcomes

MOMENT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def make_leads(count: int) -> list[int]:
    with session_scope() as session:
        leads = [Lead(email=f"lead{number}@example.com") for number in range(count)]
        session.add_all(leads)
        session.flush()
        return [lead.id for lead in leads if lead.id is not None]


def claim(lead_ids: list[int], actor: str, at: datetime = MOMENT) -> list[int]:
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        claims = claim_sends(
            session=session, campaign=campaign, lead_ids=lead_ids, step="trial-invite", actor=actor, at=at, domain="example.com"
        )
        return [item.lead_id for item in claims]


def ledger_rows() -> list[EmailSend]:
    with session_scope() as session:
        return list(session.exec(select(EmailSend).order_by(EmailSend.lead_id)))


def test_second_claim_gets_nothing(settings: Settings) -> None:
    lead_ids = make_leads(3)

    first = claim(lead_ids, "run-1")
    second = claim(lead_ids, "run-2")

    assert first == lead_ids
    assert second == []
    assert [row.claimed_by for row in ledger_rows()] == ["run-1"] * 3


def test_overlapping_claims_split_the_keys(settings: Settings) -> None:
    lead_ids = make_leads(4)

    first = claim(lead_ids[:3], "run-1")
    second = claim(lead_ids[1:], "run-2")

    assert first == lead_ids[:3]
    assert second == [lead_ids[3]]
    assert len(ledger_rows()) == 4


def test_failed_and_deferred_are_claimed_again(settings: Settings) -> None:
    lead_ids = make_leads(4)
    claim(lead_ids, "run-1")
    rows = ledger_rows()
    statuses = [SendStatus.SENT, SendStatus.FAILED, SendStatus.DEFERRED, SendStatus.BOUNCED]
    with session_scope() as session:
        record_outcomes(
            session=session,
            outcomes=[Outcome(row.id or 0, status, MOMENT, "x") for row, status in zip(rows, statuses, strict=True)],
        )

    again = claim(lead_ids, "run-2")

    assert again == [lead_ids[1], lead_ids[2]]
    retried = {row.lead_id: row for row in ledger_rows()}
    assert retried[lead_ids[1]].attempts == 2
    assert retried[lead_ids[1]].status == SendStatus.SENDING
    assert retried[lead_ids[1]].error is None
    assert retried[lead_ids[0]].sent_at == MOMENT


def test_message_id_survives_a_retry(settings: Settings) -> None:
    lead_ids = make_leads(1)
    claim(lead_ids, "run-1")
    before = ledger_rows()[0]
    with session_scope() as session:
        record_outcomes(session=session, outcomes=[Outcome(before.id or 0, SendStatus.DEFERRED, MOMENT)])

    claim(lead_ids, "run-2")

    assert ledger_rows()[0].message_id == before.message_id


def test_stale_sending_becomes_ambiguous_not_resent(settings: Settings) -> None:
    lead_ids = make_leads(2)
    claim(lead_ids[:1], "crashed-run", at=MOMENT - timedelta(hours=2))
    claim(lead_ids[1:], "live-run", at=MOMENT)

    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        marked = mark_stale_sends_ambiguous(
            session=session, campaign=campaign, step="trial-invite", at=MOMENT, lease=timedelta(minutes=30)
        )

    assert marked == 1
    assert [row.status for row in ledger_rows()] == [SendStatus.AMBIGUOUS, SendStatus.SENDING]
    assert claim(lead_ids, "next-run") == []
