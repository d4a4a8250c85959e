"""Schema creation, migrations and time handling on SQLite files and PostgreSQL databases."""

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
from tests.databases import DatabaseFactory


def test_new_database_is_created_and_upgraded(database_factory: DatabaseFactory) -> None:
    engine = create_db_engine(database_factory.new_empty_database())

    ran = upgrade_database(engine)
    ran_again = upgrade_database(engine)

    assert ran is True
    assert ran_again is False
    assert {"leads", "campaigns", "email_ledger", "stage_history", "alembic_version"} <= set(inspect(engine).get_table_names())
    engine.dispose()


# SQLite only: no other database lives in a file whose folder leadflow creates.
def test_sqlite_folder_is_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "new.db"
    engine = create_db_engine(f"sqlite:///{path}")

    upgrade_database(engine)

    assert path.is_file()
    engine.dispose()


def test_migrations_match_the_models(database_factory: DatabaseFactory) -> None:
    engine = create_db_engine(database_factory.new_empty_database())
    upgrade_database(engine)

    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)

    assert differences == []
    engine.dispose()


def test_times_come_back_as_utc(settings: object, database_backend: str) -> None:
    eastern = timezone(timedelta(hours=-5))
    with session_scope() as session:
        session.add(Lead(email="ann@example.com", trial_ends_at=datetime(2026, 12, 4, 7, 0, tzinfo=eastern)))

    with session_scope() as session:
        lead = session.exec(select(Lead)).one()
        raw = session.exec(text("SELECT trial_ends_at FROM leads")).one()  # type: ignore[call-overload]

    assert lead.trial_ends_at == datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    assert lead.trial_ends_at.tzinfo is not None
    assert lead.trial_ends_at.utcoffset() == timedelta(0)
    if database_backend == "sqlite":
        # SQLite has no time zones: the value is stored as naive UTC text.
        assert str(raw[0]).startswith("2026-12-04 12:00:00")
    else:
        assert raw[0] == datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


def test_naive_time_is_rejected(settings: object) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        with session_scope() as session:
            session.add(Lead(email="ann@example.com", trial_ends_at=datetime(2026, 12, 4, 7, 0)))
