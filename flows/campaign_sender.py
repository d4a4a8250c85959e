"""Step 1 of the funnel, sent by several workers: one share of a trial-invite campaign.

A trial-invite run launched with `senders` >= 1 writes its audience into the
ledger as `pending` rows and starts that many runs of this flow through the
`campaign-sender` deployment. Each run claims the next batch of pending rows for
its own process, sends it, and repeats until none are left. Then it takes back
what dead senders had queued and sends that too. No run is given a list of
leads, so a run that starts late or dies early changes only how the work is
shared, never whether a lead gets the email.
"""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger, task
from pydantic import Field

from flows.trial_invite import CAMPAIGN_NAME_PATTERN, STEP, _invite_step, normalize_campaign_name
from leadflow.settings import get_settings
from tasks.fan_out import MAX_SENDERS
from tasks.send import BatchResult, retry_when_server_unavailable
from tasks.senders import find_campaign_id, send_next_batch, send_until_drained
from tasks.stages import current_actor


@task(
    name="send-claimed-batch",
    retries=2,
    retry_delay_seconds=[10, 60],
    retry_condition_fn=retry_when_server_unavailable,
    task_run_name="send-claimed-batch/{campaign_name}/{sender}-{batch_number}",
)
def send_claimed_batch(campaign_name: str, campaign_id: int, sender: int, batch_number: int) -> BatchResult:
    """Claim the next batch of the campaign's pending sends for this process and send it; see `send_next_batch`."""
    settings = get_settings()
    return send_next_batch(
        _invite_step(campaign_name), campaign_id=campaign_id, settings=settings, actor=current_actor(),
        logger=get_run_logger(), size=settings.batch_size,
    )


@flow(
    name="campaign-sender",
    flow_run_name="campaign-sender/{name}/{sender}",
    description="Send a share of a trial-invite campaign that was launched with senders: claim pending sends until none are left.",
)
def campaign_sender(
    name: Annotated[str, Field(pattern=CAMPAIGN_NAME_PATTERN)],
    sender: Annotated[int, Field(ge=1, le=MAX_SENDERS)] = 1,
) -> BatchResult:
    """Send pending trial invites of campaign `name`, one claimed batch at a time, until none are left.

    Args:
        name: Campaign name, as the trial-invite run that started this run was given it.
        sender: Number of this sender among the launch's senders; it only names the run and its batches.
    """
    logger = get_run_logger()
    settings = get_settings()
    name = normalize_campaign_name(name)
    campaign_id = find_campaign_id(kind=STEP, name=name)

    totals = send_until_drained(
        lambda number: send_claimed_batch(name, campaign_id, sender, number),
        campaign_id=campaign_id, step=STEP, settings=settings, logger=logger,
    )

    logger.info(
        "sender %d of %s finished: %s sent, %s deferred, %s bounced, %s failed, %s ambiguous, %s suppressed at send time",
        sender, name, f"{totals.sent:,}", f"{totals.deferred:,}", f"{totals.bounced:,}", f"{totals.failed:,}",
        f"{totals.ambiguous:,}", f"{totals.suppressed:,}",
    )
    return totals
