"""The command line, through Typer's runner and, for exit codes, as a real process."""

from __future__ import annotations

import email
import os
import subprocess
import sys
from email import policy
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from leadflow.cli import app
from leadflow.errors import LeadflowError
from leadflow.settings import Settings, get_settings
from models import EmailSend, Lead, session_scope
from tests.conftest import SmtpServer

runner = CliRunner()


def invoke(*arguments: str) -> str:
    result = runner.invoke(app, list(arguments), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def write_list(tmp_path: Path) -> Path:
    path = tmp_path / "list.csv"
    path.write_text("Email,First Name,Deal Stage\nann@example.com,Ann,Open\nbob@example.com,Bob,Closed Won\nbad,Bad,Open\n")
    return path


def test_import_prints_summary(settings: Settings, tmp_path: Path) -> None:
    output = invoke("leads", "import", str(write_list(tmp_path)), "--customer-if", "Deal Stage=Closed Won")

    assert "read 3 rows: 2 imported" in output
    assert "1 customers, 1 rejected" in output
    assert "line 4: rejected" in output


def test_import_dry_run_saves_nothing(settings: Settings, tmp_path: Path) -> None:
    output = invoke("leads", "import", str(write_list(tmp_path)), "--dry-run")

    assert output.count("Dry run, nothing saved") == 1
    with session_scope() as session:
        assert session.exec(select(Lead)).all() == []


def test_import_options_and_rejects_file(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("Kontakt;Work Email;Opt Out\nAnn;ann@example.com;no\nBob;=bad;yes\n", encoding="utf-8")
    rejects = tmp_path / "rejects.csv"
    arguments = ("leads", "import", str(path), "--column", "email=Work Email", "--delimiter", "semicolon", "--rejects", str(rejects))

    output = invoke(*arguments)
    again = invoke(*arguments)

    assert "semicolon-delimited (set by --delimiter)" in output
    assert "email from 'Work Email'" in output
    assert "read 2 rows: 1 imported" in output
    assert "line 3: rejected" in output
    assert "'=bad" in rejects.read_text(encoding="utf-8-sig")
    assert "Nothing changed" not in output
    assert "Nothing changed" in again


def test_import_of_missing_file_is_an_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(LeadflowError) as caught:
        invoke("leads", "import", str(tmp_path / "nope.csv"))

    assert "nope.csv" in str(caught.value)


def test_preview_renders_for_a_lead(settings: Settings, tmp_path: Path) -> None:
    invoke("leads", "import", str(write_list(tmp_path)))

    output = invoke("campaign", "preview", "trial-invite", "--lead", "ANN@example.com")

    assert "To: Ann <ann@example.com>" in output
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in output
    assert "Hi Ann," in output


def test_errors_exit_non_zero_without_traceback(settings: Settings, tmp_path: Path) -> None:
    environment = {**os.environ, "LEADFLOW_DATABASE_URL": settings.resolved_database_url}
    result = subprocess.run(
        [sys.executable, "-m", "leadflow.cli", "leads", "import", str(tmp_path / "missing.csv")],
        capture_output=True, text=True, env=environment, timeout=120,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot open")
    assert "Traceback" not in result.stderr


@pytest.mark.usefixtures("prefect_server")
def test_launch_prints_summary_and_outbox(settings: Settings, tmp_path: Path) -> None:
    invoke("leads", "import", str(write_list(tmp_path)), "--customer-if", "Deal Stage=Closed Won")

    output = invoke("campaign", "launch", "trial-invite", "--name", "spring")

    assert "trial-invite/spring" in output
    assert f"Emails went to the outbox folder {settings.resolved_outbox_dir}" in output
    assert len(list(settings.resolved_outbox_dir.glob("*.eml"))) == 1


@pytest.mark.shared_data
@pytest.mark.usefixtures("prefect_server")
class TestLeads10000:
    """The 10,000-row public sample list: 1,038 rows are `Closed Won` customers."""

    def test_outbox_campaign(self, settings: Settings, shared_data: Path) -> None:
        output = invoke("leads", "import", str(shared_data / "leads-10000.csv"), "--customer-if", "Deal Stage=Closed Won")
        assert "10,000 imported" in output
        assert "1,038 customers" in output

        invoke("campaign", "launch", "trial-invite", "--name", "spring")

        files = sorted(settings.resolved_outbox_dir.glob("*.eml"))
        assert len(files) == 8_962
        with session_scope() as session:
            first_names = {lead.email: lead.first_name for lead in session.exec(select(Lead))}
        recipients = set()
        for path in files:
            message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
            addresses = message["To"].addresses
            assert len(addresses) == 1
            recipient = addresses[0].addr_spec
            recipients.add(recipient)
            assert message.get_content_type() == "multipart/alternative"
            assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
            assert f"Hi {first_names[recipient]}," in message.get_body(("plain",)).get_content()
            assert message["List-Unsubscribe"].startswith("<http")
            assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert len(recipients) == 8_962

        invoke("campaign", "launch", "trial-invite", "--name", "spring")

        assert sorted(settings.resolved_outbox_dir.glob("*.eml")) == files

    def test_smtp_campaign(
        self, settings: Settings, shared_data: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LEADFLOW_SMTP_URL", smtp_server.url)
        get_settings.cache_clear()
        invoke("leads", "import", str(shared_data / "leads-10000.csv"), "--customer-if", "Deal Stage=Closed Won")

        invoke("campaign", "launch", "trial-invite", "--name", "spring")
        invoke("campaign", "launch", "trial-invite", "--name", "spring")

        message_ids = [
            email.message_from_bytes(data, policy=policy.default)["Message-ID"] for data in smtp_server.handler.messages
        ]
        assert len(message_ids) == 8_962
        assert len(set(message_ids)) == 8_962


def test_preview_notes_a_lead_that_gets_nothing(settings: Settings, tmp_path: Path) -> None:
    invoke("leads", "import", str(write_list(tmp_path)), "--customer-if", "Deal Stage=Closed Won")

    result = runner.invoke(app, ["campaign", "preview", "trial-invite", "--lead", "bob@example.com"])

    assert result.exit_code == 0
    assert "would not get this email (stage customer, customer)" in result.output


def test_preview_rejects_bad_campaign_name(settings: Settings, tmp_path: Path) -> None:
    invoke("leads", "import", str(write_list(tmp_path)))

    with pytest.raises(LeadflowError, match="invalid campaign name 'a/b'"):
        invoke("campaign", "preview", "trial-invite", "--name", "a/b")


# The demo always builds its own SQLite file; the test checks that the configured database stays untouched.
@pytest.mark.no_database
@pytest.mark.usefixtures("prefect_server")
def test_demo_rebuilds_its_own_folder(settings: Settings) -> None:
    invoke("demo", "--leads", "20")
    output = invoke("demo", "--leads", "20")

    demo_folder = settings.data_dir / "demo"
    with session_scope(f"sqlite:///{demo_folder / 'leadflow.db'}") as session:
        sent = session.exec(select(EmailSend).where(EmailSend.status == "sent")).all()
    assert "read 22 rows: 20 imported" in output
    assert len(list((demo_folder / "outbox").glob("*.eml"))) == len(sent)
    assert sum(1 for send in sent if send.step == "trial-invite") == 20 - _demo_customers(demo_folder)
    assert not settings.resolved_outbox_dir.exists()
    assert not Path(settings.resolved_database_url.removeprefix("sqlite:///")).exists()


def _demo_customers(folder: Path) -> int:
    rows = (folder / "sample-leads.csv").read_text().splitlines()[1:]
    return sum(1 for row in rows[:-2] if row.endswith(",yes"))


def test_trial_start_and_upcoming(settings: Settings) -> None:
    output = invoke("trial", "start", "Ann@Example.com", "--at", "2030-01-10T09:00:00-05:00", "--days", "14")

    assert "Trial recorded (new lead)" in output
    assert "the trial ends 2030-01-24 14:00 UTC" in output
    assert "due 2030-01-22 14:00 UTC" in output

    again = invoke("trial", "start", "ann@example.com", "--at", "2030-01-11T09:00:00Z")
    upcoming = invoke("followups", "upcoming")

    assert "Nothing changed" in again
    assert "2030-01-22 14:00" in upcoming


@pytest.mark.no_database
def test_trial_start_rejects_naive_time(settings: Settings) -> None:
    with pytest.raises(LeadflowError, match="no UTC offset"):
        invoke("trial", "start", "ann@example.com", "--at", "2030-01-10T09:00")
