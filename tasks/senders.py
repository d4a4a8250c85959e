"""The sending side of a parallel campaign: claim the next chunk of pending keys, send it, repeat until none are left.

A launcher writes the campaign's audience into the ledger as `pending` rows
(see tasks.fan_out). Each campaign-sender run then loops over
`send_next_batch`, which claims the next chunk of `pending` or `released` rows
for its own process and hands them to `deliver_claims`, the same delivery code
an in-process launch uses. The claim is one UPDATE, so two senders never hold
one key. When nothing is left to claim, a sender takes back the rows of
senders that died (tasks.recovery) and sends those too before it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlmodel import Session, col, select

from leadflow.clock import now, wall_clock
from leadflow.errors import CampaignError
from leadflow.settings import Settings
from models import Campaign, Lead, session_scope
from tasks.ledger import claim_next_sends, count_sender_claimable, drop_unsent_claims
from tasks.liveness import current_owner
from tasks.recovery import Recovered, recover_abandoned_sends
from tasks.send import BatchResult, EmailStep, deliver_claims
from tasks.suppression import listed_reasons, mark_listed_leads

Logger = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


def find_campaign_id(*, kind: str, name: str) -> int:
    """Return the id of campaign `kind/name`; raise `CampaignError` when no launch created it."""
    with session_scope() as session:
        campaign = session.exec(select(Campaign).where(Campaign.kind == kind, Campaign.name == name)).first()
    if campaign is None or campaign.id is None:
        raise CampaignError(f"campaign {kind}/{name} does not exist; launch it with trial-invite first")
    return campaign.id


def _allowed_lead_ids(step: EmailStep, leads: dict[int, Lead], *, session: Session) -> tuple[list[int], int]:
    """Return the ids of `leads` that may get `step` now, and how many of the others are on the suppression list."""
    eligible = [lead_id for lead_id, lead in leads.items() if step.is_eligible(lead)]
    if step.recipient is not None:
        return eligible, 0
    listed = listed_reasons(session=session, emails=[leads[lead_id].email for lead_id in eligible])
    if not listed:
        return eligible, 0
    mark_listed_leads(session=session, emails=list(listed), at=now())
    allowed = [lead_id for lead_id in eligible if leads[lead_id].email not in listed]
    return allowed, len(eligible) - len(allowed)


def send_next_batch(
    step: EmailStep, *, campaign_id: int, settings: Settings, actor: str, logger: Logger, size: int
) -> BatchResult:
    """Claim up to `size` pending keys of the campaign for this process, check each lead again, and deliver them.

    A claimed lead that is no longer eligible, or whose address is on the
    suppression list, loses its row (it was never handed over) and is counted.
    Returns an empty result when another sender took every remaining key first.
    Raises `MailServerUnavailable` from `deliver_claims`, which has released
    the claims it did not hand over, so they go back to the pool.
    """
    result = BatchResult()
    owner = current_owner()

    with session_scope() as session:
        claims = claim_next_sends(
            session=session, campaign_id=campaign_id, step=step.step, actor=actor, owner=owner,
            wall_time=wall_clock(), size=size,
        )
    # The claims are committed as `queued` for this process before any message goes out.
    if not claims:
        return result

    with session_scope() as session:
        leads = {
            lead.id: lead
            for lead in session.exec(select(Lead).where(col(Lead.id).in_([claim.lead_id for claim in claims])))
            if lead.id is not None
        }
        allowed_ids, result.suppressed = _allowed_lead_ids(step, leads, session=session)
        allowed = set(allowed_ids)
        to_send = [claim for claim in claims if claim.lead_id in allowed]
        dropped = [claim.ledger_id for claim in claims if claim.lead_id not in allowed]
        drop_unsent_claims(session=session, ledger_ids=dropped, owner=owner)
    if dropped:
        logger.warning(
            "%d claimed leads are no longer eligible or are suppressed (%d suppressed); their keys were given up",
            len(dropped), result.suppressed,
        )

    result.claimed = len(to_send)
    result.not_claimed = len(claims) - len(to_send) - result.suppressed
    deliver_claims(step, to_send, leads, settings=settings, owner=owner, logger=logger, result=result)
    return result


def recover_dead_senders(*, campaign_id: int, step: str, settings: Settings) -> Recovered:
    """Take back the in-flight rows of dead processes of this campaign step (see `recover_abandoned_sends`)."""
    with session_scope() as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            return Recovered(released=0, ambiguous=0)
        return recover_abandoned_sends(
            session=session, campaign=campaign, step=step, wall_time=wall_clock(),
            lease=timedelta(minutes=settings.sending_lease_minutes),
        )


def send_until_drained(
    send_batch: Callable[[int], BatchResult], *, campaign_id: int, step: str, settings: Settings, logger: Logger
) -> BatchResult:
    """Call `send_batch(batch_number)` while the campaign step has keys to claim, then recover dead senders' rows and go on.

    Stops when nothing is left to claim and no dead process's row was released.
    Rows a dead process left in `sending` become `ambiguous` and are never sent
    again. Returns the sum of the batches' results.
    """
    totals = BatchResult()
    batch_number = 0
    while True:
        with session_scope() as session:
            claimable = count_sender_claimable(session=session, campaign_id=campaign_id, step=step)
        if claimable == 0:
            recovered = recover_dead_senders(campaign_id=campaign_id, step=step, settings=settings)
            if recovered.ambiguous:
                logger.warning(
                    "%d sends of a stopped sender never recorded an outcome; marked ambiguous, not resent "
                    "(list them with: leadflow deliveries ambiguous)", recovered.ambiguous,
                )
            if recovered.released == 0:
                return totals
            logger.warning("%d sends queued by a stopped sender are sent again", recovered.released)
            continue

        batch_number += 1
        result = send_batch(batch_number)
        totals.add(result)
        if result.claimed + result.suppressed + result.not_claimed == 0:
            logger.info("batch %d: other senders took the remaining keys first", batch_number)
            continue
        logger.info(
            "batch %d: %s sent, %s deferred, %s bounced, %s failed (%s sent by this sender so far)",
            batch_number, f"{result.sent:,}", f"{result.deferred:,}", f"{result.bounced:,}", f"{result.failed:,}",
            f"{totals.sent:,}",
        )
