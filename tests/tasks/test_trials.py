"""Recording trial sign-ups, one at a time and from CSV files."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlmodel import select

from leadflow.settings import Settings
from leadflow.timeparse import load_zone
from models import Lead, Stage, StageChange, session_scope
from tasks.trials import SignupOutcome, SignupResult, import_trial_signups, record_trial_signup

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def signup(address: str, *, at: datetime = START, days: int = 7) -> SignupResult:
    with session_scope() as session:
        return record_trial_signup(
            address, session=session, started_at=at, days=days, source="test", actor="tester", offset_hours=48
        )


def add_lead(address: str, **values: object) -> None:
    with session_scope() as session:
        session.add(Lead(email=address, **values))


def lead(address: str) -> Lead:
    with session_scope() as session:
        return session.exec(select(Lead).where(Lead.email == address)).one()


def history(address: str) -> list[tuple[str | None, str]]:
    with session_scope() as session:
        rows = session.exec(
            select(StageChange).join(Lead, Lead.id == StageChange.lead_id).where(Lead.email == address).order_by(StageChange.id)
        ).all()
        return [(row.from_stage, row.to_stage) for row in rows]


def test_signup_moves_subscriber_to_mql(settings: Settings) -> None:
    add_lead("ann@example.com")

    result = signup("Ann@Example.com")

    stored = lead("ann@example.com")
    assert result.outcome is SignupOutcome.STARTED
    assert stored.stage == Stage.MQL
    assert stored.trial_started_at == START
    assert stored.trial_ends_at == START + timedelta(days=7)
    assert result.survey_due_at == START + timedelta(days=5)
    assert history("ann@example.com") == [("subscriber", "mql")]


def test_signup_of_unknown_address_creates_lead(settings: Settings) -> None:
    result = signup("new@example.com", days=14)

    assert result.outcome is SignupOutcome.CREATED
    assert lead("new@example.com").trial_ends_at == START + timedelta(days=14)
    assert history("new@example.com") == [(None, "subscriber"), ("subscriber", "mql")]


def test_second_report_changes_nothing(settings: Settings) -> None:
    signup("ann@example.com")

    again = signup("ann@example.com", at=START + timedelta(days=1))

    assert again.outcome is SignupOutcome.ALREADY_STARTED
    assert lead("ann@example.com").trial_started_at == START
    assert len(history("ann@example.com")) == 2


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"is_customer": True, "stage": Stage.CUSTOMER.value}, "customer"),
        ({"unsubscribed_at": START}, "unsubscribed"),
        ({"suppressed_at": START, "suppression_reason": "hard bounce"}, "suppressed"),
        ({"stage": Stage.DISQUALIFIED.value}, "disqualified"),
    ],
)
def test_blocked_leads_keep_their_state(settings: Settings, values: dict, reason: str) -> None:
    add_lead("ann@example.com", **values)
    before = lead("ann@example.com")

    result = signup("ann@example.com")

    after = lead("ann@example.com")
    assert result.outcome is SignupOutcome.IGNORED
    assert reason in result.reason
    assert result.survey_due_at is None
    assert after.stage == before.stage
    assert after.trial_started_at is None


def test_trial_length_is_checked(settings: Settings) -> None:
    with pytest.raises(ValueError, match="out of range"):
        signup("ann@example.com", days=0)


def test_trial_across_daylight_saving_keeps_utc_length(settings: Settings) -> None:
    # The US clocks go forward on 2026-03-08; the trial is still 7 x 24 hours.
    start = datetime(2026, 3, 5, 9, 0, tzinfo=load_zone("America/New_York"))

    signup("ann@example.com", at=start)

    stored = lead("ann@example.com")
    assert stored.trial_ends_at is not None
    assert stored.trial_started_at is not None
    assert stored.trial_ends_at - stored.trial_started_at == timedelta(days=7)
    assert stored.trial_started_at == datetime(2026, 3, 5, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("started", "stored_start", "stored_end"),
    [
        (
            datetime(2026, 3, 29, 13, 30, 45, tzinfo=timezone(timedelta(hours=-8))),
            "2026-03-29T21:30:45+00:00",
            "2026-04-05T21:30:45+00:00",
        ),
        (
            datetime(2026, 3, 8, 1, 59, 59, 999999, tzinfo=UTC),
            "2026-03-08T01:59:59.999999+00:00",
            "2026-03-15T01:59:59.999999+00:00",
        ),
        (
            datetime(2026, 10, 25, 0, 30, tzinfo=timezone(timedelta(hours=2))),
            "2026-10-24T22:30:00+00:00",
            "2026-10-31T22:30:00+00:00",
        ),
    ],
)
def test_signup_times_read_back_as_utc(settings: Settings, started: datetime, stored_start: str, stored_end: str) -> None:
    signup("ann@example.com", at=started)

    stored = lead("ann@example.com")
    assert stored.trial_started_at is not None
    assert stored.trial_ends_at is not None
    assert stored.trial_started_at.isoformat() == stored_start
    assert stored.trial_ends_at.isoformat() == stored_end


class TestImport:
    def run(self, tmp_path: Path, text: str, zone: str | None = None):  # noqa: ANN201
        path = tmp_path / "signups.csv"
        path.write_text(text)
        with session_scope() as session:
            return import_trial_signups(
                path, session=session, default_days=7, offset_hours=48,
                naive_zone=load_zone(zone) if zone else None, actor="tester",
            )

    def test_counts_each_outcome(self, settings: Settings, tmp_path: Path) -> None:
        add_lead("ann@example.com")
        add_lead("cus@example.com", is_customer=True, stage=Stage.CUSTOMER.value)

        summary = self.run(
            tmp_path,
            "Email,Started At,Trial Days\n"
            "ann@example.com,2026-03-02T15:00:00Z,\n"
            "new@example.com,2026-03-02T10:00:00-05:00,14\n"
            "ANN@example.com,2026-03-03T15:00:00Z,\n"
            "cus@example.com,2026-03-02T15:00:00Z,\n"
            "bad,2026-03-02T15:00:00Z,\n"
            "late@example.com,2026-03-02T15:00:00,\n"
            "long@example.com,2026-03-02T15:00:00Z,seven\n",
        )

        assert (summary.read, summary.started, summary.created, summary.already_started) == (7, 1, 1, 1)
        assert (summary.ignored, summary.rejected) == (1, 3)
        assert [line for line, _ in summary.rejections] == [6, 7, 8]
        assert "no UTC offset" in summary.rejections[1][1]
        assert lead("new@example.com").trial_ends_at == datetime(2026, 3, 16, 15, 0, tzinfo=UTC)
        assert len(summary.survey_due_times) == 2

    def test_naive_times_read_in_zone(self, settings: Settings, tmp_path: Path) -> None:
        summary = self.run(tmp_path, "email,started_at\nann@example.com,2026-07-01 09:00\n", zone="Europe/Berlin")

        assert summary.started + summary.created == 1
        assert lead("ann@example.com").trial_started_at == datetime(2026, 7, 1, 7, 0, tzinfo=UTC)

    def test_missing_start_column_is_an_error(self, settings: Settings, tmp_path: Path) -> None:
        from leadflow.errors import ImportFileError

        with pytest.raises(ImportFileError, match="no trial start column"):
            self.run(tmp_path, "email,plan\nann@example.com,pro\n")
