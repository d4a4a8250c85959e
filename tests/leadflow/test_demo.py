"""`leadflow demo` on the Prefect test server, then `leadflow funnel` and `leadflow leads show` on what it left."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from leadflow.cli import app
from leadflow.errors import LeadflowError
from leadflow.settings import get_settings
from models import Campaign, EmailSend, Lead, LeadReview, StageChange, dispose_engines, session_scope

pytestmark = pytest.mark.usefixtures("prefect_server")

runner = CliRunner()
LEADS = 150
SEED = 3
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def invoke(*arguments: str) -> str:
    result = runner.invoke(app, list(arguments), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class DemoRun:
    output: str
    folder: Path
    database_url: str


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Iterator[DemoRun]:
    """Run the demo once for the module, on its own data folder, and restore the environment after."""
    data = tmp_path_factory.mktemp("demo-data")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("LEADFLOW_"):
                patch.delenv(name)
        patch.setenv("LEADFLOW_DATA_DIR", str(data))
        # The demo points these at its own folder; setting them here makes the patch restore them.
        patch.setenv("LEADFLOW_DATABASE_URL", f"sqlite:///{data / 'unused.db'}")
        patch.setenv("LEADFLOW_OUTBOX_DIR", str(data / "unused-outbox"))
        get_settings.cache_clear()

        output = invoke("demo", "--leads", str(LEADS), "--seed", str(SEED))

        yield DemoRun(output=output, folder=data / "demo", database_url=os.environ["LEADFLOW_DATABASE_URL"])
    get_settings.cache_clear()
    dispose_engines()


def funnel_table(output: str) -> dict[str, list[str]]:
    """Return the cells of the printed funnel table by stage."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 5 and cells[0] == "demo":
            rows[cells[1]] = cells[2:]
    return rows


def database_counts() -> dict[str, int]:
    """Count the demo campaign's leads per stage straight from the ledger and the stage history."""
    with session_scope() as session:
        invited = set(
            session.exec(
                select(EmailSend.lead_id)
                .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
                .where(Campaign.kind == "trial-invite", Campaign.name == "demo", EmailSend.status == "sent")
            )
        )
        reached: dict[str, set[int]] = {}
        for change in session.exec(select(StageChange)):
            reached.setdefault(change.to_stage, set()).add(change.lead_id)
    return {
        "invited": len(invited),
        "in trial (MQL)": len(invited & reached.get("mql", set())),
        "surveyed (SAL)": len(invited & reached.get("sal", set())),
        "qualified (SQL)": len(invited & reached.get("sql", set())),
        "disqualified": len(invited & reached.get("disqualified", set())),
    }


def test_demo_funnel_numbers_are_pinned(demo_run: DemoRun) -> None:
    table = funnel_table(demo_run.output)

    counts = {stage: int(cells[0].replace(",", "")) for stage, cells in table.items()}
    assert counts == {
        "invited": 149,
        "in trial (MQL)": 40,
        "surveyed (SAL)": 22,
        "qualified (SQL)": 5,
        "disqualified": 17,
    }


def test_demo_funnel_matches_database(demo_run: DemoRun) -> None:
    table = funnel_table(demo_run.output)
    counts = database_counts()
    before = {"in trial (MQL)": "invited", "surveyed (SAL)": "in trial (MQL)", "qualified (SQL)": "surveyed (SAL)", "disqualified": "surveyed (SAL)"}

    for stage, (leads, of_invited, of_before) in table.items():
        assert int(leads.replace(",", "")) == counts[stage], stage
        assert of_invited == f"{counts[stage] / counts['invited']:.1%}", stage
        if stage in before:
            assert of_before.startswith(f"{counts[stage] / counts[before[stage]]:.1%} of "), stage
    assert set(table) == set(counts)


def test_demo_reports_month_and_places(demo_run: DemoRun) -> None:
    output = demo_run.output

    assert "read 152 rows: 150 imported" in output
    assert "line 153: rejected" in output
    assert re.search(r"\d+ survey emails in \d+ survey-followup runs", output)
    assert f"The emails, one .eml file each: {demo_run.folder / 'outbox'}" in output
    assert "/runs (the demo-month run and its sub-runs)" in output
    assert (demo_run.folder / "funnel.svg").is_file()


def test_every_survey_email_went_out_once(demo_run: DemoRun) -> None:
    with session_scope() as session:
        trials = session.exec(select(StageChange.lead_id).where(StageChange.to_stage == "mql")).all()
        surveys = session.exec(select(EmailSend).where(EmailSend.step == "survey")).all()

    assert sorted(send.lead_id for send in surveys) == sorted(trials)
    assert {send.status for send in surveys} == {"sent"}


def test_borderline_leads_were_decided_by_the_reviewer(demo_run: DemoRun) -> None:
    with session_scope() as session:
        reviews = session.exec(select(LeadReview)).all()
        waiting = session.exec(select(StageChange.lead_id).where(StageChange.to_stage == "sal")).all()

    by_reviewer = [review for review in reviews if review.rule_decision == "review"]
    assert by_reviewer
    assert {review.decided_by for review in by_reviewer} == {"reviewer:demo reviewer"}
    assert len(reviews) == len(waiting)


def test_leads_show_tells_an_sql_story(demo_run: DemoRun) -> None:
    with session_scope() as session:
        lead_id = session.exec(
            select(StageChange.lead_id)
            .join(LeadReview, col(LeadReview.lead_id) == StageChange.lead_id)
            .where(StageChange.to_stage == "sql", LeadReview.rule_decision == "qualify")
        ).first()
        lead = session.get(Lead, lead_id)
    assert lead is not None

    output = invoke("leads", "show", lead.email.upper())

    for move in ("subscriber", "subscriber -> mql", "mql -> sal", "sal -> sql"):
        assert re.search(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d UTC  {re.escape(move)} +flow run {UUID}", output), move
    assert re.search(rf"trial-invite/demo trial-invite: sent  flow run {UUID}", output)
    assert re.search(rf"survey-followup/survey survey: sent  flow run {UUID}", output)
    assert "Who decides on buying a tool like this?" in output
    assert "How well did the trial fit your needs?" in output
    assert "BANT review: qualified by the rules" in output
    for criterion in ("Budget", "Authority", "Need", "Timing"):
        assert re.search(rf"│ {criterion} +│ .+│ +\d+ │ (yes|no) +│", output), criterion


def test_leads_show_of_unknown_address_is_an_error(demo_run: DemoRun) -> None:
    with pytest.raises(LeadflowError) as caught:
        invoke("leads", "show", "nobody@example.com")

    assert "no lead with the address nobody@example.com" in str(caught.value)


def test_leads_show_needs_no_prefect(demo_run: DemoRun) -> None:
    with session_scope() as session:
        lead_id = session.exec(select(StageChange.lead_id).where(StageChange.to_stage == "sql")).first()
        lead = session.get(Lead, lead_id)
    assert lead is not None
    script = (
        "import sys\n"
        "from leadflow.cli import app\n"
        "try:\n"
        f"    app(['leads', 'show', {lead.email!r}], standalone_mode=False)\n"
        "finally:\n"
        "    print('prefect imported' if 'prefect' in sys.modules else 'prefect not imported')\n"
    )
    # An unreachable API address: the command must not need it.
    environment = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "sal -> sql" in result.stdout
    assert result.stdout.rstrip().endswith("prefect not imported")


def test_funnel_command_writes_chart(demo_run: DemoRun, tmp_path: Path) -> None:
    chart = tmp_path / "funnel.svg"

    output = invoke("funnel", "--campaign", " Demo ", "--chart", str(chart))

    assert funnel_table(output) == funnel_table(demo_run.output)
    root = ElementTree.parse(chart).getroot()
    assert "Campaign demo: 149 invited" in "".join(root.itertext())


def test_funnel_of_unknown_campaign_names_the_known_ones(demo_run: DemoRun) -> None:
    with pytest.raises(LeadflowError) as caught:
        invoke("funnel", "--campaign", "autumn")

    assert "the campaigns are: demo" in str(caught.value)


def test_funnel_rejects_png_before_counting(demo_run: DemoRun, tmp_path: Path) -> None:
    with pytest.raises(LeadflowError) as caught:
        invoke("funnel", "--chart", str(tmp_path / "funnel.png"))

    assert "funnel.svg" in str(caught.value)
