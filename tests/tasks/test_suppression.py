"""The suppression list, its CSV import, and erasure, on a real SQLite file."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from leadflow.settings import Settings
from models import EmailSend, Lead, Suppression, SuppressionReason, session_scope
from tasks.erasure import erase_lead
from tasks.import_leads import import_leads
from tasks.ledger import claim_sends, get_or_create_campaign
from tasks.suppression import address_hash, suppress_address
from tasks.suppression_import import import_suppressions

MOMENT = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def import_list(tmp_path: Path, text: str) -> None:
    path = tmp_path / "list.csv"
    path.write_text(text)
    with session_scope() as session:
        import_leads(path, session=session)


def lead(address: str) -> Lead | None:
    with session_scope() as session:
        return session.exec(select(Lead).where(Lead.email == address)).first()


def suppressions() -> list[Suppression]:
    with session_scope() as session:
        return list(session.exec(select(Suppression)))


def test_hash_ignores_case_and_spaces() -> None:
    assert address_hash(" Ann@Example.COM ") == address_hash("ann@example.com")
    assert address_hash("ann@example.com") == hashlib.sha256(b"ann@example.com").hexdigest()


def test_unsubscribed_stays_suppressed_after_reimport(settings: Settings, tmp_path: Path) -> None:
    import_list(tmp_path, "email,first_name\nann@example.com,Ann\nbob@example.com,Bob\n")
    with session_scope() as session:
        suppress_address(session=session, email="ann@example.com", reason=SuppressionReason.UNSUBSCRIBE, source="test", at=MOMENT)

    import_list(tmp_path, "email,first_name\nANN@example.com,Annie\nbob@example.com,Bob\n")

    ann = lead("ann@example.com")
    assert ann is not None
    assert ann.first_name == "Annie"
    assert ann.unsubscribed_at == MOMENT
    assert ann.suppressed_at == MOMENT
    assert lead("bob@example.com").suppressed_at is None  # type: ignore[union-attr]


def test_erased_stays_suppressed_after_reimport(settings: Settings, tmp_path: Path) -> None:
    import_list(tmp_path, "email,first_name,company\nann@example.com,Ann,Acme\n")
    with session_scope() as session:
        erased_id = erase_lead(session=session, email="Ann@example.com", actor="test", at=MOMENT)

    with session_scope() as session:
        erased = session.get(Lead, erased_id)
    import_list(tmp_path, "email,first_name\nann@example.com,Ann\n")

    assert erased is not None
    assert erased.email == f"erased-{erased_id}@erased.invalid"
    assert (erased.first_name, erased.company, erased.source) == (None, None, None)
    again = lead("ann@example.com")
    assert again is not None
    assert again.id != erased_id
    assert again.suppressed_at is not None
    assert again.suppression_reason == "on the suppression list (erasure)"
    assert [row.reason for row in suppressions()] == ["erasure"]


def test_erase_clears_ledger_errors(settings: Settings, tmp_path: Path) -> None:
    import_list(tmp_path, "email\nann@example.com\n")
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind="trial-invite", name="spring")
        ann = session.exec(select(Lead)).one()
        claim_sends(
            session=session, campaign=campaign, lead_ids=[ann.id or 0], step="trial-invite", actor="t", owner="o",
            at=MOMENT, wall_time=MOMENT, domain="example.com", max_attempts=3,
        )
        row = session.exec(select(EmailSend)).one()
        row.error = "550 <ann@example.com> no such user"
        session.add(row)

    with session_scope() as session:
        erase_lead(session=session, email="ann@example.com", actor="test", at=MOMENT)

    with session_scope() as session:
        assert session.exec(select(EmailSend)).one().error is None


def test_first_reason_is_kept(settings: Settings) -> None:
    with session_scope() as session:
        first = suppress_address(session=session, email="ann@example.com", reason=SuppressionReason.UNSUBSCRIBE, source="a", at=MOMENT)
    with session_scope() as session:
        second = suppress_address(session=session, email="ann@example.com", reason=SuppressionReason.MANUAL, source="b", at=MOMENT)

    assert (first, second) == (True, False)
    assert [row.reason for row in suppressions()] == ["unsubscribe"]


def test_csv_import_reports_bad_rows(settings: Settings, tmp_path: Path) -> None:
    import_list(tmp_path, "email\nann@example.com\ncid@example.com\n")
    path = tmp_path / "suppress.csv"
    path.write_text(
        "Email Address,Note\nAnn@Example.com,asked\nnot-an-address,x\n"
        f"{address_hash('cid@example.com')},hashed\nann@example.com,again\n\n"
    )

    with session_scope() as session:
        summary = import_suppressions(path, session=session, reason=SuppressionReason.MANUAL, at=MOMENT)

    assert (summary.read, summary.added, summary.rejected, summary.leads_suppressed) == (4, 2, 1, 1)
    assert summary.rejections[0][0] == 3
    assert lead("ann@example.com").suppressed_at == MOMENT  # type: ignore[union-attr]
    assert {row.address_hash for row in suppressions()} == {address_hash("ann@example.com"), address_hash("cid@example.com")}
