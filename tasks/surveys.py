"""Survey responses: the one function that the survey page, the intake webhook and CSV imports call."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlmodel import Session, select

from leadflow.errors import ImportFileError
from models import Lead, Stage, SurveyResponse
from tasks.csv_rows import find_column, open_csv_rows
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.list_columns import map_columns
from tasks.scoring import InvalidAnswers, Rules, check_answers
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
    """Nothing stored; `reason` gives the cause."""


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


@dataclass
class SurveyImportSummary:
    """Counts of one survey-answers file, by outcome."""

    file: str
    read: int = 0
    recorded: int = 0
    updated: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < 1000:
            self.rejections.append((line, reason))


def import_survey_responses(
    path: Path, *, session: Session, rules: Rules, actor: str, at: datetime
) -> SurveyImportSummary:
    """Record survey answers collected by another tool: one row per lead, one column per question.

    A question's column is named by its criterion key (`budget`) or by its question
    text; cells hold option values (`approved`). `fit` and `pain points` columns are
    optional. Bad rows are reported with their line number; the rest are recorded.
    """
    summary = SurveyImportSummary(file=path.name)
    with open_csv_rows(path, example_header="email,budget,authority,need,timing") as (headers, rows):
        email_position = map_columns(headers, []).positions["email"]
        question_positions = {
            criterion.key: find_column(headers, criterion.key, criterion.question) for criterion in rules.criteria
        }
        if all(position is None for position in question_positions.values()):
            keys = ", ".join(criterion.key for criterion in rules.criteria)
            raise ImportFileError(f"{path.name} has no column for any {rules.framework} question; name them: {keys}")
        fit_position = find_column(headers, "fit")
        pain_position = find_column(headers, "pain points", "pain_points", "pains")

        for line, values in rows:
            summary.read += 1
            try:
                address = normalize_email(values[email_position])
                answers = {
                    key: values[position].strip()
                    for key, position in question_positions.items()
                    if position is not None and values[position].strip()
                }
                fit = (values[fit_position].strip().lower() or None) if fit_position is not None else None
                pain = values[pain_position] if pain_position is not None else None
                lead = session.exec(select(Lead).where(Lead.email == address)).first()
                if lead is None or lead.id is None:
                    raise ValueError(f"no lead with the address {address}")
                result = record_survey_response(
                    lead.id, session=session, rules=rules, answers=answers, fit=fit, pain_points=pain,
                    source=f"{path.name} line {line}", actor=actor, at=at,
                )
            except (InvalidEmailAddress, InvalidAnswers, ValueError, IndexError) as exc:
                summary.reject(line, "too few fields" if isinstance(exc, IndexError) else str(exc))
            else:
                if result.outcome is SurveyOutcome.RECORDED:
                    summary.recorded += 1
                elif result.outcome is SurveyOutcome.UPDATED:
                    summary.updated += 1
                else:
                    summary.reject(line, result.reason)
    return summary
