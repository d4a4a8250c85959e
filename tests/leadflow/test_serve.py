"""`leadflow serve`'s deployments and its start-up scheduling, on the Prefect test server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType

from leadflow.serve import build_deployments, schedule_pending_surveys
from leadflow.settings import Settings
from models import session_scope
from tasks.followup_schedule import DEPLOYMENT_NAME
from tasks.trials import record_trial_signup

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_deployments_come_from_prefect_yaml() -> None:
    deployments = {deployment.name: deployment for deployment in build_deployments()}

    assert set(deployments) == {"trial-invite", "campaign-sender", "survey-followup", "bant-review"}
    assert deployments["campaign-sender"].schedules == []
    assert deployments["survey-followup"].schedules[0].schedule.cron == "5 * * * *"
    assert deployments["trial-invite"].schedules == []


def test_startup_schedules_pending_and_overdue(settings: Settings) -> None:
    for deployment in build_deployments():
        deployment.apply()
    now = datetime.now(UTC)
    with session_scope() as session:
        for address, started in (
            ("future1@example.com", now - timedelta(days=1)),
            ("future2@example.com", now - timedelta(days=1)),
            ("later@example.com", now),
            ("overdue@example.com", now - timedelta(days=6)),
        ):
            record_trial_signup(address, session=session, started_at=started, days=7, source="test", actor="tester", offset_hours=48)

    scheduled, overdue, error = schedule_pending_surveys(settings, at=now)

    assert error is None
    assert (scheduled, overdue) == (2, 1)

    async def count_runs() -> int:
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(DEPLOYMENT_NAME)
            # Filter on the server, because the session's Prefect server contains hundreds of runs from other tests.
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
            )
            return len(runs)

    assert asyncio.run(count_runs()) >= 3
