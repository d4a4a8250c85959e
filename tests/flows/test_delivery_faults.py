"""Each SMTP reply kind through the trial-invite flow, against a misbehaving SMTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from bench.fault_smtp import FaultHandler, FaultPlan, fault_server
from flows.trial_invite import trial_invite
from leadflow.settings import Settings, get_settings
from models import EmailSend, Lead, SendStatus, Suppression, session_scope
from tasks.suppression import address_hash
from tests.flows.test_trial_invite import import_people

pytestmark = pytest.mark.usefixtures("prefect_server")


@pytest.fixture
def faulty(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultHandler]:
    """A fault SMTP server with an empty plan, wired into the settings; tests fill in the plan."""
    with fault_server(FaultPlan()) as (url, handler):
        monkeypatch.setenv("LEADFLOW_SMTP_URL", url)
        monkeypatch.setenv("LEADFLOW_SMTP_TIMEOUT_SECONDS", "5")
        monkeypatch.setenv("LEADFLOW_RETRY_BACKOFF_SECONDS", "0.05")
        monkeypatch.setenv("LEADFLOW_RETRY_WAIT_SECONDS", "10")
        get_settings.cache_clear()
        yield handler


def configure(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"LEADFLOW_{name.upper()}", value)
    get_settings.cache_clear()


def script(handler: FaultHandler, address: str, *replies: str) -> None:
    handler._scripted[address] = list(replies)


def ledger_by_email() -> dict[str, EmailSend]:
    with session_scope() as session:
        rows = session.exec(select(Lead.email, EmailSend).join(EmailSend, EmailSend.lead_id == Lead.id)).all()
    return {address: row for address, row in rows}


def lead(address: str) -> Lead:
    with session_scope() as session:
        return session.exec(select(Lead).where(Lead.email == address)).one()


def test_deferral_is_retried_in_the_same_run(faulty: FaultHandler, tmp_path: Path) -> None:
    emails = import_people(tmp_path, 4)
    script(faulty, emails[1], "451 4.3.0 try later", "452 4.2.2 mailbox full")

    summary = trial_invite(name="spring")

    rows = ledger_by_email()
    assert (summary.this_run.sent, summary.this_run.deferred, summary.still_deferred) == (4, 2, 0)
    assert rows[emails[1]].status == SendStatus.SENT
    assert rows[emails[1]].attempts == 3
    assert faulty.recipient_attempts[emails[1]] == 3
    assert lead(emails[1]).suppressed_at is None
    assert sum(faulty.accepted.values()) == len(faulty.accepted) == 4


def test_deferral_is_retried_in_a_later_run(faulty: FaultHandler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, retry_wait_seconds="0", retry_backoff_seconds="0")
    emails = import_people(tmp_path, 3)
    script(faulty, emails[0], "450 4.2.1 busy")

    first = trial_invite(name="spring")
    second = trial_invite(name="spring")

    assert (first.this_run.sent, first.still_deferred, first.incomplete) == (2, 1, 1)
    assert (second.this_run.sent, second.still_deferred, second.incomplete) == (1, 0, 0)
    assert ledger_by_email()[emails[0]].attempts == 2
    assert sum(faulty.accepted.values()) == 3


def test_deferral_stops_at_max_attempts(faulty: FaultHandler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, max_send_attempts="2")
    emails = import_people(tmp_path, 2)
    script(faulty, emails[0], *["451 4.3.0 try later"] * 5)

    first = trial_invite(name="spring")
    second = trial_invite(name="spring")

    assert first.still_deferred == 1
    assert second.this_run.claimed == 0
    assert faulty.recipient_attempts[emails[0]] == 2
    assert ledger_by_email()[emails[0]].status == SendStatus.DEFERRED
    assert lead(emails[0]).suppressed_at is None


@pytest.mark.parametrize("reply", ["550 5.1.1 no such user", "551 5.1.6 user has moved", "553 5.1.3 bad mailbox name"])
def test_hard_bounce_suppresses_for_good(faulty: FaultHandler, tmp_path: Path, reply: str) -> None:
    emails = import_people(tmp_path, 3)
    faulty.plan.bounces[emails[1]] = reply

    first = trial_invite(name="spring")
    second = trial_invite(name="summer")

    assert (first.this_run.sent, first.this_run.bounced) == (2, 1)
    assert ledger_by_email()[emails[1]].smtp_code == int(reply[:3])
    assert lead(emails[1]).suppressed_at is not None
    assert faulty.recipient_attempts[emails[1]] == 1
    assert second.this_run.claimed == 0
    with session_scope() as session:
        assert session.exec(select(Suppression).where(Suppression.address_hash == address_hash(emails[1]))).one().reason == "hard-bounce"


def test_421_closes_and_the_batch_goes_on(faulty: FaultHandler, tmp_path: Path) -> None:
    emails = import_people(tmp_path, 4)
    script(faulty, emails[1], "421 4.3.2 closing")

    summary = trial_invite(name="spring")

    assert (summary.this_run.sent, summary.this_run.deferred) == (4, 1)
    assert sorted(faulty.accepted.values()) == [1, 1, 1, 1]


def test_dropped_connection_reconnects(faulty: FaultHandler, tmp_path: Path) -> None:
    faulty.plan.drop_every = (3, 3)
    faulty._until_drop = 3
    import_people(tmp_path, 10)

    summary = trial_invite(name="spring")

    assert summary.this_run.sent == 10
    assert faulty.replies["drop"] >= 3
    assert sorted(faulty.accepted.values()) == [1] * 10


def test_one_bad_message_never_stops_the_batch(faulty: FaultHandler, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, batch_size="10", retry_wait_seconds="0")
    emails = import_people(tmp_path, 6)
    faulty.plan.bounces[emails[0]] = "550 5.1.1 no such user"
    script(faulty, emails[2], "554 5.7.1 rejected by policy")
    script(faulty, emails[4], "451 4.3.0 try later")

    summary = trial_invite(name="spring")

    run = summary.this_run
    assert (run.sent, run.bounced, run.failed, run.deferred) == (3, 1, 1, 1)
    assert summary.still_deferred == 1
    assert {address for address, row in ledger_by_email().items() if row.status == SendStatus.SENT} == {emails[1], emails[3], emails[5]}
