"""`leadflow surveys import`, `review run` and `sales queue` through Typer's runner."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from leadflow.errors import ImportFileError
from leadflow.settings import Settings
from models import Lead, Stage, SurveyResponse, session_scope
from tasks.trials import record_trial_signup
from tests.leadflow.test_cli import invoke

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def start_trials(*addresses: str) -> None:
    with session_scope() as session:
        for address in addresses:
            record_trial_signup(address, session=session, started_at=START, days=7, source="test", actor="tester", offset_hours=48)


def test_surveys_import_records_and_rejects(settings: Settings, tmp_path: Path) -> None:
    start_trials("ann@example.com", "bob@example.com")
    path = tmp_path / "answers.csv"
    path.write_text(
        "Email,budget,Who decides on buying a tool like this?,need,timing,Fit,Pain points\n"
        "ann@example.com,approved,me,critical,quarter,great,Reports take a day\n"
        "bob@example.com,lots,me,critical,quarter,,\n"
        "nobody@example.com,approved,me,critical,quarter,,\n"
        "ANN@example.com,approved,me,critical,year,great,\n"
    )

    output = invoke("surveys", "import", str(path))

    assert "read 4 responses (BANT questions): 1 recorded, 1 updated, 2 rejected" in output
    assert "line 3: rejected, 'lots' is not an answer to 'budget'" in output
    assert "line 4: rejected, no lead with the address nobody@example.com" in output
    with session_scope() as session:
        response = session.exec(select(SurveyResponse)).one()
        lead = session.get(Lead, response.lead_id)
    assert response.answers == {"budget": "approved", "authority": "me", "need": "critical", "timing": "year"}
    assert lead is not None and lead.stage == Stage.SAL


def test_surveys_import_needs_question_columns(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "answers.csv"
    path.write_text("email,colour\nann@example.com,blue\n")

    with pytest.raises(ImportFileError, match="no column for any BANT question"):
        invoke("surveys", "import", str(path))


@pytest.mark.usefixtures("prefect_server")
def test_review_run_then_sales_queue(settings: Settings, tmp_path: Path) -> None:
    start_trials("ann@example.com", "bob@example.com", "cid@example.com")
    path = tmp_path / "answers.csv"
    path.write_text(
        "email,budget,authority,need,timing\n"
        "ann@example.com,approved,recommend,critical,quarter\n"
        "bob@example.com,none,other,curious,later\n"
        "cid@example.com,approved,me,critical,quarter\n"
    )
    invoke("surveys", "import", str(path))

    review = invoke("review", "run", "--timeout-minutes", "1")
    queue = invoke("sales", "queue")

    assert "3 scored, 2 qualified, 1 disqualified (0 by the reviewer)" in review
    assert "2 handed to sales, 2 hand-off emails" in review
    assert queue.index("cid@example.com") < queue.index("ann@example.com")
    assert "100/100" in queue
    assert "sales@example.com" in queue
    assert "bob@example.com" not in queue
