"""Shared fixtures: a new database and outbox per test, one Prefect test server per session.

Every test that uses `settings`, `database_url` or `database_factory` runs twice, as
`[sqlite]` and `[postgresql]`. Mark a test `no_database` when it uses `settings` but never
opens the database. A test of something only SQLite has (pragmas, files) uses none of
these fixtures, and a comment gives the reason.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from leadflow.settings import Settings, apply_prefect_privacy_defaults, get_settings
from tests.databases import (
    POSTGRESQL_SKIP_REASON,
    POSTGRESQL_VARIABLE,
    DatabaseFactory,
    PostgresqlServer,
    PostgresqlUnavailable,
    sqlite_path,
)

apply_prefect_privacy_defaults()

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgresql),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that needs `database_backend` once per backend, unless it is marked no_database."""
    if "database_backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("no_database"):
        return
    metafunc.parametrize("database_backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect server for the whole session (it takes a few seconds to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgresqlServer]:
    """The PostgreSQL server of LEADFLOW_TEST_POSTGRESQL_URL, with a migrated template database for the session.

    Skips when the variable is unset. When it is set, an unreachable server fails every
    PostgreSQL test, so CI cannot pass without running them.
    """
    url = os.environ.get(POSTGRESQL_VARIABLE)
    if not url:
        pytest.skip(POSTGRESQL_SKIP_REASON)
    problem = None
    try:
        server = PostgresqlServer(url)
        server.prepare_template()
    except PostgresqlUnavailable as exc:
        problem = str(exc)
    if problem is not None:
        # Failing outside the except block keeps the report to this one message.
        pytest.fail(problem, pytrace=False)
    try:
        yield server
    finally:
        server.drop_template()


@pytest.fixture
def database_backend(request: pytest.FixtureRequest) -> str:
    """The test's backend, `sqlite` or `postgresql`, as pytest_generate_tests sets it (`sqlite` when marked no_database)."""
    backend: str = getattr(request, "param", "sqlite")
    return backend


@pytest.fixture
def database_factory(database_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[DatabaseFactory]:
    """Makes databases on the test's backend and drops every one when the test ends."""
    from models import dispose_engines

    server = request.getfixturevalue("postgresql_server") if database_backend == "postgresql" else None
    factory = DatabaseFactory(tmp_path, server)
    try:
        yield factory
    finally:
        dispose_engines()
        factory.remove_all()


@pytest.fixture
def database_url(database_factory: DatabaseFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new database on the test's backend, ready for leadflow to open."""
    url = database_factory.new_database()
    yield url

    path = sqlite_path(url)
    if request.node.get_closest_marker("no_database") and path is not None and path.exists():
        pytest.fail(
            f"{request.node.nodeid} is marked no_database but opened the database {path}. "
            "Remove the marker so that the test runs on SQLite and PostgreSQL.",
            pytrace=False,
        )


@pytest.fixture
def settings(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings on a new database (see database_backend) and an outbox folder under the test's tmp_path."""
    from models import dispose_engines

    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("LEADFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", database_url)
    monkeypatch.setenv("LEADFLOW_OUTBOX_DIR", str(tmp_path / "outbox"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    dispose_engines()


@pytest.fixture
def shared_data() -> Path:
    """The folder of public CSV files; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"the shared data folder {SHARED_DATA} is absent; these tests read its public CSV files")
    return SHARED_DATA


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RecordingHandler:
    """An aiosmtpd handler that stores every accepted message and replies to chosen recipients with a code."""

    messages: list[bytes] = field(default_factory=list)
    recipient_replies: dict[str, str] = field(default_factory=dict)
    """Address to SMTP reply, for example {"gone@example.com": "550 5.1.1 no such user"}."""
    pipelining: bool = True
    """Advertise PIPELINING (RFC 2920), as postfix and most mail servers do; aiosmtpd on its own does not."""

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201, N802
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        reply = self.recipient_replies.get(address.lower())
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        self.messages.append(envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port, stopped after the test."""
    from aiosmtpd.controller import Controller

    handler = RecordingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(host="127.0.0.1", port=port, handler=handler)
    finally:
        controller.stop()
