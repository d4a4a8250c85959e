"""The launching side of a parallel campaign: queue the audience as pending rows, start campaign-sender runs, wait.

The launcher writes one `pending` ledger row per lead still to send, in chunks,
so memory does not grow with the list. It then starts runs of the
`campaign-sender` deployment, which Prefect workers pick up, and waits until
they finish. The senders claim the rows (tasks.senders), so the keys, not the
runs, decide who sends what. Each sender run gets an idempotency key derived
from the launcher's flow run, so a repeated request from the same launcher
returns the runs it created before.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from leadflow.clock import wall_clock
from leadflow.errors import CampaignError
from leadflow.settings import Settings
from models import Campaign, EmailSend, Lead, SendStatus, session_scope
from tasks.audience import select_lead_batch
from tasks.ledger import (
    count_by_status_of_actors,
    count_open_sends,
    count_sender_claimable,
    last_claim_of,
    queue_pending,
)
from tasks.liveness import owner_is_dead
from tasks.recovery import recover_abandoned_sends
from tasks.send import BatchResult

Logger = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]

SENDER_DEPLOYMENT = "campaign-sender/campaign-sender"
MAX_SENDERS = 64
POLL_SECONDS = 2.0
FINISH_GRACE_SECONDS = 60.0
"""How long a sender run may stay Running after the campaign has nothing left to send before the launcher stops waiting."""
NOT_STARTED_WARNING_SECONDS = 60.0

# Statuses a sender's claim ends in once its message was tried; the others are still open.
_TRIED_STATUSES = (
    SendStatus.SENT, SendStatus.DEFERRED, SendStatus.BOUNCED, SendStatus.FAILED, SendStatus.AMBIGUOUS,
)


def actor_of_run(run_id: Any) -> str:
    """Return the actor that the flow run `run_id` writes into the ledger's `claimed_by`."""
    # NOTE: must match tasks.stages.current_actor, which writes this inside a flow run.
    return f"flow-run:{run_id}"


def refresh_planner_statistics() -> None:
    """Run ANALYZE on the leads and the ledger when the database is PostgreSQL.

    The audience query joins every lead to the ledger. Without statistics, as
    after a large import before autovacuum has run (or with autovacuum off),
    PostgreSQL 15 planned it as a scan of the campaign's whole ledger for each
    lead. In `scripts/check_workers.py` one batch of 500 then took over 38 s
    with 6,000 rows queued, and 2.5 ms after ANALYZE. For a user who does not
    own the tables, PostgreSQL skips them with a warning.
    """
    with session_scope() as session:
        if session.get_bind().dialect.name != "postgresql":
            return
        tables = ", ".join(f'"{model.__tablename__}"' for model in (Lead, EmailSend))
        session.execute(text(f"ANALYZE {tables}"))


def queue_audience(
    *, campaign: Campaign, step: str, conditions: list[Any], settings: Settings, actor: str, at: datetime,
    limit: int | None,
) -> int:
    """Write a `pending` ledger row for every lead meeting `conditions` whose key is free, up to `limit`; return how many.

    Reads the leads in id order, `LEADFLOW_BATCH_SIZE` at a time, and commits
    each chunk, so a list of any length needs the memory of one chunk.
    """
    queued = 0
    after_id = 0
    while limit is None or queued < limit:
        size = settings.batch_size if limit is None else min(settings.batch_size, limit - queued)
        with session_scope() as session:
            lead_ids = select_lead_batch(
                session=session, conditions=conditions, campaign_id=campaign.id, step=step, after_id=after_id, size=size
            )
            if not lead_ids:
                break
            queued += queue_pending(
                session=session, campaign=campaign, lead_ids=lead_ids, step=step, actor=actor, at=at,
                wall_time=wall_clock(), domain=settings.sender_domain, max_attempts=settings.max_send_attempts,
            )
        after_id = lead_ids[-1]
    return queued


def check_sender_deployment() -> None:
    """Raise `CampaignError` when the Prefect server has no `campaign-sender` deployment to start runs of."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(SENDER_DEPLOYMENT)
        except ObjectNotFound:
            raise CampaignError(
                f"the {SENDER_DEPLOYMENT} deployment is not on the Prefect server at {client.api_url}; register it "
                "with `prefect deploy --all` (or run `leadflow serve`), or launch with senders=0 to send in this process"
            ) from None


def start_sender_runs(name: str, *, count: int, launcher_key: str) -> list[uuid.UUID]:
    """Create `count` runs of the campaign-sender deployment for campaign `name` and return their ids at once.

    The idempotency key `<launcher_key>/sender-<n>` makes the server return the
    existing run when the same launcher requests it again.
    """
    from prefect.deployments import run_deployment

    run_ids = []
    for number in range(1, count + 1):
        run = run_deployment(
            SENDER_DEPLOYMENT,
            parameters={"name": name, "sender": number},
            timeout=0,
            idempotency_key=f"{launcher_key}/sender-{number}",
            flow_run_name=f"campaign-sender/{name}/{number}",
            tags=["leadflow", "campaign"],
        )
        run_ids.append(run.id)
    return run_ids


def _run_is_dead(run: Any, *, campaign_id: int, step: str, wall_time: datetime, lease: timedelta) -> bool:
    """Check from the ledger whether the process of a Running sender run has stopped.

    The owner of the run's latest claim is its process. On this machine its PID
    is checked; elsewhere the run is dead once its last claim or hand-over is
    older than `lease`. A run that has claimed nothing yet counts as alive.
    """
    with session_scope() as session:
        last = last_claim_of(session=session, campaign_id=campaign_id, step=step, actor=actor_of_run(run.id))
    if last is None:
        return False
    owner, claimed_at = last
    known = owner_is_dead(owner) if owner else None
    if known is None:
        return claimed_at is not None and claimed_at < wall_time - lease
    return known


def _count_tried(run_ids: list[uuid.UUID], *, campaign_id: int, step: str) -> int:
    with session_scope() as session:
        counts = count_by_status_of_actors(
            session=session, campaign_id=campaign_id, step=step, actors=[actor_of_run(run_id) for run_id in run_ids]
        )
    return sum(counts.get(status.value, 0) for status in _TRIED_STATUSES)


def wait_for_sender_runs(
    run_ids: list[uuid.UUID],
    *,
    campaign_id: int,
    step: str,
    settings: Settings,
    logger: Logger,
    on_progress: Callable[[int], None] | None = None,
) -> list[uuid.UUID]:
    """Wait until every sender run is final, or is known dead, or has nothing left to do; return the runs not waited for.

    While waiting it recovers the rows of dead processes, so a live sender sends
    what a killed one had queued. A run whose process is gone stays Running in
    Prefect (a SIGKILL leaves no one to report it), so such a run is marked
    Crashed. When the campaign has nothing pending or in flight, runs that never
    started are cancelled, and Running ones get `FINISH_GRACE_SECONDS` to end.
    `on_progress` gets the number of messages the senders have tried so far.
    """
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed

    lease = timedelta(minutes=settings.sending_lease_minutes)
    idle_since: float | None = None
    waiting_since = time.monotonic()
    warned_at = waiting_since
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(run_id) for run_id in run_ids]
            unfinished = [run for run in runs if run.state is None or not run.state.is_final()]
            with session_scope() as session:
                campaign = session.get(Campaign, campaign_id)
                recovered = recover_abandoned_sends(
                    session=session, campaign=campaign, step=step, wall_time=wall_clock(), lease=lease  # type: ignore[arg-type]
                )
                open_sends = count_open_sends(session=session, campaign_id=campaign_id, step=step)
            if recovered.released or recovered.ambiguous:
                logger.warning(
                    "a stopped sender left %d queued sends (released for the other senders) and %d being handed over "
                    "(marked ambiguous, not resent)", recovered.released, recovered.ambiguous,
                )
            if on_progress is not None:
                on_progress(_count_tried(run_ids, campaign_id=campaign_id, step=step))

            for run in [run for run in unfinished if run.state is not None and run.state.is_running()]:
                if _run_is_dead(run, campaign_id=campaign_id, step=step, wall_time=wall_clock(), lease=lease):
                    logger.warning("%s stopped without reporting an end state (its process is gone); marking it Crashed", run.name)
                    client.set_flow_run_state(
                        run.id, Crashed(message="its process stopped; leadflow's launcher found it gone"), force=True
                    )
                    unfinished.remove(run)
            if not unfinished:
                return []

            not_started = [run for run in unfinished if run.state is None or run.state.is_scheduled() or run.state.is_pending()]
            if open_sends == 0:
                for run in not_started:
                    logger.info("%s never started and the campaign has nothing left to send; cancelling it", run.name)
                    client.set_flow_run_state(run.id, Cancelled(message="the other campaign-sender runs sent everything"))
                running = [run for run in unfinished if run not in not_started]
                if not running:
                    return []
                idle_since = idle_since if idle_since is not None else time.monotonic()
                if time.monotonic() - idle_since >= FINISH_GRACE_SECONDS:
                    logger.warning(
                        "%s still not finished %.0f s after the campaign had nothing left to send; not waiting for them",
                        ", ".join(run.name for run in running), FINISH_GRACE_SECONDS,
                    )
                    return [run.id for run in running]
            else:
                idle_since = None
                if len(not_started) == len(unfinished) and time.monotonic() - warned_at >= NOT_STARTED_WARNING_SECONDS:
                    warned_at = time.monotonic()
                    logger.warning(
                        "%d campaign-sender runs have waited %.0f s to start; is a worker polling the work pool of the "
                        "campaign-sender deployment?", len(not_started), warned_at - waiting_since,
                    )
            time.sleep(POLL_SECONDS)


def sender_results(run_ids: list[uuid.UUID], *, campaign_id: int, step: str) -> BatchResult:
    """Count, from the ledger, what the sender runs claimed and how each send ended.

    Read from the ledger because a run's return value lives in its own process,
    possibly on another machine. Rows that a dead sender left and another process
    took back are counted by the process that sent them.

    NOTE: leads a sender left out at send time (suppressed, or no longer
    eligible) lose their row, so `suppressed` and `not_claimed` stay 0 here.
    Each sender's log and return value count them.
    """
    with session_scope() as session:
        counts = count_by_status_of_actors(
            session=session, campaign_id=campaign_id, step=step, actors=[actor_of_run(run_id) for run_id in run_ids]
        )
    open_or_tried = sum(count for status, count in counts.items() if status != SendStatus.RELEASED.value)
    return BatchResult(
        claimed=open_or_tried,
        sent=counts.get(SendStatus.SENT.value, 0),
        deferred=counts.get(SendStatus.DEFERRED.value, 0),
        bounced=counts.get(SendStatus.BOUNCED.value, 0),
        failed=counts.get(SendStatus.FAILED.value, 0),
        ambiguous=counts.get(SendStatus.AMBIGUOUS.value, 0),
    )


def send_with_senders(
    name: str,
    *,
    campaign_id: int,
    step: str,
    senders: int,
    conditions: list[Any],
    limit: int | None,
    settings: Settings,
    actor: str,
    at: datetime,
    logger: Logger,
    on_progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Queue the campaign's audience as pending rows, have up to `senders` campaign-sender runs send it, and wait.

    Starts no more runs than there are batches of `LEADFLOW_BATCH_SIZE` to send.
    Returns what the sender runs did, counted from the ledger. What they leave
    (rows of a sender that died after the others finished) stays claimable
    for the caller to send.
    """
    from prefect.runtime import flow_run

    check_sender_deployment()
    with session_scope() as session:
        campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError(f"campaign id {campaign_id} does not exist; launch the campaign again")

    refresh_planner_statistics()
    queued = queue_audience(
        campaign=campaign, step=step, conditions=conditions, settings=settings, actor=actor, at=at, limit=limit
    )
    # The ledger may have grown by the whole audience, and the caller queries it again after the senders.
    refresh_planner_statistics()
    with session_scope() as session:
        claimable = count_sender_claimable(session=session, campaign_id=campaign_id, step=step)
    if claimable == 0:
        logger.info("nothing to send: no lead of %s is pending", name)
        return BatchResult()

    count = min(senders, math.ceil(claimable / settings.batch_size))
    launcher_key = f"{step}/{flow_run.get_id() or uuid.uuid4()}"
    run_ids = start_sender_runs(name, count=count, launcher_key=launcher_key)
    logger.info(
        "%s sends pending (%s queued by this launch); started %d campaign-sender runs, waiting for them",
        f"{claimable:,}", f"{queued:,}", count,
    )

    left = wait_for_sender_runs(
        run_ids, campaign_id=campaign_id, step=step, settings=settings, logger=logger, on_progress=on_progress
    )
    result = sender_results(run_ids, campaign_id=campaign_id, step=step)
    logger.info(
        "the campaign-sender runs sent %s, deferred %s, bounced %s, failed %s, ambiguous %s%s",
        f"{result.sent:,}", f"{result.deferred:,}", f"{result.bounced:,}", f"{result.failed:,}",
        f"{result.ambiguous:,}", f"; {len(left)} runs still not finished" if left else "",
    )
    return result
