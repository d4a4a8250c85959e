"""Times stored through PostgreSQL and SQLite read back identical."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from models import Lead
from models.db import create_db_engine, upgrade_database
from tasks.trials import record_trial_signup

POSTGRESQL_VARIABLE = "LEADFLOW_TEST_POSTGRESQL_URL"

pytestmark = pytest.mark.postgresql


@pytest.fixture
def postgresql_engine() -> Iterator[Engine]:
    """An engine on a new schema of the test PostgreSQL database, dropped afterwards."""
    url = os.environ.get(POSTGRESQL_VARIABLE)
    if not url:
        pytest.skip(f"set {POSTGRESQL_VARIABLE} (for example postgresql+psycopg://postgres@127.0.0.1:5432/test) to run this test")
    schema = f"leadflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = create_db_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        yield scoped
    finally:
        scoped.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


SIGNUPS = [
    ("ann@example.com", datetime(2026, 3, 29, 13, 30, 45, tzinfo=timezone(timedelta(hours=-8)))),
    ("bob@example.com", datetime(2026, 3, 8, 1, 59, 59, 999999, tzinfo=UTC)),
    ("cid@example.com", datetime(2026, 10, 25, 0, 30, tzinfo=timezone(timedelta(hours=2)))),
]


def store_and_read(engine: Engine) -> dict[str, tuple[datetime | None, datetime | None]]:
    upgrade_database(engine)
    with Session(engine) as session:
        for address, started in SIGNUPS:
            record_trial_signup(address, session=session, started_at=started, days=7, source="test", actor="tester", offset_hours=48)
        session.commit()
    with Session(engine) as session:
        return {lead.email: (lead.trial_started_at, lead.trial_ends_at) for lead in session.exec(select(Lead))}


def test_signup_times_match_sqlite(postgresql_engine: Engine, tmp_path: Path) -> None:
    sqlite_engine = create_db_engine(f"sqlite:///{tmp_path / 'times.db'}")

    from_postgresql = store_and_read(postgresql_engine)
    from_sqlite = store_and_read(sqlite_engine)
    sqlite_engine.dispose()

    assert from_postgresql == from_sqlite
    for started, ends in from_postgresql.values():
        assert started is not None and ends is not None
        assert started.utcoffset() == timedelta(0)
        assert ends - started == timedelta(days=7)
    assert from_postgresql["ann@example.com"][0] == datetime(2026, 3, 29, 21, 30, 45, tzinfo=UTC)


def claim_on(engine: Engine, lead_ids: list[int], owner: str) -> list[int]:
    from leadflow.clock import wall_clock
    from tasks.ledger import claim_sends, get_or_create_campaign

    with Session(engine) as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        claims = claim_sends(
            session=session, campaign=campaign, lead_ids=lead_ids, step="trial-invite", actor="test", owner=owner,
            at=wall_clock(), wall_time=wall_clock(), domain="example.com", max_attempts=3,
        )
        session.commit()
    return [item.lead_id for item in claims]


def test_ledger_claim_on_postgresql(postgresql_engine: Engine) -> None:
    from models import EmailSend, SendStatus
    from tasks.ledger import Outcome, record_outcomes

    upgrade_database(postgresql_engine)
    with Session(postgresql_engine) as session:
        leads = [Lead(email=f"lead{number}@example.com") for number in range(4)]
        session.add_all(leads)
        session.commit()
        lead_ids = [lead.id for lead in leads if lead.id is not None]

    first = claim_on(postgresql_engine, lead_ids[:3], "worker-1")
    second = claim_on(postgresql_engine, lead_ids, "worker-2")
    with Session(postgresql_engine) as session:
        rows = list(session.exec(select(EmailSend).order_by(EmailSend.lead_id)))
        record_outcomes(
            session=session,
            outcomes=[Outcome(rows[0].id or 0, SendStatus.DEFERRED, rows[0].created_at), Outcome(rows[1].id or 0, SendStatus.SENT, rows[1].created_at)],
        )
        session.commit()
    third = claim_on(postgresql_engine, lead_ids, "worker-3")

    assert first == lead_ids[:3]
    assert second == [lead_ids[3]]
    assert third == [lead_ids[0]]
    with Session(postgresql_engine) as session:
        owners = {row.lead_id: (row.owner, row.status, row.attempts) for row in session.exec(select(EmailSend))}
    assert owners[lead_ids[0]] == ("worker-3", SendStatus.QUEUED, 2)
    assert owners[lead_ids[1]] == ("worker-1", SendStatus.SENT, 1)
