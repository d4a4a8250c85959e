"""Survey responses: the one function that the survey page, the intake webhook and CSV imports call."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel import Session, select

from models import Lead, Stage, SurveyResponse
from tasks.scoring import Rules, check_answers
from tasks.stages import record_stage_change

PAIN_POINTS_MAX_LENGTH = 2000
FIT_OPTIONS = ("great", "partial", "poor")
"""Answers to the fixed question "How well did the trial fit your needs?"."""


class SurveyOutcome(StrEnum):
    RECORDED = "recorded"
    """First response: stored, and the lead moved from `mql` to `sal`."""
    UPDATED = "updated"
    """A later response before the review: the answers replace the earlier ones."""
    REJECTED = "rejected"
    """Nothing stored; `reason` says why."""


@dataclass(frozen=True)
class SurveyResult:
    outcome: SurveyOutcome
    lead_id: int
    reason: str = ""


def record_survey_response(
    lead_id: int,
    *,
    session: Session,
    rules: Rules,
    answers: dict[str, str],
    fit: str | None,
    pain_points: str | None,
    source: str,
    actor: str,
    at: datetime,
) -> SurveyResult:
    """Store a lead's survey answers and move the lead from `mql` to `sal`.

    A second response while the lead waits in `sal` for its review replaces the
    first, so a lead can correct a slip. A response from a lead that was
    reviewed already (`sql`, `disqualified`), never started a trial, bought or
    unsubscribed is rejected and changes nothing. Raises `InvalidAnswers` when an
    answer is not an option of the rules, and `ValueError` for a bad fit value.
    """
    checked = check_answers(rules, answers)
    if fit is not None and fit not in FIT_OPTIONS:
        raise ValueError(f"fit {fit!r} is not one of: {', '.join(FIT_OPTIONS)}")
    pain = " ".join((pain_points or "").split())[:PAIN_POINTS_MAX_LENGTH] or None

    lead = session.get(Lead, lead_id)
    if lead is None:
        return SurveyResult(SurveyOutcome.REJECTED, lead_id, "no such lead")
    if lead.unsubscribed_at is not None or lead.is_customer:
        return SurveyResult(SurveyOutcome.REJECTED, lead_id, "the lead unsubscribed or is a customer")
    if lead.stage not in (Stage.MQL, Stage.SAL):
        return SurveyResult(SurveyOutcome.REJECTED, lead_id, f"the lead is in stage {lead.stage}, not in a trial")

    response = session.exec(select(SurveyResponse).where(SurveyResponse.lead_id == lead_id)).first()
    if response is not None and lead.stage == Stage.SAL:
        response.answers = checked
        response.fit = fit
        response.pain_points = pain
        response.source = source[:200]
        response.framework = rules.framework
        response.updated_at = at
        session.add(response)
        return SurveyResult(SurveyOutcome.UPDATED, lead_id)

    session.add(
        SurveyResponse(
            lead_id=lead_id, framework=rules.framework, answers=checked, fit=fit, pain_points=pain,
            source=source[:200], submitted_at=at, updated_at=at,
        )
    )
    record_stage_change(lead, Stage.SAL, session=session, reason=f"completed the survey ({source})", actor=actor, at=at)
    return SurveyResult(SurveyOutcome.RECORDED, lead_id)
