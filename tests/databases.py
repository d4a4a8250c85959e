"""Test databases on SQLite and PostgreSQL, each created for one test.

On PostgreSQL each one is a copy of a template database migrated once per session, and
it is dropped after the test.

The PostgreSQL half needs a server named by LEADFLOW_TEST_POSTGRESQL_URL whose user may
create databases. Every database made here gets a random name, so test runs that share
a server never touch each other's databases.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from models.db import create_db_engine, upgrade_database

POSTGRESQL_VARIABLE = "LEADFLOW_TEST_POSTGRESQL_URL"
POSTGRESQL_EXAMPLE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRESQL_SKIP_REASON = (
    f"set {POSTGRESQL_VARIABLE} (for example {POSTGRESQL_EXAMPLE}) to run the PostgreSQL half of the database tests"
)
DATABASE_PREFIX = "leadflow_test_"


class PostgresqlUnavailable(Exception):
    """The server that LEADFLOW_TEST_POSTGRESQL_URL names cannot be reached or cannot create databases."""


def unique_database_name(kind: str) -> str:
    return f"{DATABASE_PREFIX}{kind}_{uuid.uuid4().hex[:12]}"


class PostgresqlServer:
    """Creates and drops uniquely named databases on one PostgreSQL server.

    The database in the URL is used only to run CREATE DATABASE and DROP DATABASE. The
    tests run in the databases made here.
    """

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        if self._url.get_backend_name() != "postgresql":
            raise PostgresqlUnavailable(f"{POSTGRESQL_VARIABLE} must be a postgresql URL, not {self.display_url}")
        # CREATE DATABASE cannot run inside a transaction, hence AUTOCOMMIT.
        self._admin = create_engine(
            self._url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 10}
        )
        self._template: str | None = None

    @property
    def display_url(self) -> str:
        return self._url.render_as_string(hide_password=True)

    def url_of(self, database: str) -> str:
        return self._url.set(database=database).render_as_string(hide_password=False)

    def prepare_template(self) -> None:
        """Create the session's template database and migrate it to the newest revision."""
        try:
            with self._admin.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError as exc:
            reason = str(exc.__cause__ or exc).strip()
            raise PostgresqlUnavailable(
                f"cannot connect to the PostgreSQL server {self.display_url} that {POSTGRESQL_VARIABLE} names:\n"
                f"{reason}\nStart the server, or unset {POSTGRESQL_VARIABLE} to skip the PostgreSQL tests."
            ) from exc

        try:
            self._template = self._create(unique_database_name("template"), template=None)
        except SQLAlchemyError as exc:
            reason = str(exc.__cause__ or exc).strip()
            raise PostgresqlUnavailable(
                f"cannot create a database on the PostgreSQL server {self.display_url}:\n{reason}\n"
                "The tests need a user with the CREATEDB privilege."
            ) from exc

        engine = create_db_engine(self.url_of(self._template))
        try:
            upgrade_database(engine)
        except BaseException:
            engine.dispose()
            self.drop_template()
            raise
        # CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template.
        engine.dispose()

    def create_migrated_database(self) -> str:
        """Copy the migrated template into a new database and return its URL."""
        if self._template is None:
            raise RuntimeError("prepare_template() must run before create_migrated_database()")
        return self.url_of(self._create(unique_database_name("db"), template=self._template))

    def create_empty_database(self) -> str:
        """Create a database with no tables and return its URL."""
        return self.url_of(self._create(unique_database_name("empty"), template=None))

    def drop_database(self, url: str) -> None:
        """Drop a database made here, closing any connection a test left open.

        NOTE: DROP DATABASE ... WITH (FORCE) needs PostgreSQL 13 or newer.
        """
        name = make_url(url).database
        if name is None or not name.startswith(DATABASE_PREFIX):
            raise ValueError(f"cannot drop {name!r}: the tests drop only the databases they made, named {DATABASE_PREFIX}*")
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_template(self) -> None:
        if self._template is not None:
            self.drop_database(self.url_of(self._template))
            self._template = None

    def _create(self, name: str, *, template: str | None) -> str:
        # template0 is always empty, while template1 may contain whatever the server's owner put there.
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template or "template0"}" ENCODING \'UTF8\'')
        # A commit then returns without waiting for the disk. leadflow commits twice per
        # email, and tests never need data to survive a server crash.
        self._execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO off')
        return name

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as connection:
            connection.exec_driver_sql(statement)


class DatabaseFactory:
    """Creates databases on one backend for one test: PostgreSQL on `server`, SQLite without one.

    On SQLite a database is a new file under `folder`, which leadflow migrates when it
    first opens it. On PostgreSQL it is a copy of the session's migrated template.
    """

    def __init__(self, folder: Path, server: PostgresqlServer | None) -> None:
        self._folder = folder
        self._server = server
        self._created: list[str] = []
        self._sqlite_files = 0

    def new_database(self) -> str:
        """Return the URL of a new database that leadflow can open at once."""
        if self._server is not None:
            url = self._server.create_migrated_database()
        else:
            url = self._new_sqlite_url()
        self._created.append(url)
        return url

    def new_empty_database(self) -> str:
        """Return the URL of a new database with no tables, not even Alembic's."""
        if self._server is not None:
            url = self._server.create_empty_database()
        else:
            url = self._new_sqlite_url()
        self._created.append(url)
        return url

    def remove_all(self) -> None:
        """Drop every PostgreSQL database made here, after the caller has closed its engines.

        SQLite files stay in the test's folder, which pytest keeps for the last three runs.
        """
        if self._server is not None:
            for url in self._created:
                self._server.drop_database(url)
        self._created.clear()

    def _new_sqlite_url(self) -> str:
        self._sqlite_files += 1
        name = "leadflow.db" if self._sqlite_files == 1 else f"leadflow-{self._sqlite_files}.db"
        return f"sqlite:///{self._folder / name}"


def sqlite_path(url: str | URL) -> Path | None:
    """Return the file of a SQLite URL, or None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)
