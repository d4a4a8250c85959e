"""The intake events' bodies, and how each one feeds the function the command line uses too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlmodel import Session, select

from leadflow.settings import Settings
from leadflow.tokens import ExpiredToken, InvalidToken, verify_token
from models import Lead
from models.webhooks import EVENT_ID_MAX_LENGTH
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.scoring import InvalidAnswers, load_rules
from tasks.surveys import PAIN_POINTS_MAX_LENGTH, SurveyOutcome, record_survey_response
from tasks.trials import MAX_TRIAL_DAYS, record_trial_signup

# Letters, digits and `._:-` only, so that an event id can never be an email address in a log line.
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:-]+$"
START_TOLERANCE = timedelta(minutes=5)


class IntakeRejected(Exception):
    """The event is well signed but cannot be recorded; nothing was changed."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(reason)
        self.status_code = status_code
        self.reason = reason


class TrialSignupEvent(BaseModel):
    """A trial sign-up reported by the product: the lead by `email`, by the invite's `ref` token, or both."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=EVENT_ID_MAX_LENGTH, pattern=EVENT_ID_PATTERN)
    email: str | None = Field(default=None, max_length=320)
    ref: str | None = Field(default=None, max_length=200, description="The `ref` token of the trial invite's link.")
    started_at: AwareDatetime | None = Field(default=None, description="Default: when the event arrives.")
    days: int | None = Field(default=None, ge=1, le=MAX_TRIAL_DAYS, description="Default: LEADFLOW_TRIAL_DAYS.")

    @model_validator(mode="after")
    def _names_a_lead(self) -> TrialSignupEvent:
        if not self.email and not self.ref:
            raise ValueError("give the lead's email, its ref token from the invite link, or both")
        return self


class SurveyResponseEvent(BaseModel):
    """Survey answers collected by another form tool: the lead by `email` or by its survey link's `token`."""

    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(min_length=1, max_length=EVENT_ID_MAX_LENGTH, pattern=EVENT_ID_PATTERN)
    email: str | None = Field(default=None, max_length=320)
    token: str | None = Field(default=None, max_length=200, description="The token of the survey email's link.")
    answers: dict[str, str] = Field(max_length=50, description="Criterion key to option value, as in the rules file.")
    fit: str | None = None
    pain_points: str | None = Field(default=None, max_length=PAIN_POINTS_MAX_LENGTH)
    submitted_at: AwareDatetime | None = Field(default=None, description="Default: when the event arrives.")

    @model_validator(mode="after")
    def _names_a_lead(self) -> SurveyResponseEvent:
        if not self.email and not self.token:
            raise ValueError("give the lead's email or the token of its survey link")
        return self


@dataclass(frozen=True)
class IntakeResult:
    lead_id: int
    outcome: str
    reason: str
    survey_due_at: datetime | None = None
    """When the sign-up made a survey email due, so that its run can be scheduled."""


def record_trial_event(event: TrialSignupEvent, *, session: Session, settings: Settings, at: datetime) -> IntakeResult:
    """Record the sign-up through `record_trial_signup`; raise `IntakeRejected` for an event that names no lead."""
    started_at = event.started_at or at
    if started_at > at + START_TOLERANCE:
        raise IntakeRejected(422, f"started_at {started_at.isoformat()} is in the future")
    email = event.email
    if event.ref:
        lead = _lead_from_token(event.ref, "trial", "ref", session=session, settings=settings, at=at)
        _check_same_lead(lead, email)
        email = lead.email
    if email is None:
        raise IntakeRejected(422, "give the lead's email, its ref token from the invite link, or both")

    try:
        result = record_trial_signup(
            email, session=session, started_at=started_at, days=event.days or settings.trial_days,
            source=f"webhook event {event.event_id}", actor="webhook:trial-signup",
            offset_hours=settings.survey_offset_hours,
        )
    except (InvalidEmailAddress, ValueError) as exc:
        raise IntakeRejected(422, str(exc)) from exc
    return IntakeResult(result.lead_id, result.outcome.value, result.reason, result.survey_due_at)


def record_survey_event(event: SurveyResponseEvent, *, session: Session, settings: Settings, at: datetime) -> IntakeResult:
    """Record the answers through `record_survey_response`; raise `IntakeRejected` when they cannot be stored."""
    if event.token:
        lead = _lead_from_token(event.token, "survey", "token", session=session, settings=settings, at=at)
        _check_same_lead(lead, event.email)
    elif event.email:
        lead = session.exec(select(Lead).where(Lead.email == _normalized(event.email))).first()
        if lead is None:
            raise IntakeRejected(422, "no lead has this email address; a survey needs a lead in a trial")
    else:
        raise IntakeRejected(422, "give the lead's email or the token of its survey link")
    if lead.id is None:
        raise RuntimeError("a stored lead has no id")

    try:
        result = record_survey_response(
            lead.id, session=session, rules=load_rules(settings.rules_file), answers=event.answers,
            fit=event.fit, pain_points=event.pain_points, source=f"webhook event {event.event_id}",
            actor="webhook:survey-response", at=event.submitted_at or at,
        )
    except (InvalidAnswers, ValueError) as exc:
        raise IntakeRejected(422, str(exc)) from exc
    if result.outcome is SurveyOutcome.REJECTED:
        raise IntakeRejected(409, f"the answers were not stored: {result.reason}")
    return IntakeResult(lead.id, result.outcome.value, result.reason)


def _lead_from_token(token: str, purpose: str, field: str, *, session: Session, settings: Settings, at: datetime) -> Lead:
    try:
        claims = verify_token(token, key=settings.secret_key.get_secret_value(), purpose=purpose, now=at)
    except ExpiredToken as exc:
        raise IntakeRejected(422, f"{field} has expired") from exc
    except InvalidToken as exc:
        raise IntakeRejected(422, f"{field} is not a valid {purpose} token: {exc}") from exc
    lead = session.get(Lead, claims.lead_id)
    if lead is None:
        raise IntakeRejected(422, f"{field} names a lead that no longer exists")
    return lead


def _check_same_lead(lead: Lead, email: str | None) -> None:
    if email and _normalized(email) != lead.email:
        raise IntakeRejected(422, "email and the token name different leads; send one of them, or both for the same lead")


def _normalized(email: str) -> str:
    try:
        return normalize_email(email)
    except InvalidEmailAddress as exc:
        raise IntakeRejected(422, str(exc)) from exc
