"""Parallel sending: pending rows, racing claimers, and a sender that takes back a dead sender's rows.

The SQLite tests use the test's own database file. The PostgreSQL tests run on a
new schema of the server named by LEADFLOW_TEST_POSTGRESQL_URL and skip when it
is unset.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from leadflow.clock import now, wall_clock
from leadflow.settings import Settings, get_settings
from models import Campaign, EmailSend, Lead, SendStatus, session_scope
from models.db import create_db_engine, upgrade_database
from tasks.ledger import (
    Outcome,
    claim_next_sends,
    claim_sends,
    get_or_create_campaign,
    mark_handed_over,
    queue_pending,
    record_outcomes,
)
from tasks.send import EmailStep
from tasks.senders import send_next_batch, send_until_drained
from tasks.suppression import add_hashes, address_hash
from tests.conftest import SmtpServer
from tests.tasks.test_ledger import ledger_rows, make_leads
from tests.tasks.test_recovery import dead_owner

POSTGRESQL_VARIABLE = "LEADFLOW_TEST_POSTGRESQL_URL"
STEP = "trial-invite"
MOMENT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
LOGGER = logging.getLogger("tests.senders")


def campaign_id_of(session: Session) -> int:
    campaign, _ = get_or_create_campaign(session=session, kind=STEP, name="spring")
    return campaign.id or 0


def queue(session: Session, lead_ids: list[int], wall_time: datetime = MOMENT) -> int:
    campaign, _ = get_or_create_campaign(session=session, kind=STEP, name="spring")
    return queue_pending(
        session=session, campaign=campaign, lead_ids=lead_ids, step=STEP, actor="launcher", at=MOMENT,
        wall_time=wall_time, domain="example.com", max_attempts=3,
    )


def spring_id(open_session: Callable[[], Session] = session_scope) -> int:
    with open_session() as session:
        campaign_id = campaign_id_of(session)
        session.commit()
    return campaign_id


def claim_all(
    open_session: Callable[[], Session], owner: str, size: int, start: threading.Barrier | None = None
) -> list[int]:
    """Claim chunks of `size` until none is left; return the claimed lead ids in claim order."""
    campaign_id = spring_id(open_session)
    if start is not None:
        start.wait()
    claimed: list[int] = []
    while True:
        with open_session() as session:
            claims = claim_next_sends(
                session=session, campaign_id=campaign_id, step=STEP, actor=owner, owner=owner,
                wall_time=wall_clock(), size=size,
            )
            session.commit()
        if not claims:
            return claimed
        claimed.extend(claim.lead_id for claim in claims)


def race(open_session: Callable[[], Session], claimers: int, size: int) -> list[list[int]]:
    """Run `claimers` threads that claim at the same time, each on its own connection."""
    start = threading.Barrier(claimers)
    results: list[list[int]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            results[number] = claim_all(open_session, f"worker-{number}", size, start)
        except BaseException as exc:  # noqa: BLE001 (reported by the test below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return results


def invite_step() -> EmailStep:
    from tasks.audience import lead_is_invitable
    from tasks.render_email import RenderedEmail

    return EmailStep(
        campaign_kind=STEP,
        step=STEP,
        render=lambda lead: RenderedEmail(subject=f"Hello {lead.id}", text="Hello", html="<p>Hello</p>"),
        is_eligible=lead_is_invitable,
    )


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LEADFLOW_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("LEADFLOW_SMTP_TIMEOUT_SECONDS", "5")
    get_settings.cache_clear()
    return get_settings()


def drain(settings: Settings, size: int = 2) -> None:
    campaign_id = spring_id()
    send_until_drained(
        lambda _number: send_next_batch(
            invite_step(), campaign_id=campaign_id, settings=settings, actor="sender-1", logger=LOGGER, size=size
        ),
        campaign_id=campaign_id, step=STEP, settings=settings, logger=LOGGER,
    )


def delivered_message_ids(server: SmtpServer) -> list[str]:
    from email import message_from_bytes, policy

    return [str(message_from_bytes(raw, policy=policy.default)["Message-ID"]) for raw in server.handler.messages]


class TestQueuePending:
    def test_new_keys_become_pending(self, settings: Settings) -> None:
        lead_ids = make_leads(3)

        with session_scope() as session:
            written = queue(session, lead_ids)

        assert written == 3
        assert {(row.status, row.owner, row.attempts, row.claimed_at) for row in ledger_rows()} == {
            (SendStatus.PENDING, None, 0, None)
        }

    def test_taken_keys_stay_as_they_are(self, settings: Settings) -> None:
        lead_ids = make_leads(6)
        with session_scope() as session:
            campaign, _ = get_or_create_campaign(session=session, kind=STEP, name="spring")
            claim_sends(
                session=session, campaign=campaign, lead_ids=lead_ids, step=STEP, actor="old", owner="old-worker",
                at=MOMENT, wall_time=MOMENT, domain="example.com", max_attempts=3,
            )
        rows = ledger_rows()
        statuses = [SendStatus.SENT, SendStatus.FAILED, SendStatus.DEFERRED, SendStatus.RELEASED, SendStatus.AMBIGUOUS]
        with session_scope() as session:
            record_outcomes(
                session=session,
                outcomes=[
                    Outcome(row.id or 0, status, MOMENT, next_attempt_at=MOMENT + timedelta(hours=1))
                    for row, status in zip(rows[:5], statuses, strict=True)
                ],
            )

        with session_scope() as session:
            written = queue(session, lead_ids, wall_time=MOMENT + timedelta(minutes=1))

        after = [row.status for row in ledger_rows()]
        assert written == 2
        assert after == [
            SendStatus.SENT, SendStatus.PENDING, SendStatus.DEFERRED, SendStatus.PENDING, SendStatus.AMBIGUOUS,
            SendStatus.QUEUED,
        ]

    def test_pending_key_is_claimable_in_process(self, settings: Settings) -> None:
        lead_ids = make_leads(2)
        with session_scope() as session:
            queue(session, lead_ids)
            campaign, _ = get_or_create_campaign(session=session, kind=STEP, name="spring")
            claims = claim_sends(
                session=session, campaign=campaign, lead_ids=lead_ids, step=STEP, actor="cli", owner="worker-1",
                at=MOMENT, wall_time=MOMENT, domain="example.com", max_attempts=3,
            )

        assert [claim.lead_id for claim in claims] == lead_ids
        assert {(row.status, row.attempts) for row in ledger_rows()} == {(SendStatus.QUEUED, 1)}


class TestClaimNextSends:
    def test_takes_pending_and_released_in_id_order(self, settings: Settings) -> None:
        lead_ids = make_leads(5)
        with session_scope() as session:
            queue(session, lead_ids)
        rows = ledger_rows()
        with session_scope() as session:
            record_outcomes(
                session=session,
                outcomes=[Outcome(rows[0].id or 0, SendStatus.RELEASED, MOMENT), Outcome(rows[1].id or 0, SendStatus.FAILED, MOMENT)],
            )

        first = claim_all(session_scope, "worker-1", size=2)

        assert first == [lead_ids[0], lead_ids[2], lead_ids[3], lead_ids[4]]
        by_lead = {row.lead_id: row for row in ledger_rows()}
        assert by_lead[lead_ids[1]].status == SendStatus.FAILED
        assert {by_lead[lead_id].status for lead_id in first} == {SendStatus.QUEUED}
        assert {by_lead[lead_id].owner for lead_id in first} == {"worker-1"}
        assert by_lead[lead_ids[2]].attempts == 1

    def test_racing_claimers_on_sqlite_never_share_a_key(self, settings: Settings) -> None:
        lead_ids = make_leads(300)
        with session_scope() as session:
            queue(session, lead_ids)

        results = race(session_scope, claimers=4, size=7)

        claimed = [lead_id for result in results for lead_id in result]
        assert len(claimed) == len(set(claimed))
        assert sorted(claimed) == lead_ids
        owners = {row.lead_id: row.owner for row in ledger_rows()}
        for number, result in enumerate(results):
            assert all(owners[lead_id] == f"worker-{number}" for lead_id in result)


class TestSendUntilDrained:
    def test_sends_every_pending_key_once(self, smtp_settings: Settings, smtp_server: SmtpServer) -> None:
        lead_ids = make_leads(5)
        with session_scope() as session:
            queue(session, lead_ids)

        drain(smtp_settings)

        assert sorted(delivered_message_ids(smtp_server)) == sorted(row.message_id for row in ledger_rows())
        assert {row.status for row in ledger_rows()} == {SendStatus.SENT}

    def test_dead_senders_rows_are_taken_back(self, smtp_settings: Settings, smtp_server: SmtpServer) -> None:
        lead_ids = make_leads(6)
        dead = dead_owner()
        with session_scope() as session:
            queue(session, lead_ids)
        campaign_id = spring_id()
        with session_scope() as session:
            claims = claim_next_sends(
                session=session, campaign_id=campaign_id, step=STEP, actor="dead-sender", owner=dead,
                wall_time=wall_clock(), size=3,
            )
        with session_scope() as session:
            mark_handed_over(session=session, ledger_id=claims[0].ledger_id, owner=dead, wall_time=wall_clock())

        drain(smtp_settings)

        by_lead = {row.lead_id: row for row in ledger_rows()}
        handed_over = by_lead[claims[0].lead_id]
        assert handed_over.status == SendStatus.AMBIGUOUS
        assert handed_over.message_id not in delivered_message_ids(smtp_server)
        assert sorted(delivered_message_ids(smtp_server)) == sorted(
            row.message_id for row in by_lead.values() if row.lead_id != claims[0].lead_id
        )
        assert [by_lead[lead_id].status for lead_id in lead_ids].count(SendStatus.SENT) == 5
        assert {by_lead[claim.lead_id].attempts for claim in claims[1:]} == {1}

    def test_live_owners_rows_are_left_alone(self, smtp_settings: Settings, smtp_server: SmtpServer) -> None:
        from tasks.liveness import current_owner

        lead_ids = make_leads(2)
        with session_scope() as session:
            queue(session, lead_ids)
        campaign_id = spring_id()
        with session_scope() as session:
            claim_next_sends(
                session=session, campaign_id=campaign_id, step=STEP, actor="other-sender",
                owner=current_owner(), wall_time=wall_clock(), size=1,
            )

        drain(smtp_settings)

        assert [row.status for row in ledger_rows()] == [SendStatus.QUEUED, SendStatus.SENT]
        assert len(smtp_server.handler.messages) == 1

    def test_suppressed_and_ineligible_leads_lose_their_key(self, smtp_settings: Settings, smtp_server: SmtpServer) -> None:
        from models import SuppressionReason

        lead_ids = make_leads(3)
        with session_scope() as session:
            queue(session, lead_ids)
            # Listed without marking the lead, as when another process lists it after the launch selected it.
            add_hashes(
                session=session, hashes=[address_hash("lead0@example.com")], reason=SuppressionReason.MANUAL,
                source="test", at=now(),
            )
            customer = session.get(Lead, lead_ids[1])
            assert customer is not None
            customer.is_customer = True
            session.add(customer)

        result = send_next_batch(
            invite_step(), campaign_id=spring_id(), settings=smtp_settings, actor="sender-1", logger=LOGGER, size=10,
        )

        assert (result.claimed, result.sent, result.suppressed, result.not_claimed) == (1, 1, 1, 1)
        assert [row.lead_id for row in ledger_rows()] == [lead_ids[2]]
        with session_scope() as session:
            listed = session.get(Lead, lead_ids[0])
        assert listed is not None and listed.suppressed_at is not None


@pytest.fixture
def postgresql_engine() -> Iterator[Engine]:
    """An engine on a new schema of the test PostgreSQL database with leadflow's tables, dropped afterwards."""
    url = os.environ.get(POSTGRESQL_VARIABLE)
    if not url:
        pytest.skip(f"set {POSTGRESQL_VARIABLE} (for example postgresql+psycopg://postgres@127.0.0.1:5432/test) to run this test")
    schema = f"leadflow_senders_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = create_db_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        upgrade_database(scoped)
        yield scoped
    finally:
        scoped.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def pending_on(engine: Engine, count: int) -> list[int]:
    with Session(engine) as session:
        leads = [Lead(email=f"lead{number}@example.com") for number in range(count)]
        session.add_all(leads)
        session.flush()
        lead_ids = [lead.id for lead in leads if lead.id is not None]
        queue(session, lead_ids)
        session.commit()
    return lead_ids


@pytest.mark.postgresql
class TestClaimOnPostgresql:
    def test_racing_claimers_never_share_a_key(self, postgresql_engine: Engine) -> None:
        lead_ids = pending_on(postgresql_engine, 400)

        results = race(lambda: Session(postgresql_engine), claimers=4, size=9)

        claimed = [lead_id for result in results for lead_id in result]
        assert len(claimed) == len(set(claimed))
        assert sorted(claimed) == lead_ids
        with Session(postgresql_engine) as session:
            owners = {row.lead_id: row.owner for row in session.exec(select(EmailSend))}
        for number, result in enumerate(results):
            assert all(owners[lead_id] == f"worker-{number}" for lead_id in result)

    def test_locked_rows_are_skipped_not_waited_for(self, postgresql_engine: Engine) -> None:
        lead_ids = pending_on(postgresql_engine, 10)

        campaign_id = spring_id(lambda: Session(postgresql_engine))
        with Session(postgresql_engine) as holding, Session(postgresql_engine) as other:
            holding_claims = claim_next_sends(
                session=holding, campaign_id=campaign_id, step=STEP, actor="a", owner="worker-a",
                wall_time=wall_clock(), size=4,
            )
            # Without SKIP LOCKED this claim would wait for the open transaction above; the timeout turns a wait into an error.
            other.execute(text("SET LOCAL lock_timeout = '2s'"))
            started = time.monotonic()
            other_claims = claim_next_sends(
                session=other, campaign_id=campaign_id, step=STEP, actor="b", owner="worker-b",
                wall_time=wall_clock(), size=4,
            )
            elapsed = time.monotonic() - started
            other.commit()
            holding.rollback()

        assert [claim.lead_id for claim in holding_claims] == lead_ids[:4]
        assert [claim.lead_id for claim in other_claims] == lead_ids[4:8]
        assert elapsed < 1.5
        with Session(postgresql_engine) as session:
            statuses = {row.lead_id: row.status for row in session.exec(select(EmailSend))}
        assert [statuses[lead_id] for lead_id in lead_ids[:4]] == [SendStatus.PENDING] * 4

    def test_statistics_refreshed_before_queueing(
        self, postgresql_engine: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from models import dispose_engines
        from tasks.fan_out import refresh_planner_statistics

        pending_on(postgresql_engine, 3)
        monkeypatch.setenv("LEADFLOW_DATABASE_URL", postgresql_engine.url.render_as_string(hide_password=False))
        get_settings.cache_clear()

        refresh_planner_statistics()
        dispose_engines()

        with Session(postgresql_engine) as session:
            analyzed = dict(
                session.execute(
                    text(
                        "SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                        "WHERE schemaname = current_schema() AND relname IN ('leads', 'email_ledger')"
                    )
                ).all()
            )
        assert analyzed == {"leads": True, "email_ledger": True}

    def test_campaign_rows_of_other_campaigns_are_not_claimed(self, postgresql_engine: Engine) -> None:
        lead_ids = pending_on(postgresql_engine, 3)
        with Session(postgresql_engine) as session:
            other, _ = get_or_create_campaign(session=session, kind=STEP, name="autumn")
            queue_pending(
                session=session, campaign=other, lead_ids=lead_ids, step=STEP, actor="launcher", at=MOMENT,
                wall_time=MOMENT, domain="example.com", max_attempts=3,
            )
            session.commit()

        claimed = claim_all(lambda: Session(postgresql_engine), "worker-1", size=10)

        assert claimed == lead_ids
        with Session(postgresql_engine) as session:
            autumn = session.exec(select(Campaign).where(Campaign.name == "autumn")).one()
            left = session.exec(select(EmailSend).where(EmailSend.campaign_id == autumn.id)).all()
        assert {row.status for row in left} == {SendStatus.PENDING}
