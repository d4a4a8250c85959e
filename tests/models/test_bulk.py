"""Bulk inserts through the driver's executemany, on SQLite and, when configured, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Table, insert, select, text
from sqlmodel import Session

from models import Lead
from models.bulk import insert_many
from models.db import create_db_engine, upgrade_database

LEADS: Table = Lead.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 3, 29, 21, 30, 45, 120000, tzinfo=UTC)
# The same instant in another zone, which both paths must store as UTC.
AT_UTC_PLUS_2 = AT.astimezone(timezone(timedelta(hours=2)))


def lead_values(email: str, **changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "email": email,
        "first_name": "Ann",
        "last_name": None,
        "stage": "subscriber",
        "is_customer": False,
        "marketing_consent": None,
        "suppressed_at": None,
        "source": "list.csv",
        "created_at": AT,
        "updated_at": AT,
    }
    values.update(changes)
    return values


VARIANTS = [
    {},
    {"is_customer": True, "stage": "customer", "marketing_consent": True},
    {"marketing_consent": False, "suppressed_at": AT_UTC_PLUS_2, "created_at": AT_UTC_PLUS_2},
    {"first_name": "Zoë \"Z\" O'Neil; --", "last_name": "100%"},
    # Characters that COPY's text format escapes.
    {"source": "C:\\lists\\march\tfinal\nv2.csv", "last_name": "\\N"},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A new, upgraded database: a SQLite file, or a new schema of the test PostgreSQL database."""
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
        upgrade_database(engine)
        yield engine
        engine.dispose()
        return

    url = os.environ.get("LEADFLOW_TEST_POSTGRESQL_URL")
    if not url:
        pytest.skip("set LEADFLOW_TEST_POSTGRESQL_URL (for example postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"leadflow_test_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_db_engine(f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}")
    try:
        upgrade_database(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def stored_rows(session: Session, prefix: str) -> list[dict[str, Any]]:
    """Return the stored leads whose address starts with `prefix`, without id and address, in insertion order."""
    columns = [column for column in LEADS.c if column.name not in ("id", "email")]
    statement = select(*columns).where(LEADS.c.email.startswith(prefix)).order_by(LEADS.c.id)
    return [dict(row._mapping) for row in session.execute(statement)]


def raw_rows(session: Session, prefix: str) -> list[tuple[Any, ...]]:
    """Return the same rows as the driver returns them, such as SQLite's timestamp text."""
    statement = text(
        "SELECT first_name, last_name, stage, is_customer, marketing_consent, suppressed_at, source, created_at, "
        "updated_at FROM leads WHERE email LIKE :pattern ORDER BY id"
    )
    return [tuple(row) for row in session.execute(statement, {"pattern": f"{prefix}%"})]


def test_insert_many_stores_same_values(engine: Engine) -> None:
    with Session(engine) as session:
        bulk_rows = [lead_values(f"bulk{index}@example.com", **changes) for index, changes in enumerate(VARIANTS)]
        core_rows = [lead_values(f"core{index}@example.com", **changes) for index, changes in enumerate(VARIANTS)]
        insert_many(session, LEADS, bulk_rows)
        session.execute(insert(LEADS), core_rows)
        session.commit()

        from_insert_many = stored_rows(session, "bulk")
        from_session_execute = stored_rows(session, "core")
        raw_from_insert_many = raw_rows(session, "bulk")
        raw_from_session_execute = raw_rows(session, "core")

    assert len(from_insert_many) == len(VARIANTS)
    assert from_insert_many == from_session_execute
    assert raw_from_insert_many == raw_from_session_execute
    suppressed_at = from_insert_many[2]["suppressed_at"]
    assert suppressed_at == AT
    assert suppressed_at.utcoffset() == timedelta(0)


def test_insert_many_rolls_back_with_session(engine: Engine) -> None:
    with Session(engine) as session:
        insert_many(session, LEADS, [lead_values("gone@example.com")])
        session.rollback()

        assert stored_rows(session, "gone") == []


def test_insert_many_requires_columns_with_defaults(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(ValueError, match="Python-side defaults") as raised:
        insert_many(session, LEADS, [{"email": "ann@example.com"}])

    assert "created_at" in str(raised.value)
