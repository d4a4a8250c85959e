"""Each Alembic migration keeps every row written before it, on SQLite and PostgreSQL.

A test builds a database at the revision before a migration, fills every table that
exists there through plain SQL, migrates, and reads every row back through the newest
table definitions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory
from sqlalchemy import JSON, bindparam, inspect, select, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

import models  # noqa: F401  (registers every table on SQLModel.metadata)
from models.db import alembic_config, create_db_engine, upgrade_database
from models.types import UTCDateTime
from tests.databases import DatabaseFactory

BERLIN_WINTER = timezone(timedelta(hours=1), "CET")
BERLIN_SUMMER = timezone(timedelta(hours=2), "CEST")
NEW_YORK = timezone(timedelta(hours=-5), "EST")
KOLKATA = timezone(timedelta(hours=5, minutes=30), "IST")

# Rows for every table of the newest schema, each table after those its foreign keys refer
# to. A test at an older revision writes only the tables and columns that exist there.
ROWS: dict[str, list[dict[str, Any]]] = {
    "campaigns": [
        {"id": 1, "kind": "trial-invite", "name": "spring-launch", "public_id": "0b7f6c1e-2d7a-4d8e-9a51-3f0c2b9d8e71",
         "created_at": datetime(2026, 3, 2, 9, 0, tzinfo=UTC)},
        {"id": 2, "kind": "trial-invite", "name": "frühjahr-köln", "public_id": "6a1d0f55-93c4-4b8e-8f0a-0c2e7d5b1a90",
         "created_at": datetime(2026, 3, 29, 1, 30, 15, 250000, tzinfo=BERLIN_SUMMER)},
        {"id": 3, "kind": "survey-followup", "name": "survey", "public_id": "e3c9a8b2-7f61-4d05-b2aa-5d4c3e2f1a08",
         "created_at": datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)},
    ],
    "leads": [
        {"id": 1, "email": "zoe@example.com", "first_name": "Zoë", "last_name": "Ångström", "company": "Müller & Söhne GmbH",
         "title": "Directrice générale", "stage": "mql", "is_customer": False, "marketing_consent": True,
         "suppressed_at": None, "suppression_reason": None, "unsubscribed_at": None,
         "trial_started_at": datetime(2026, 3, 29, 13, 30, 45, tzinfo=BERLIN_SUMMER),
         "trial_ends_at": datetime(2026, 4, 5, 13, 30, 45, tzinfo=BERLIN_SUMMER), "source": "leads-2026.csv line 2",
         "created_at": datetime(2026, 3, 1, 8, 0, tzinfo=UTC), "updated_at": datetime(2026, 3, 29, 11, 30, 45, tzinfo=UTC)},
        {"id": 2, "email": "li.wei@example.com", "first_name": "李", "last_name": "伟", "company": None, "title": None,
         "stage": "customer", "is_customer": True, "marketing_consent": None, "suppressed_at": None,
         "suppression_reason": None, "unsubscribed_at": None, "trial_started_at": None, "trial_ends_at": None,
         "source": None, "created_at": datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=KOLKATA),
         "updated_at": datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=KOLKATA)},
        {"id": 3, "email": "o.brien@example.com", "first_name": "Seán", "last_name": "O'Brien", "company": "Ó Briain Teo",
         "title": "CTO", "stage": "subscriber", "is_customer": False, "marketing_consent": False,
         "suppressed_at": datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN_SUMMER), "suppression_reason": "hard bounce: 550 5.1.1",
         "unsubscribed_at": datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN_WINTER), "trial_started_at": None,
         "trial_ends_at": None, "source": "import", "created_at": datetime(2026, 1, 1, tzinfo=UTC),
         "updated_at": datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN_WINTER)},
        {"id": 4, "email": "jose@example.com", "first_name": "José", "last_name": None, "company": "Café Ñandú", "title": None,
         "stage": "sql", "is_customer": False, "marketing_consent": True, "suppressed_at": None, "suppression_reason": None,
         "unsubscribed_at": None, "trial_started_at": datetime(2026, 3, 8, 1, 59, 59, tzinfo=NEW_YORK),
         "trial_ends_at": datetime(2026, 3, 15, 1, 59, 59, tzinfo=NEW_YORK), "source": "webhook",
         "created_at": datetime(2026, 3, 7, 12, 0, tzinfo=UTC), "updated_at": datetime(2026, 3, 20, 12, 0, tzinfo=UTC)},
    ],
    "email_ledger": [
        {"id": 1, "campaign_id": 1, "lead_id": 1, "step": "trial-invite", "status": "sent",
         "message_id": "<c1.l1.trial-invite@example.com>", "attempts": 1, "claimed_by": "flow-run:5e0c",
         "owner": "host-a/boot-1/ns/4242/1700000000", "created_at": datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC),
         "claimed_at": datetime(2026, 3, 2, 10, 0, 1, tzinfo=BERLIN_WINTER),
         "sent_at": datetime(2026, 3, 2, 9, 0, 2, 500, tzinfo=UTC), "next_attempt_at": None, "smtp_code": 250, "error": None},
        {"id": 2, "campaign_id": 1, "lead_id": 3, "step": "trial-invite", "status": "bounced",
         "message_id": "<c1.l3.trial-invite@example.com>", "attempts": 1, "claimed_by": "flow-run:5e0c", "owner": None,
         "created_at": datetime(2026, 3, 2, 9, 0, 1, tzinfo=UTC), "claimed_at": None, "sent_at": None,
         "next_attempt_at": None, "smtp_code": 550, "error": "550 5.1.1 Empfänger unbekannt"},
        {"id": 3, "campaign_id": 2, "lead_id": 4, "step": "trial-invite", "status": "deferred",
         "message_id": "<c2.l4.trial-invite@example.com>", "attempts": 3, "claimed_by": "ana.pérez", "owner": "host-b",
         "created_at": datetime(2026, 3, 30, 8, 0, tzinfo=BERLIN_SUMMER), "claimed_at": None, "sent_at": None,
         "next_attempt_at": datetime(2026, 3, 30, 8, 15, tzinfo=BERLIN_SUMMER), "smtp_code": 421, "error": "421 try later"},
        {"id": 4, "campaign_id": 3, "lead_id": 1, "step": "survey", "status": "ambiguous",
         "message_id": "<c3.l1.survey@example.com>", "attempts": 2, "claimed_by": None, "owner": None,
         "created_at": datetime(2026, 4, 3, 13, 30, 45, tzinfo=BERLIN_SUMMER), "claimed_at": None, "sent_at": None,
         "next_attempt_at": None, "smtp_code": None, "error": None},
    ],
    "stage_history": [
        {"id": 1, "lead_id": 1, "from_stage": None, "to_stage": "subscriber", "reason": "imported from leads-2026.csv",
         "actor": "cli:ana", "created_at": datetime(2026, 3, 1, 8, 0, tzinfo=UTC)},
        {"id": 2, "lead_id": 1, "from_stage": "subscriber", "to_stage": "mql", "reason": "trial started (Testphase begonnen)",
         "actor": "flow-run:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
         "created_at": datetime(2026, 3, 29, 13, 30, 45, tzinfo=BERLIN_SUMMER)},
        {"id": 3, "lead_id": 2, "from_stage": None, "to_stage": "customer", "reason": "Deal Stage=Closed Won",
         "actor": "cli:李", "created_at": datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=KOLKATA)},
        {"id": 4, "lead_id": 4, "from_stage": "sal", "to_stage": "sql", "reason": "score 85 ≥ 70",
         "actor": "reviewer:José", "created_at": datetime(2026, 3, 20, 7, 0, tzinfo=NEW_YORK)},
    ],
    "survey_responses": [
        {"id": 1, "lead_id": 1, "framework": "BANT",
         "answers": {"budget": "approved", "authority": "me", "need": "critical", "timing": "quarter"},
         "fit": "great", "pain_points": "Zu viele Tabellen — 表格太多", "source": "web",
         "submitted_at": datetime(2026, 4, 4, 18, 0, tzinfo=BERLIN_SUMMER),
         "updated_at": datetime(2026, 4, 4, 18, 5, tzinfo=BERLIN_SUMMER)},
        {"id": 2, "lead_id": 4, "framework": "BANT", "answers": {"budget": "planned", "timing": "year"}, "fit": None,
         "pain_points": None, "source": "surveys.csv line 3", "submitted_at": datetime(2026, 3, 13, 9, 0, tzinfo=NEW_YORK),
         "updated_at": datetime(2026, 3, 13, 9, 0, tzinfo=NEW_YORK)},
        {"id": 3, "lead_id": 3, "framework": "CHAMP", "answers": {}, "fit": "poor", "pain_points": "",
         "source": "webhook", "submitted_at": datetime(2026, 10, 24, 23, 0, tzinfo=UTC),
         "updated_at": datetime(2026, 10, 24, 23, 0, tzinfo=UTC)},
    ],
    "lead_reviews": [
        {"id": 1, "lead_id": 4, "framework": "BANT", "score": 85.0, "decision": "qualify", "rule_decision": "qualify",
         "explanation": {"total": 85, "criteria": [{"key": "budget", "points": 25, "passed": True}]},
         "decided_by": "flow-run:7a6b", "note": None, "decided_at": datetime(2026, 3, 20, 7, 0, tzinfo=NEW_YORK)},
        {"id": 2, "lead_id": 1, "framework": "BANT", "score": 100 / 3, "decision": "disqualify", "rule_decision": "review",
         "explanation": {"total": 100 / 3, "criteria": [], "note": "Grenzfall, à revoir"},
         "decided_by": "reviewer:Zoë Ångström", "note": "kein Budget bis 2027",
         "decided_at": datetime(2026, 4, 5, 12, 0, tzinfo=KOLKATA)},
        {"id": 3, "lead_id": 3, "framework": "CHAMP", "score": 0.0, "decision": "disqualify", "rule_decision": "disqualify",
         "explanation": {"total": 0, "criteria": []}, "decided_by": "flow-run:7a6b", "note": "",
         "decided_at": datetime(2026, 10, 25, 1, 0, tzinfo=UTC)},
    ],
    "sales_handoffs": [
        {"id": 1, "lead_id": 4, "owner": "sales@example.com", "assigned_at": datetime(2026, 3, 20, 7, 0, 1, tzinfo=NEW_YORK),
         "crm_status": "sent", "crm_attempts": 1, "crm_sent_at": datetime(2026, 3, 20, 12, 0, 2, tzinfo=UTC),
         "crm_error": None},
        {"id": 2, "lead_id": 1, "owner": "søren@example.com", "assigned_at": datetime(2026, 4, 5, 12, 0, tzinfo=KOLKATA),
         "crm_status": "failed", "crm_attempts": 3, "crm_sent_at": None, "crm_error": "HTTP 503: Dienst nicht verfügbar"},
        {"id": 3, "lead_id": 2, "owner": "sales@example.com", "assigned_at": datetime(2026, 3, 1, tzinfo=UTC),
         "crm_status": "not configured", "crm_attempts": 0, "crm_sent_at": None, "crm_error": None},
    ],
    "webhook_events": [
        {"id": 1, "event_id": "evt_0001", "kind": "trial-signup", "body_sha256": "a" * 64, "lead_id": 1,
         "outcome": "started", "received_at": datetime(2026, 3, 29, 13, 30, 46, tzinfo=BERLIN_SUMMER)},
        {"id": 2, "event_id": "événement-2", "kind": "survey-response", "body_sha256": "0123456789abcdef" * 4,
         "lead_id": None, "outcome": "unknown lead", "received_at": datetime(2026, 4, 1, tzinfo=UTC)},
        {"id": 3, "event_id": "evt_0003", "kind": "trial-signup", "body_sha256": "f" * 64, "lead_id": 99,
         "outcome": "created", "received_at": datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)},
    ],
    "suppressions": [
        {"id": 1, "address_hash": "1" * 64, "reason": "unsubscribe", "source": "web",
         "created_at": datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN_WINTER)},
        {"id": 2, "address_hash": "2" * 64, "reason": "hard-bounce", "source": None,
         "created_at": datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN_SUMMER)},
        {"id": 3, "address_hash": "3" * 64, "reason": "erasure", "source": "leadflow erase (Löschung)",
         "created_at": datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=KOLKATA)},
    ],
}

# The value each column added to an existing table gives the rows that were already there.
NEW_COLUMN_DEFAULTS: dict[tuple[str, str], Any] = {
    ("leads", "marketing_consent"): None,  # None: the list had no consent column.
    ("email_ledger", "owner"): None,
    ("email_ledger", "next_attempt_at"): None,
}

Schema = dict[str, list[str]]
"""Table name to column names, as reflected from a database."""


def migration_chain() -> list[Script]:
    """Return the migrations oldest first, following down_revision."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return list(reversed(list(scripts.walk_revisions())))


MIGRATIONS = migration_chain()


def migrate(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    """Run alembic upgrade or downgrade to `revision` on `engine`, as leadflow passes its connection."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def migrate_from_command_line(url: str, step: Callable[[Config, str], None], revision: str) -> None:
    """Run alembic upgrade or downgrade as the `alembic` command does: env.py opens its own engine on `url`.

    That engine leaves SQLite's foreign keys off, unlike leadflow's, so dropping a table
    in a batch operation does not cascade to the rows that refer to it.
    """
    config = alembic_config()
    # Config reads % as interpolation syntax.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    step(config, revision)


def reflect(engine: Engine) -> Schema:
    inspector = inspect(engine)
    return {
        table: [column["name"] for column in inspector.get_columns(table)]
        for table in sorted(inspector.get_table_names())
        if table != "alembic_version"
    }


def parameter_type(values: list[Any]) -> Any:  # noqa: ANN401
    """Return the SQL type that stores these values as the product does, or None for the driver's default."""
    if any(isinstance(value, datetime) for value in values):
        return UTCDateTime()
    if any(isinstance(value, dict | list) for value in values):
        return JSON()
    return None


def fill(engine: Engine, schema: Schema) -> dict[str, list[dict[str, Any]]]:
    """Insert the ROWS of every table in `schema` with plain INSERT statements, and return the rows written."""
    missing = sorted(set(schema) - set(ROWS))
    if missing:
        pytest.fail(
            f"ROWS has no rows for the tables {missing}. Add several rows for each, with NULLs, "
            "non-ASCII text and times in several zones.",
            pytrace=False,
        )

    written = {}
    with engine.begin() as connection:
        # ROWS lists each table after the tables its foreign keys refer to.
        for table in [name for name in ROWS if name in schema]:
            rows = [{column: row[column] for column in schema[table]} for row in ROWS[table]]
            columns = schema[table]
            statement = text(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(':' + column for column in columns)})"
            )
            for column in columns:
                kind = parameter_type([row[column] for row in rows])
                if kind is not None:
                    statement = statement.bindparams(bindparam(column, type_=kind))
            connection.execute(statement, rows)
            written[table] = rows
    return written


def expected_after_upgrade(written: dict[str, list[dict[str, Any]]], schema: Schema) -> dict[str, list[dict[str, Any]]]:
    """Add to each written row the columns that came later, with the value NEW_COLUMN_DEFAULTS documents."""
    expected = {}
    for table, rows in written.items():
        added = [column for column in schema[table] if column not in rows[0]]
        undocumented = [column for column in added if (table, column) not in NEW_COLUMN_DEFAULTS]
        if undocumented:
            pytest.fail(f"new columns of {table} have no entry in NEW_COLUMN_DEFAULTS: {undocumented}", pytrace=False)
        expected[table] = [{**row, **{column: NEW_COLUMN_DEFAULTS[table, column] for column in added}} for row in rows]
    return expected


def comparable(value: Any) -> Any:  # noqa: ANN401
    """Turn a time into its UTC ISO text, so that a shifted or naive time never equals the original."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo is not None else f"naive {value.isoformat()}"
    return value


def differences(engine: Engine, expected: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Return every difference between `expected` and the stored rows, read through the newest table definitions."""
    problems = []
    with engine.connect() as connection:
        for table, rows in expected.items():
            definition = SQLModel.metadata.tables[table]
            columns = [definition.c[name] for name in rows[0]]
            stored = {row["id"]: row for row in connection.execute(select(*columns)).mappings()}
            for row in rows:
                found = stored.pop(row["id"], None)
                if found is None:
                    problems.append(f"{table} row {row['id']} is missing")
                    continue
                for column, value in row.items():
                    expected_value, found_value = comparable(value), comparable(found[column])
                    if found_value != expected_value:
                        problems.append(f"{table} row {row['id']} {column}: expected {expected_value!r}, found {found_value!r}")
            problems.extend(f"{table} row {row_id} was not written by the test" for row_id in stored)
    return problems


def test_chain_is_linear() -> None:
    revisions = [script.revision for script in MIGRATIONS]

    assert MIGRATIONS[0].down_revision is None
    for previous, script in zip(MIGRATIONS, MIGRATIONS[1:], strict=False):
        assert script.down_revision == previous.revision
    assert len(set(revisions)) == len(revisions)


# The first migration is left out: before it there is no table to fill.
@pytest.mark.parametrize("migration", MIGRATIONS[1:], ids=lambda script: script.revision)
def test_upgrade_keeps_every_row(database_factory: DatabaseFactory, migration: Script) -> None:
    engine = create_db_engine(database_factory.new_empty_database())
    assert isinstance(migration.down_revision, str)
    migrate(engine, command.upgrade, migration.down_revision)
    written = fill(engine, reflect(engine))

    upgrade_database(engine)

    head = reflect(engine)
    assert differences(engine, expected_after_upgrade(written, head)) == []
    engine.dispose()


# Downgrades are for developers, who run them with the alembic command, so the test does too.
@pytest.mark.parametrize("migration", MIGRATIONS, ids=lambda script: script.revision)
def test_downgrade_keeps_older_rows(database_factory: DatabaseFactory, migration: Script) -> None:
    url = database_factory.new_empty_database()
    engine = create_db_engine(url)
    before = migration.down_revision or "base"
    migrate(engine, command.upgrade, before)
    schema_before = reflect(engine)
    migrate(engine, command.upgrade, migration.revision)
    written = fill(engine, reflect(engine))
    engine.dispose()

    migrate_from_command_line(url, command.downgrade, before)

    assert reflect(engine) == schema_before
    older_rows = {
        table: [{column: row[column] for column in schema_before[table]} for row in rows]
        for table, rows in written.items()
        if table in schema_before
    }
    assert differences(engine, older_rows) == []
    upgrade_database(engine)
    assert differences(engine, expected_after_upgrade(older_rows, reflect(engine))) == []
    engine.dispose()


def filled_at_head(database_factory: DatabaseFactory) -> tuple[Engine, dict[str, list[dict[str, Any]]]]:
    engine = create_db_engine(database_factory.new_empty_database())
    upgrade_database(engine)
    return engine, fill(engine, reflect(engine))


def test_lost_row_is_reported(database_factory: DatabaseFactory) -> None:
    engine, written = filled_at_head(database_factory)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM stage_history WHERE id = 3"))

    assert differences(engine, written) == ["stage_history row 3 is missing"]
    engine.dispose()


def test_shifted_time_is_reported(database_factory: DatabaseFactory) -> None:
    engine, written = filled_at_head(database_factory)
    shifted = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    update = text("UPDATE campaigns SET created_at = :moment WHERE id = 1").bindparams(bindparam("moment", type_=UTCDateTime()))
    with engine.begin() as connection:
        connection.execute(update, {"moment": shifted})

    assert differences(engine, written) == [
        "campaigns row 1 created_at: expected '2026-03-02T09:00:00+00:00', found '2026-03-02T10:00:00+00:00'"
    ]
    engine.dispose()
