"""The bant-review flow on the Prefect test server: clear cases, a person's decision, and the hand-off."""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run
from sqlmodel import select

from flows.bant_review import bant_review
from leadflow.settings import PROJECT_ROOT, Settings, get_settings
from models import Lead, LeadReview, SalesHandoff, Stage, StageChange, session_scope
from tasks.scoring import load_rules
from tasks.surveys import record_survey_response
from tasks.trials import record_trial_signup

pytestmark = pytest.mark.usefixtures("prefect_server")

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

BANT_ANSWERS = {
    "pass@example.com": {"budget": "approved", "authority": "me", "need": "critical", "timing": "quarter"},
    "fail@example.com": {"budget": "none", "authority": "other", "need": "curious", "timing": "later"},
    "edge@example.com": {"budget": "planned", "authority": "recommend", "need": "important", "timing": "year"},
}
CHAMP_ANSWERS = {
    "pass@example.com": {"challenges": "blocking", "authority": "decide", "money": "budgeted", "prioritisation": "top"},
    "fail@example.com": {"challenges": "none", "authority": "none", "money": "unknown", "prioritisation": "not_listed"},
    "edge@example.com": {"challenges": "slowing", "authority": "influence", "money": "to_request", "prioritisation": "listed"},
}


class CrmRecorder(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def crm_server() -> Iterator[str]:
    """A loopback HTTP server that records each POST; yields its URL."""
    CrmRecorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CrmRecorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/crm"
    finally:
        server.shutdown()
        server.server_close()


def prepare(answers: dict[str, dict[str, str]]) -> dict[str, int]:
    rules = load_rules(get_settings().rules_file)
    ids: dict[str, int] = {}
    with session_scope() as session:
        for address, given in answers.items():
            result = record_trial_signup(
                address, session=session, started_at=START, days=7, source="test", actor="tester", offset_hours=48
            )
            ids[address] = result.lead_id
            record_survey_response(
                result.lead_id, session=session, rules=rules, answers=given, fit="great", pain_points="slow reports",
                source="test", actor="tester", at=START + timedelta(days=5),
            )
    return ids


async def paused_runs() -> list:  # noqa: ANN401
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])))
        )


def run_with_reviewer(choice: str, lead_id: int) -> object:
    """Run bant_review in a thread, answer its pause with `choice` for `lead_id`, and return the summary."""
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(bant_review(review_timeout_minutes=2)))
    worker.start()
    deadline = time.monotonic() + 90
    paused: list = []
    while not paused and time.monotonic() < deadline:
        time.sleep(1)
        paused = asyncio.run(paused_runs())
    assert len(paused) == 1, "the flow did not pause for the borderline lead"
    resume_flow_run(paused[0].id, run_input={"reviewer": "Rita", f"lead_{lead_id}": choice, f"note_{lead_id}": "call first"})
    worker.join(timeout=120)
    assert outcome, "the flow did not finish after the resume"
    return outcome[0]


def owner_emails(settings: Settings) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in settings.resolved_outbox_dir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        recipient = message["To"].addresses[0].addr_spec
        counts[recipient] = counts.get(recipient, 0) + 1
    return counts


@pytest.mark.parametrize("rules_file", ["bant.toml", "champ.toml"])
def test_review_decides_and_hands_off(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, crm_server: str, rules_file: str
) -> None:
    monkeypatch.setenv("LEADFLOW_RULES_FILE", str(PROJECT_ROOT / "rules" / rules_file))
    monkeypatch.setenv("LEADFLOW_SALES_TEAM", "ana@example.com, ben@example.com")
    monkeypatch.setenv("LEADFLOW_CRM_WEBHOOK_URL", crm_server)
    get_settings.cache_clear()
    ids = prepare(BANT_ANSWERS if rules_file == "bant.toml" else CHAMP_ANSWERS)

    summary = run_with_reviewer("qualify", ids["edge@example.com"])

    with session_scope() as session:
        stages = {lead.email: lead.stage for lead in session.exec(select(Lead))}
        owners = {handoff.lead_id: handoff.owner for handoff in session.exec(select(SalesHandoff))}
        reviews = {review.lead_id: review for review in session.exec(select(LeadReview))}
        edge_history = session.exec(
            select(StageChange).where(StageChange.lead_id == ids["edge@example.com"]).order_by(StageChange.id)
        ).all()
    assert stages == {"pass@example.com": Stage.SQL, "fail@example.com": Stage.DISQUALIFIED, "edge@example.com": Stage.SQL}
    assert sorted(owners.values()) == ["ana@example.com", "ben@example.com"]
    assert set(owners) == {ids["pass@example.com"], ids["edge@example.com"]}
    assert reviews[ids["edge@example.com"]].decided_by == "reviewer:Rita"
    assert reviews[ids["edge@example.com"]].rule_decision == "review"
    assert reviews[ids["edge@example.com"]].note == "call first"
    assert edge_history[-1].actor == "reviewer:Rita"
    assert reviews[ids["fail@example.com"]].explanation["criteria"][0]["passed"] is False
    assert owner_emails(settings) == {"ana@example.com": 1, "ben@example.com": 1}
    assert (summary.qualified, summary.disqualified, summary.decided_by_reviewer) == (2, 1, 1)

    assert len(CrmRecorder.received) == 2
    for headers, body in CrmRecorder.received:
        timestamp = headers["X-Leadflow-Timestamp"]
        expected = hmac.new(
            settings.secret_key.get_secret_value().encode(), f"{timestamp}.".encode() + body, hashlib.sha256
        ).hexdigest()
        assert headers["X-Leadflow-Signature"] == f"v1={expected}"
    assert {json.loads(body)["lead"]["email"] for _, body in CrmRecorder.received} == {"pass@example.com", "edge@example.com"}

    again = bant_review(review_timeout_minutes=1)

    assert (again.scored, again.handed_off) == (0, 0)
    assert len(CrmRecorder.received) == 2
    assert owner_emails(settings) == {"ana@example.com": 1, "ben@example.com": 1}


def test_unanswered_review_leaves_lead_sal(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = prepare({"edge@example.com": BANT_ANSWERS["edge@example.com"]})

    summary = bant_review(review_timeout_minutes=0.05)

    with session_scope() as session:
        lead = session.get(Lead, ids["edge@example.com"])
        assert lead is not None
        assert lead.stage == Stage.SAL
        assert session.exec(select(LeadReview)).all() == []
    assert summary.left_for_later == 1
