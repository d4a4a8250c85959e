"""The delivery, suppression and erase commands through Typer's runner."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from leadflow.clock import wall_clock
from leadflow.settings import Settings
from models import EmailSend, Lead, SendStatus, session_scope
from tasks.ledger import get_or_create_campaign
from tasks.recovery import recover_abandoned_sends
from tests.leadflow.test_cli import invoke, runner
from leadflow.cli import app
from tests.tasks.test_ledger import claim, make_leads
from tests.tasks.test_recovery import LEASE, dead_owner, hand_over_first


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def suppressed(address: str) -> bool:
    with session_scope() as session:
        found = session.exec(select(Lead).where(Lead.email == address)).one()
    return found.suppressed_at is not None


def test_suppression_add_then_reimport(settings: Settings, tmp_path: Path) -> None:
    leads = write(tmp_path, "list.csv", "email\nann@example.com\nbob@example.com\n")
    invoke("leads", "import", str(leads))

    added = invoke("suppression", "add", "Ann@Example.com", "--reason", "unsubscribe")
    again = invoke("suppression", "add", "ann@example.com")
    invoke("leads", "import", str(leads))

    assert "a***@example.com added to the suppression list" in added
    assert "was already on" in again
    assert suppressed("ann@example.com")
    assert not suppressed("bob@example.com")


def test_suppression_import_file(settings: Settings, tmp_path: Path) -> None:
    invoke("leads", "import", str(write(tmp_path, "list.csv", "email\nann@example.com\n")))

    output = invoke("suppression", "import", str(write(tmp_path, "s.csv", "email\nann@example.com\nbad\n")))

    assert "read 2 rows: 1 added" in output
    assert "line 3: rejected" in output
    assert suppressed("ann@example.com")


def test_erase_then_reimport_stays_suppressed(settings: Settings, tmp_path: Path) -> None:
    leads = write(tmp_path, "list.csv", "email,first_name\nann@example.com,Ann\n")
    invoke("leads", "import", str(leads))

    output = invoke("leads", "erase", "ann@example.com", "--yes")
    invoke("leads", "import", str(leads))

    assert "Erased lead 1" in output
    assert suppressed("ann@example.com")


def test_erase_asks_first(settings: Settings, tmp_path: Path) -> None:
    invoke("leads", "import", str(write(tmp_path, "list.csv", "email\nann@example.com\n")))

    result = runner.invoke(app, ["leads", "erase", "ann@example.com"], input="n\n")

    assert result.exit_code == 1
    assert not suppressed("ann@example.com")


def test_ambiguous_listed_and_resolved(settings: Settings) -> None:
    lead_ids = make_leads(2)
    owner = dead_owner()
    claim(lead_ids, owner, wall_time=wall_clock())
    hand_over_first(owner)
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        recover_abandoned_sends(session=session, campaign=campaign, step="trial-invite", wall_time=wall_clock(), lease=LEASE)
    with session_scope() as session:
        message_id = session.exec(select(EmailSend.message_id).where(EmailSend.status == SendStatus.AMBIGUOUS)).one()

    listing = invoke("deliveries", "ambiguous")
    resolved = invoke("deliveries", "resolve", message_id, "--as", "sent")
    empty = invoke("deliveries", "ambiguous")

    assert "1 ambiguous sends" in listing
    assert message_id in listing
    assert "l***@example.com" in listing
    assert "lead0@example.com" not in listing
    assert "Resolved 1 sends as sent" in resolved
    assert "No ambiguous sends" in empty


def test_resolve_unknown_message_id_fails(settings: Settings) -> None:
    result = runner.invoke(app, ["deliveries", "resolve", "<nope@example.com>", "--as", "resend"])

    assert result.exit_code == 1
    assert "not found among the ambiguous sends" in result.output


@pytest.mark.parametrize("arguments", [["deliveries", "resolve", "x", "--as", "maybe"], ["suppression", "add", "a@example.com", "--reason", "spite"]])
@pytest.mark.no_database
def test_bad_choice_is_rejected(settings: Settings, arguments: list[str]) -> None:
    result = runner.invoke(app, arguments)

    assert result.exit_code != 0
