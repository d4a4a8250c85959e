"""Trial sign-ups: the one function that the command line, CSV imports and the web intake call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, select

from leadflow.errors import ImportFileError
from leadflow.timeparse import InvalidTime, parse_time
from models import Lead, Stage, StageChange
from tasks.csv_rows import find_column, open_csv_rows
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.list_columns import map_columns
from tasks.stages import record_stage_change
from tasks.suppression import mark_listed_leads

MAX_TRIAL_DAYS = 365

STARTED_AT_HEADERS = frozenset(
    {"startedat", "started", "start", "trialstart", "trialstartedat", "signupat", "signedupat", "signupdate", "createdat", "date"}
)
TRIAL_DAYS_HEADERS = frozenset({"days", "trialdays", "triallength", "lengthdays", "duration"})


class SignupOutcome(StrEnum):
    STARTED = "started"
    """The lead moved to `mql` with its trial dates stored."""
    CREATED = "created"
    """The address was not on the list: a new lead was created and started."""
    ALREADY_STARTED = "already started"
    """The lead's trial was recorded before; nothing changed."""
    IGNORED = "ignored"
    """A customer, an unsubscribed or suppressed lead, or a lead past `mql`: it keeps its state."""


@dataclass(frozen=True)
class SignupResult:
    outcome: SignupOutcome
    lead_id: int
    trial_ends_at: datetime | None
    survey_due_at: datetime | None
    """When the survey email is due; None when no survey will be sent."""
    reason: str = ""


def survey_due_at(trial_ends_at: datetime, offset_hours: float) -> datetime:
    return trial_ends_at - timedelta(hours=offset_hours)


def record_trial_signup(
    email: str,
    *,
    session: Session,
    started_at: datetime,
    days: int,
    source: str,
    actor: str,
    offset_hours: float,
) -> SignupResult:
    """Record that `email` started a `days`-day free trial at `started_at` (timezone-aware).

    The lead moves to `mql` with a stage-history row naming `source`. An address
    that is not on the list becomes a new lead. A second report of a trial
    already recorded changes nothing, and a customer, an unsubscribed or
    suppressed lead, or a lead past `mql` keeps its state and gets no survey.
    Raises `InvalidEmailAddress` or `ValueError` for bad input.
    """
    address = normalize_email(email)
    if not 1 <= days <= MAX_TRIAL_DAYS:
        raise ValueError(f"the trial length {days} days is out of range; use 1 to {MAX_TRIAL_DAYS} days")
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError("the trial start time needs a time zone")
    # Add the days in UTC: in a local zone, Python adds wall-clock days, and a trial
    # across a daylight-saving change would gain or lose an hour.
    started_at = started_at.astimezone(UTC)
    ends_at = started_at + timedelta(days=days)

    lead = session.exec(select(Lead).where(Lead.email == address)).first()
    created = lead is None
    if lead is None:
        lead = Lead(email=address, source=source[:200], created_at=started_at, updated_at=started_at)
        session.add(lead)
        session.flush()
        session.add(
            StageChange(
                lead_id=lead.id, from_stage=None, to_stage=Stage.SUBSCRIBER.value,
                reason=f"created by a trial sign-up from {source}", actor=actor, created_at=started_at,
            )
        )
        # An erased or unsubscribed address that signs up again keeps its suppression.
        if mark_listed_leads(session=session, emails=[address], at=started_at):
            session.refresh(lead)
    if lead.id is None:
        raise RuntimeError("the database returned no id for the new lead")

    if lead.trial_started_at is not None:
        return SignupResult(
            SignupOutcome.ALREADY_STARTED, lead.id, lead.trial_ends_at,
            _due_if_pending(lead, offset_hours), f"the trial started {lead.trial_started_at:%Y-%m-%d %H:%M} UTC",
        )
    blocker = _signup_blocker(lead)
    if blocker:
        return SignupResult(SignupOutcome.IGNORED, lead.id, None, None, blocker)

    lead.trial_started_at = started_at
    lead.trial_ends_at = ends_at
    record_stage_change(
        lead, Stage.MQL, session=session, reason=f"started a {days}-day free trial ({source})", actor=actor, at=started_at
    )
    outcome = SignupOutcome.CREATED if created else SignupOutcome.STARTED
    return SignupResult(outcome, lead.id, ends_at, survey_due_at(ends_at, offset_hours))


def _signup_blocker(lead: Lead) -> str:
    if lead.is_customer or lead.stage == Stage.CUSTOMER:
        return "already a customer"
    if lead.unsubscribed_at is not None:
        return "unsubscribed"
    if lead.suppressed_at is not None:
        return f"suppressed ({lead.suppression_reason or 'no reason given'})"
    if lead.stage != Stage.SUBSCRIBER:
        return f"already in stage {lead.stage}"
    return ""


def _due_if_pending(lead: Lead, offset_hours: float) -> datetime | None:
    if lead.stage != Stage.MQL or lead.trial_ends_at is None or _signup_blocker_for_survey(lead):
        return None
    return survey_due_at(lead.trial_ends_at, offset_hours)


def _signup_blocker_for_survey(lead: Lead) -> bool:
    return lead.is_customer or lead.unsubscribed_at is not None or lead.suppressed_at is not None


@dataclass
class TrialImportSummary:
    """Counts of one sign-up file, by outcome."""

    file: str
    read: int = 0
    started: int = 0
    created: int = 0
    already_started: int = 0
    ignored: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)
    survey_due_times: list[datetime] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < 1000:
            self.rejections.append((line, reason))


def import_trial_signups(
    path: Path,
    *,
    session: Session,
    default_days: int,
    offset_hours: float,
    naive_zone: ZoneInfo | None,
    actor: str,
    commit_every: int = 1000,
    on_row: Callable[[int], None] | None = None,
) -> TrialImportSummary:
    """Record every sign-up in a CSV file with columns email, started-at and an optional trial length in days.

    Bad rows are reported with their line number and reason; the good ones are recorded.
    """
    summary = TrialImportSummary(file=path.name)
    with open_csv_rows(path, example_header="email,started_at,days") as (headers, rows):
        email_position = map_columns(headers, []).positions["email"]
        started_position = find_column(headers, *STARTED_AT_HEADERS)
        if started_position is None:
            found = ", ".join(repr(header) for header in headers)
            raise ImportFileError(f"no trial start column found in {path.name}; name it started_at. The header row has: {found}")
        days_position = find_column(headers, *TRIAL_DAYS_HEADERS)

        for line, values in rows:
            summary.read += 1
            try:
                result = _record_row(
                    values, email_position, started_position, days_position, session=session,
                    default_days=default_days, offset_hours=offset_hours, naive_zone=naive_zone,
                    source=f"{path.name} line {line}", actor=actor,
                )
            except (InvalidEmailAddress, InvalidTime, ValueError, IndexError) as exc:
                summary.reject(line, str(exc) if not isinstance(exc, IndexError) else "too few fields")
            else:
                counter = result.outcome.name.lower()
                setattr(summary, counter, getattr(summary, counter) + 1)
                if result.survey_due_at is not None and result.outcome in (SignupOutcome.STARTED, SignupOutcome.CREATED):
                    summary.survey_due_times.append(result.survey_due_at)
            if summary.read % commit_every == 0:
                session.commit()
                if on_row is not None:
                    on_row(summary.read)
    session.commit()
    return summary


def _record_row(
    values: list[str],
    email_position: int,
    started_position: int,
    days_position: int | None,
    *,
    session: Session,
    default_days: int,
    offset_hours: float,
    naive_zone: ZoneInfo | None,
    source: str,
    actor: str,
) -> SignupResult:
    started_at = parse_time(values[started_position], naive_zone=naive_zone)
    days = default_days
    if days_position is not None and values[days_position].strip():
        text = values[days_position].strip()
        if not text.isdigit():
            raise ValueError(f"trial length {text!r} is not a whole number of days")
        days = int(text)
    if not 1 <= days <= MAX_TRIAL_DAYS:
        raise ValueError(f"the trial length {days} days is out of range; use 1 to {MAX_TRIAL_DAYS} days")
    # Everything is checked before the first write, so a bad row changes nothing.
    normalize_email(values[email_position])
    return record_trial_signup(
        values[email_position], session=session, started_at=started_at, days=days, source=source,
        actor=actor, offset_hours=offset_hours,
    )
