"""The survey-followup flow and its scheduled runs, on the Prefect test server with a moved clock."""

from __future__ import annotations

import asyncio
import email
import random
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from sqlmodel import select

from flows.survey_followup import STEP, survey_followup
from leadflow.settings import Settings
from leadflow.tokens import verify_token
from models import EmailSend, Lead, SendStatus, Stage, session_scope
from tasks.followup_schedule import DEPLOYMENT_NAME, schedule_survey_runs, slot_end
from tasks.trials import record_trial_signup

pytestmark = pytest.mark.usefixtures("prefect_server")

T = datetime(2026, 3, 2, 15, 7, tzinfo=UTC)


def signup(address: str, at: datetime = T, days: int = 7) -> datetime | None:
    with session_scope() as session:
        result = record_trial_signup(
            address, session=session, started_at=at, days=days, source="test", actor="tester", offset_hours=48
        )
    return result.survey_due_at


def survey_messages(settings: Settings) -> list[email.message.EmailMessage]:
    folder = settings.resolved_outbox_dir
    if not folder.exists():
        return []
    return [email.message_from_bytes(path.read_bytes(), policy=policy.default) for path in sorted(folder.glob("*.eml"))]


def survey_ledger() -> list[EmailSend]:
    with session_scope() as session:
        return list(session.exec(select(EmailSend).where(EmailSend.step == STEP)))


async def scheduled_runs(deployment_id: object) -> list:  # noqa: ANN401
    async with get_client() as client:
        return await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
        )


def test_signup_gets_one_survey_at_due_time(settings: Settings) -> None:
    deployment_id = survey_followup.to_deployment(name="survey-followup").apply()
    due = signup("ann@example.com")
    assert due == T + timedelta(days=5)

    report = schedule_survey_runs([due], settings=settings, at=T)
    again = schedule_survey_runs([due], settings=settings, at=T)

    runs = asyncio.run(scheduled_runs(deployment_id))
    assert report.error is None
    assert again.scheduled == report.scheduled == [slot_end(due, settings.followup_slot_minutes)]
    assert len(runs) == 1
    assert runs[0].expected_start_time == slot_end(due, settings.followup_slot_minutes)
    assert slot_end(due, 15) == datetime(2026, 3, 7, 15, 15, tzinfo=UTC)

    early = survey_followup(now=T + timedelta(days=5) - timedelta(minutes=1))
    on_time = survey_followup(now=T + timedelta(days=5))
    repeat = survey_followup(now=T + timedelta(days=5))
    later = survey_followup(now=T + timedelta(days=6))

    assert [run.this_run.sent for run in (early, on_time, repeat, later)] == [0, 1, 0, 0]
    messages = survey_messages(settings)
    assert len(messages) == 1
    assert messages[0]["To"].addresses[0].addr_spec == "ann@example.com"
    assert "Monday 9 March" in messages[0]["Subject"]
    text = messages[0].get_body(("plain",)).get_content()
    link = next(word for word in text.split() if "/survey/" in word)
    token = link.rsplit("/", 1)[1]
    with session_scope() as session:
        lead_id = session.exec(select(Lead.id).where(Lead.email == "ann@example.com")).one()
    claims = verify_token(token, key=settings.secret_key.get_secret_value(), purpose="survey", now=T + timedelta(days=5))
    assert claims.lead_id == lead_id
    assert messages[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.no_database
def test_schedule_without_deployment_reports_why(settings: Settings) -> None:
    from prefect.client.orchestration import get_client as client_factory

    async def delete_existing() -> None:
        async with client_factory() as client:
            try:
                deployment = await client.read_deployment_by_name(DEPLOYMENT_NAME)
            except Exception:  # noqa: BLE001 (absent already)
                return
            await client.delete_deployment(deployment.id)

    asyncio.run(delete_existing())

    report = schedule_survey_runs([T], settings=settings, at=T)

    assert report.scheduled == []
    assert report.error is not None
    assert "leadflow serve" in report.error


def test_leads_that_left_mql_get_no_survey(settings: Settings) -> None:
    for address in ("stay@example.com", "bought@example.com", "unsub@example.com", "moved@example.com"):
        signup(address)
    with session_scope() as session:
        leads = {lead.email: lead for lead in session.exec(select(Lead))}
        leads["bought@example.com"].is_customer = True
        leads["bought@example.com"].stage = Stage.CUSTOMER.value
        leads["unsub@example.com"].unsubscribed_at = T
        leads["moved@example.com"].stage = Stage.SAL.value
        session.add_all(leads.values())

    summary = survey_followup(now=T + timedelta(days=6))

    assert summary.this_run.sent == 1
    assert [message["To"].addresses[0].addr_spec for message in survey_messages(settings)] == ["stay@example.com"]


def test_thousand_signups_over_a_week(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    generator = random.Random(3)
    due_times: dict[str, datetime] = {}
    for number in range(1000):
        started = T + timedelta(seconds=generator.randrange(7 * 24 * 3600))
        address = f"trial{number}@example.com"
        due = signup(address, at=started)
        assert due is not None
        due_times[address] = due

    step = timedelta(hours=6)
    runs: list[datetime] = []
    moment = T
    while moment <= T + timedelta(days=13):
        survey_followup(now=moment)
        runs.append(moment)
        moment += step

    rows = survey_ledger()
    assert len(rows) == 1000
    assert {row.status for row in rows} == {SendStatus.SENT}
    assert len(survey_messages(settings)) == 1000
    with session_scope() as session:
        address_of = {lead.id: lead.email for lead in session.exec(select(Lead))}
    for row in rows:
        due = due_times[address_of[row.lead_id]]
        first_run_after_due = min(run for run in runs if run >= due)
        assert row.sent_at == first_run_after_due
