"""Recovery of the sends of dead workers, and operator decisions on ambiguous sends."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from leadflow.clock import wall_clock
from leadflow.settings import Settings
from models import EmailSend, Lead, SendStatus, Suppression, session_scope
from tasks.ledger import get_or_create_campaign, mark_handed_over
from tasks.liveness import current_owner
from tasks.recovery import Resolution, list_ambiguous, recover_abandoned_sends, resolve_ambiguous
from tasks.suppression import address_hash
from tests.tasks.test_ledger import claim, ledger_rows, make_leads

LEASE = timedelta(minutes=30)


def dead_owner() -> str:
    """An owner on this host whose PID cannot exist (Linux PIDs stay below 2**22)."""
    host, namespace, _, started = current_owner().split("/")
    return f"{host}/{namespace}/{2**22 + 1}/{started}"


def hand_over_first(owner: str) -> None:
    with session_scope() as session:
        mark_handed_over(session=session, ledger_id=ledger_rows()[0].id or 0, owner=owner, wall_time=wall_clock())


def recover() -> tuple[int, int]:
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        recovered = recover_abandoned_sends(
            session=session, campaign=campaign, step="trial-invite", wall_time=wall_clock(), lease=LEASE
        )
    return recovered.released, recovered.ambiguous


def test_dead_worker_on_this_host_recovers_at_once(settings: Settings) -> None:
    lead_ids = make_leads(3)
    owner = dead_owner()
    claim(lead_ids, owner, wall_time=wall_clock())
    hand_over_first(owner)

    released, ambiguous = recover()

    assert (released, ambiguous) == (2, 1)
    assert [row.status for row in ledger_rows()] == [SendStatus.AMBIGUOUS, SendStatus.RELEASED, SendStatus.RELEASED]
    assert claim(lead_ids, "next-worker", wall_time=wall_clock()) == lead_ids[1:]


def test_reused_pid_counts_as_dead(settings: Settings) -> None:
    lead_ids = make_leads(1)
    host, namespace, pid, _ = current_owner().split("/")
    claim(lead_ids, f"{host}/{namespace}/{pid}/1", wall_time=wall_clock())

    assert recover() == (1, 0)


def test_live_worker_is_left_alone(settings: Settings) -> None:
    lead_ids = make_leads(2)
    claim(lead_ids, current_owner(), wall_time=wall_clock())
    hand_over_first(current_owner())

    assert recover() == (0, 0)
    assert [row.status for row in ledger_rows()] == [SendStatus.SENDING, SendStatus.QUEUED]


def test_other_host_waits_for_the_lease(settings: Settings) -> None:
    lead_ids = make_leads(2)
    claim(lead_ids[:1], "other-host/abc-1/42/100", wall_time=wall_clock() - timedelta(minutes=5))
    claim(lead_ids[1:], "far-host/abc-1/42/100", wall_time=wall_clock() - LEASE - timedelta(minutes=1))

    assert recover() == (1, 0)
    assert [row.status for row in ledger_rows()] == [SendStatus.QUEUED, SendStatus.RELEASED]


def test_ambiguous_listed_and_resolved(settings: Settings) -> None:
    lead_ids = make_leads(3)
    owner = dead_owner()
    for lead_id in lead_ids:
        claim([lead_id], owner, wall_time=wall_clock())
        with session_scope() as session:
            row = session.exec(select(EmailSend).where(EmailSend.lead_id == lead_id)).one()
            mark_handed_over(session=session, ledger_id=row.id or 0, owner=owner, wall_time=wall_clock())
    recover()

    with session_scope() as session:
        listed = list_ambiguous(session=session)
    ids = [item.message_id for item in listed]
    with session_scope() as session:
        unknown = resolve_ambiguous(
            session=session, message_ids=[ids[0], "<nope@example.com>"], resolution=Resolution.SENT, actor="ops", at=wall_clock()
        )
        resolve_ambiguous(session=session, message_ids=[ids[1].strip("<>")], resolution=Resolution.RESEND, actor="ops", at=wall_clock())
        resolve_ambiguous(session=session, message_ids=[ids[2]], resolution=Resolution.BOUNCED, actor="ops", at=wall_clock())

    assert len(listed) == 3
    assert unknown == ["<nope@example.com>"]
    assert [row.status for row in ledger_rows()] == [SendStatus.SENT, SendStatus.RELEASED, SendStatus.BOUNCED]
    assert claim(lead_ids, "next-worker", wall_time=wall_clock()) == [lead_ids[1]]
    with session_scope() as session:
        bounced = session.get(Lead, lead_ids[2])
        listed_hashes = set(session.exec(select(Suppression.address_hash)))
    assert bounced is not None and bounced.suppressed_at is not None
    assert address_hash("lead2@example.com") in listed_hashes
