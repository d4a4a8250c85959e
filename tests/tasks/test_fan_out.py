"""The launcher's side of parallel sending: queueing the audience, and waiting for sender runs on the Prefect test server."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.states import Running, Scheduled
from sqlmodel import select

from leadflow.clock import now, wall_clock
from leadflow.errors import CampaignError
from leadflow.settings import Settings, get_settings
from models import Campaign, Lead, SendStatus, session_scope
from tasks import fan_out
from tasks.audience import invite_conditions
from tasks.fan_out import actor_of_run, queue_audience, sender_results, wait_for_sender_runs
from tasks.ledger import claim_next_sends, get_or_create_campaign, queue_pending
from tests.flows.test_trial_invite import import_people, import_text
from tests.tasks.test_ledger import ledger_rows
from tests.tasks.test_recovery import dead_owner

STEP = "trial-invite"
LOGGER = logging.getLogger("tests.fan_out")


@flow(name="campaign-sender-stand-in")
def stand_in() -> None:
    """A flow whose runs stand in for campaign-sender runs in these tests."""


def spring() -> Campaign:
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind=STEP, name="spring")
    return campaign


def queue_everyone(campaign: Campaign) -> None:
    queue_audience(
        campaign=campaign, step=STEP, conditions=invite_conditions(), settings=get_settings(), actor="launcher",
        at=now(), limit=None,
    )


def sender_run(state_name: str) -> uuid.UUID:
    state = Running() if state_name == "running" else Scheduled()
    with get_client(sync_client=True) as client:
        return client.create_flow_run(stand_in, name=f"campaign-sender/spring/{state_name}", state=state).id


def state_of(run_id: uuid.UUID) -> str:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    assert run.state is not None
    return run.state.type.value


class TestQueueAudience:
    def test_streams_chunks_up_to_the_limit(self, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LEADFLOW_BATCH_SIZE", "3")
        get_settings.cache_clear()
        import_people(tmp_path, 8)

        queued = queue_audience(
            campaign=spring(), step=STEP, conditions=invite_conditions(), settings=get_settings(), actor="launcher",
            at=now(), limit=5,
        )

        assert queued == 5
        assert [row.status for row in ledger_rows()] == [SendStatus.PENDING] * 5

    def test_leaves_out_excluded_leads(self, settings: Settings, tmp_path: Path) -> None:
        import_text(tmp_path, "email,customer\nann@example.com,no\nbob@example.com,yes\ncid@example.com,\n")

        queued = queue_audience(
            campaign=spring(), step=STEP, conditions=invite_conditions(), settings=get_settings(), actor="launcher",
            at=now(), limit=None,
        )

        assert queued == 2
        assert len(ledger_rows()) == 2


@pytest.mark.usefixtures("prefect_server")
class TestWaitForSenderRuns:
    def test_dead_sender_marked_crashed(self, settings: Settings, tmp_path: Path) -> None:
        import_people(tmp_path, 4)
        campaign = spring()
        queue_everyone(campaign)
        run_id = sender_run("running")
        with session_scope() as session:
            claim_next_sends(
                session=session, campaign_id=campaign.id or 0, step=STEP, actor=actor_of_run(run_id),
                owner=dead_owner(), wall_time=wall_clock(), size=2,
            )

        left = wait_for_sender_runs([run_id], campaign_id=campaign.id or 0, step=STEP, settings=settings, logger=LOGGER)

        assert left == []
        assert state_of(run_id) == "CRASHED"
        assert [row.status for row in ledger_rows()] == [
            SendStatus.RELEASED, SendStatus.RELEASED, SendStatus.PENDING, SendStatus.PENDING
        ]

    def test_unstarted_sender_is_cancelled_when_nothing_is_left(self, settings: Settings, tmp_path: Path) -> None:
        import_people(tmp_path, 1)
        campaign = spring()
        run_id = sender_run("scheduled")

        left = wait_for_sender_runs([run_id], campaign_id=campaign.id or 0, step=STEP, settings=settings, logger=LOGGER)

        assert left == []
        assert state_of(run_id) == "CANCELLED"

    def test_results_come_from_the_ledger(self, settings: Settings, tmp_path: Path) -> None:
        import_people(tmp_path, 3)
        campaign = spring()
        queue_everyone(campaign)
        run_ids = [uuid.uuid4(), uuid.uuid4()]
        for run_id in run_ids:
            with session_scope() as session:
                claim_next_sends(
                    session=session, campaign_id=campaign.id or 0, step=STEP, actor=actor_of_run(run_id),
                    owner="worker", wall_time=wall_clock(), size=1,
                )

        result = sender_results(run_ids, campaign_id=campaign.id or 0, step=STEP)

        assert (result.claimed, result.sent) == (2, 0)


@pytest.mark.usefixtures("prefect_server")
def test_launch_without_sender_deployment_fails_clearly(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.trial_invite import trial_invite

    monkeypatch.setattr(fan_out, "SENDER_DEPLOYMENT", f"campaign-sender/missing-{uuid.uuid4().hex[:8]}")
    import_people(tmp_path, 2)

    with pytest.raises(CampaignError, match="is not on the Prefect server"):
        trial_invite(name="spring", senders=2)

    assert ledger_rows() == []


def test_stale_pending_rows_queued_again(settings: Settings, tmp_path: Path) -> None:
    import_people(tmp_path, 2)
    campaign = spring()
    with session_scope() as session:
        lead_ids = [lead_id for lead_id in session.exec(select(Lead.id)) if lead_id is not None]
        queue_pending(
            session=session, campaign=campaign, lead_ids=lead_ids, step=STEP, actor="first-launcher", at=now(),
            wall_time=wall_clock(), domain="example.com", max_attempts=3,
        )

    queued = queue_audience(
        campaign=campaign, step=STEP, conditions=invite_conditions(), settings=get_settings(), actor="second-launcher",
        at=now(), limit=None,
    )

    assert queued == 2
    assert {(row.status, row.claimed_by) for row in ledger_rows()} == {(SendStatus.PENDING, "second-launcher")}
