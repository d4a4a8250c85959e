"""The trial-invite flow end to end: real SQLite file, outbox or loopback SMTP, Prefect test server."""

from __future__ import annotations

import email
import shutil
from email import policy
from pathlib import Path

import pytest
from sqlmodel import select

from flows.trial_invite import trial_invite
from leadflow.clock import now
from leadflow.settings import PROJECT_ROOT, Settings, get_settings
from models import EmailSend, Lead, SendStatus, Stage, session_scope
from tasks.import_leads import import_leads
from tasks.list_columns import CustomerRule
from tests.conftest import SmtpServer

pytestmark = pytest.mark.usefixtures("prefect_server")


def import_text(tmp_path: Path, text: str, *rules: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(text)
    with session_scope() as session:
        import_leads(path, session=session, customer_rules=[CustomerRule.parse(rule) for rule in rules])


def import_people(tmp_path: Path, count: int) -> list[str]:
    emails = [f"person{number}@example.com" for number in range(count)]
    rows = "".join(f"{address},Name{number}\n" for number, address in enumerate(emails))
    import_text(tmp_path, "email,first_name\n" + rows)
    return emails


def outbox_messages(settings: Settings) -> list[email.message.EmailMessage]:
    folder = settings.resolved_outbox_dir
    if not folder.exists():
        return []
    return [email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(folder.glob("*.eml"))]


def ledger() -> list[EmailSend]:
    with session_scope() as session:
        return list(session.exec(select(EmailSend)))


def update_lead(address: str, **values: object) -> None:
    with session_scope() as session:
        lead = session.exec(select(Lead).where(Lead.email == address)).one()
        for name, value in values.items():
            setattr(lead, name, value)
        session.add(lead)


def test_sends_one_email_per_eligible_lead(settings: Settings, tmp_path: Path) -> None:
    import_text(
        tmp_path,
        "email,first_name,stage\nann@example.com,Ann,open\nbob@example.com,Bob,won\ncid@example.com,Cid,open\n",
        "stage=won",
    )

    summary = trial_invite(name="spring")

    messages = outbox_messages(settings)
    assert summary.this_run.sent == 2
    assert summary.customers == 1
    assert sorted(message["To"].addresses[0].addr_spec for message in messages) == ["ann@example.com", "cid@example.com"]
    assert all(message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for message in messages)
    assert {row.status for row in ledger()} == {SendStatus.SENT}


def test_relaunch_sends_nothing_twice(settings: Settings, tmp_path: Path) -> None:
    import_people(tmp_path, 5)
    trial_invite(name="spring")
    first_files = {path.name: path.stat().st_mtime_ns for path in settings.resolved_outbox_dir.iterdir()}

    again = trial_invite(name="spring")

    assert again.this_run.sent == 0
    assert again.already_handled == 5
    assert {path.name: path.stat().st_mtime_ns for path in settings.resolved_outbox_dir.iterdir()} == first_files
    assert [row.attempts for row in ledger()] == [1] * 5


def test_new_leads_get_the_existing_campaign(settings: Settings, tmp_path: Path) -> None:
    import_people(tmp_path, 3)
    trial_invite(name="spring")
    import_text(tmp_path, "email\nlate@example.com\n")

    again = trial_invite(name="spring")

    assert again.this_run.sent == 1
    assert len(outbox_messages(settings)) == 4


def test_excluded_leads_get_nothing(settings: Settings, tmp_path: Path) -> None:
    import_people(tmp_path, 4)
    update_lead("person0@example.com", suppressed_at=now(), suppression_reason="hard bounce")
    update_lead("person1@example.com", unsubscribed_at=now())
    update_lead("person2@example.com", stage=Stage.MQL.value, trial_started_at=now())

    summary = trial_invite(name="spring")

    assert [message["To"].addresses[0].addr_spec for message in outbox_messages(settings)] == ["person3@example.com"]
    assert (summary.suppressed, summary.past_subscriber, summary.this_run.sent) == (2, 1, 1)


def test_limit_then_the_rest(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_BATCH_SIZE", "2")
    get_settings.cache_clear()
    import_people(tmp_path, 5)

    first = trial_invite(name="spring", limit=3)
    rest = trial_invite(name="spring")

    assert first.this_run.sent == 3
    assert rest.this_run.sent == 2
    assert len(outbox_messages(settings)) == 5


def test_dry_run_sends_and_records_nothing(settings: Settings, tmp_path: Path) -> None:
    import_people(tmp_path, 3)

    summary = trial_invite(name="spring", dry_run=True)

    assert summary.this_run.rendered == 3
    assert outbox_messages(settings) == []
    assert ledger() == []


def test_template_error_retried_after_fix(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", broken)
    body = broken / "emails" / "trial_invite" / "body.txt"
    body.write_text('{% if lead.company == "Broken" %}{{ missing_variable }}{% endif %}' + body.read_text())
    monkeypatch.setenv("LEADFLOW_TEMPLATES_DIR", str(broken))
    get_settings.cache_clear()
    import_text(tmp_path, "email,company\nann@example.com,Acme\nbob@example.com,Broken\ncid@example.com,Cid Ltd\n")

    first = trial_invite(name="spring")

    failed = [row for row in ledger() if row.status == SendStatus.FAILED]
    assert (first.this_run.sent, first.this_run.failed) == (2, 1)
    assert len(failed) == 1
    assert "missing_variable" in (failed[0].error or "")

    monkeypatch.delenv("LEADFLOW_TEMPLATES_DIR")
    get_settings.cache_clear()
    second = trial_invite(name="spring")

    assert second.this_run.sent == 1
    assert len(outbox_messages(settings)) == 3
    assert {row.status for row in ledger()} == {SendStatus.SENT}


def test_smtp_delivers_each_message_once(
    settings: Settings, tmp_path: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("LEADFLOW_BATCH_SIZE", "4")
    get_settings.cache_clear()
    emails = import_people(tmp_path, 10)
    smtp_server.handler.recipient_replies["person3@example.com"] = "550 5.1.1 no such user"

    first = trial_invite(name="spring")
    second = trial_invite(name="spring")

    received = [email.message_from_bytes(data, policy=policy.default) for data in smtp_server.handler.messages]
    message_ids = [message["Message-ID"] for message in received]
    assert (first.this_run.sent, first.this_run.bounced, second.this_run.sent) == (9, 1, 0)
    assert len(message_ids) == len(set(message_ids)) == 9
    assert sorted(message["To"].addresses[0].addr_spec for message in received) == sorted(
        address for address in emails if address != "person3@example.com"
    )
    assert not settings.resolved_outbox_dir.exists() or not any(settings.resolved_outbox_dir.iterdir())
    with session_scope() as session:
        bounced = session.exec(select(Lead).where(Lead.email == "person3@example.com")).one()
    assert bounced.suppressed_at is not None
    assert bounced.suppression_reason == "hard bounce on the trial-invite email"


def test_name_case_and_spaces_are_one_campaign(settings: Settings, tmp_path: Path) -> None:
    import_people(tmp_path, 3)

    first = trial_invite(name="Spring Launch ")
    second = trial_invite(name="spring  launch")

    assert first.campaign == second.campaign == "spring launch"
    assert (first.this_run.sent, second.this_run.sent) == (3, 0)


def test_other_campaign_skips_recent_invitees(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import_people(tmp_path, 3)
    trial_invite(name="spring")
    import_text(tmp_path, "email\nlate@example.com\n")

    summer = trial_invite(name="summer")

    assert summer.recently_invited == 3
    assert summer.this_run.sent == 1

    monkeypatch.setenv("LEADFLOW_INVITE_COOLDOWN_DAYS", "0")
    get_settings.cache_clear()
    autumn = trial_invite(name="autumn")

    assert autumn.recently_invited == 0
    assert autumn.this_run.sent == 4
