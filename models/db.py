"""The database engine, sessions, and schema upgrades through Alembic."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def _enable_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers work while a campaign writes; the busy timeout makes a second
    # writer wait for the lock instead of failing at once.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_db_engine(url: str) -> Engine:
    """Create an engine for `url`; for SQLite, create the file's folder and set the pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _enable_sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def alembic_config() -> Config:
    """Build the Alembic configuration in code, so no alembic.ini is needed at run time.

    The connection is passed in `config.attributes`, never as a URL option:
    Alembic's config parser would read a `%` in a URL (an escaped password, a
    PostgreSQL `options=` value) as interpolation syntax.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(engine: Engine) -> bool:
    """Bring the schema to the newest migration; return True when anything ran."""
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current == head:
        return False

    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    return True


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for `url` (default: the settings), upgraded to the newest schema."""
    if url is None:
        from leadflow.settings import get_settings

        url = get_settings().resolved_database_url
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = create_db_engine(url)
            upgrade_database(engine)
            _engines[url] = engine
        return engine


def dispose_engines() -> None:
    """Close every pooled connection; tests call this between databases."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """Open a session that commits at the end of the block and rolls back on error."""
    session = Session(get_engine(url), expire_on_commit=False)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
