"""A trial-invite launch with senders, end to end: `leadflow serve` runs the campaign-sender runs as processes.

The launcher runs in the test process on the Prefect test server. `leadflow
serve`, started as a subprocess against the same server, picks up the
campaign-sender runs and starts each in a process of its own, which send to
the test's SMTP server on loopback through the test's SQLite file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlmodel import select

from flows.trial_invite import trial_invite
from leadflow.settings import PROJECT_ROOT, Settings, get_settings
from models import EmailSend, SendStatus, session_scope
from tasks.fan_out import actor_of_run
from tests.conftest import SmtpServer
from tests.flows.test_trial_invite import import_text

pytestmark = pytest.mark.usefixtures("prefect_server")

SERVE_START_SECONDS = 120.0


@pytest.fixture
def serving(settings: Settings, smtp_server: SmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run `leadflow serve` against the test server, with the test's database and SMTP server; yield its log file."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("LEADFLOW_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("LEADFLOW_BATCH_SIZE", "7")
    get_settings.cache_clear()
    environment = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "leadflow.cli", "serve"], cwd=PROJECT_ROOT, env=environment,
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVE_START_SECONDS
        while "Serving" not in log.read_text(errors="replace"):
            assert process.poll() is None, f"leadflow serve exited with {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"leadflow serve did not start:\n{log.read_text()}"
            time.sleep(0.5)
        yield log
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_senders_send_each_lead_once(settings: Settings, smtp_server: SmtpServer, serving: Path, tmp_path: Path) -> None:
    rows = "".join(f"person{number}@example.com,{'yes' if number % 10 == 0 else ''}\n" for number in range(60))
    import_text(tmp_path, "email,customer\n" + rows, "customer=yes")

    state = trial_invite(name="spring", senders=2, return_state=True)
    summary = state.result()

    delivered = Counter(
        str(message_from_bytes(raw, policy=policy.default)["Message-ID"]) for raw in smtp_server.handler.messages
    )
    with session_scope() as session:
        ledger = list(session.exec(select(EmailSend)))
    assert summary.customers == 6
    assert summary.this_run.sent == 54
    assert len(delivered) == 54
    assert set(delivered.values()) == {1}
    assert set(delivered) == {row.message_id for row in ledger}
    assert {row.status for row in ledger} == {SendStatus.SENT}
    launcher = actor_of_run(state.state_details.flow_run_id)
    assert launcher not in {row.claimed_by for row in ledger}, "the launcher sent what the senders should have"
    assert all((row.claimed_by or "").startswith("flow-run:") for row in ledger)


def test_relaunch_with_senders_sends_nothing_twice(settings: Settings, smtp_server: SmtpServer, serving: Path, tmp_path: Path) -> None:
    import_text(tmp_path, "email\n" + "".join(f"person{number}@example.com\n" for number in range(10)))
    trial_invite(name="spring", senders=2)

    again = trial_invite(name="spring", senders=2)

    assert again.this_run.sent == 0
    assert again.already_handled == 10
    assert len(smtp_server.handler.messages) == 10
