"""unsubscribe_lead, the one function behind every way to unsubscribe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadflow.settings import Settings
from models import Lead, session_scope
from tasks.unsubscribe import unsubscribe_lead

T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_unsubscribe_sets_time_once(settings: Settings) -> None:
    with session_scope() as session:
        lead = Lead(email="ann@example.com")
        session.add(lead)
        session.flush()
        lead_id = lead.id
    assert lead_id is not None

    with session_scope() as session:
        first = unsubscribe_lead(lead_id, session=session, at=T)
    with session_scope() as session:
        second = unsubscribe_lead(lead_id, session=session, at=T + timedelta(days=1))
        stored = session.get(Lead, lead_id)

    assert (first.found, first.changed, first.unsubscribed_at) == (True, True, T)
    assert (second.found, second.changed, second.unsubscribed_at) == (True, False, T)
    assert stored is not None
    assert stored.unsubscribed_at == T
    assert stored.stage == "subscriber"


def test_unsubscribe_unknown_lead_changes_nothing(settings: Settings) -> None:
    with session_scope() as session:
        result = unsubscribe_lead(12345, session=session, at=T)

    assert (result.found, result.changed) == (False, False)
