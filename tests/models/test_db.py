"""Schema creation, migrations and time handling on real SQLite files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel, select

from models import Lead, session_scope
from models.db import create_db_engine, upgrade_database


def test_new_database_is_created_and_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'new.db'}"
    engine = create_db_engine(url)

    ran = upgrade_database(engine)
    ran_again = upgrade_database(engine)

    assert ran is True
    assert ran_again is False
    assert {"leads", "campaigns", "email_ledger", "stage_history", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'check.db'}")
    upgrade_database(engine)

    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)

    assert differences == []
    engine.dispose()


def test_times_come_back_as_utc(settings: object) -> None:
    eastern = timezone(timedelta(hours=-5))
    with session_scope() as session:
        session.add(Lead(email="ann@example.com", trial_ends_at=datetime(2026, 12, 4, 7, 0, tzinfo=eastern)))

    with session_scope() as session:
        lead = session.exec(select(Lead)).one()
        raw = session.exec(text("SELECT trial_ends_at FROM leads")).one()  # type: ignore[call-overload]

    assert lead.trial_ends_at == datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    assert lead.trial_ends_at.tzinfo is not None
    assert lead.trial_ends_at.utcoffset() == timedelta(0)
    assert str(raw[0]).startswith("2026-12-04 12:00:00")


def test_naive_time_is_rejected(settings: object) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        with session_scope() as session:
            session.add(Lead(email="ann@example.com", trial_ends_at=datetime(2026, 12, 4, 7, 0)))
