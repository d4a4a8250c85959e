"""Scoring `sal` leads and recording the decision: by the rules, or by a person for the borderline ones."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models import Lead, LeadReview, Stage, SurveyResponse
from tasks.scoring import Decision, Rules, ScoreResult, score_answers
from tasks.stages import record_stage_change


@dataclass(frozen=True)
class Candidate:
    """A `sal` lead waiting for its review, with what a reviewer needs to see."""

    lead_id: int
    name: str
    company: str
    title: str
    score: ScoreResult
    fit: str | None
    pain_points: str | None


def select_unreviewed_batch(*, session: Session, after_id: int, size: int) -> list[int]:
    """Return up to `size` ids above `after_id` of `sal` leads with survey answers and no review."""
    statement = (
        select(Lead.id)
        .join(SurveyResponse, col(SurveyResponse.lead_id) == Lead.id)
        .where(
            col(Lead.stage) == Stage.SAL.value,
            col(Lead.id) > after_id,
            ~select(LeadReview.id).where(col(LeadReview.lead_id) == Lead.id).exists(),
        )
        .order_by(col(Lead.id))
        .limit(size)
    )
    return [lead_id for lead_id in session.exec(statement) if lead_id is not None]


def score_leads(*, session: Session, rules: Rules, lead_ids: list[int]) -> list[Candidate]:
    """Score the survey answers of `lead_ids` against `rules`."""
    rows = session.exec(
        select(Lead, SurveyResponse)
        .join(SurveyResponse, col(SurveyResponse.lead_id) == Lead.id)
        .where(col(Lead.id).in_(lead_ids))
        .order_by(col(Lead.id))
    ).all()
    return [
        Candidate(
            lead_id=lead.id or 0,
            name=" ".join(part for part in (lead.first_name, lead.last_name) if part) or f"lead {lead.id}",
            company=lead.company or "",
            title=lead.title or "",
            score=score_answers(rules, response.answers),
            fit=response.fit,
            pain_points=response.pain_points,
        )
        for lead, response in rows
    ]


def record_decision(
    candidate: Candidate,
    decision: Decision,
    *,
    session: Session,
    actor: str,
    at: datetime,
    note: str | None = None,
) -> bool:
    """Store the review and move the lead to `sql` or `disqualified`; return False when it was decided already.

    `decision` must be qualify or disqualify. A lead that left `sal` meanwhile, or
    already has a review, is left alone, so two runs cannot decide one lead twice.
    """
    if decision is Decision.REVIEW:
        raise ValueError("a review decision must be qualify or disqualify")
    lead = session.get(Lead, candidate.lead_id)
    existing = session.exec(select(LeadReview).where(LeadReview.lead_id == candidate.lead_id)).first()
    if lead is None or existing is not None or lead.stage != Stage.SAL:
        return False

    session.add(
        LeadReview(
            lead_id=candidate.lead_id,
            framework=candidate.score.framework,
            score=candidate.score.total,
            decision=decision.value,
            rule_decision=candidate.score.decision.value,
            explanation=candidate.score.model_dump(mode="json"),
            decided_by=actor,
            note=(note or None) and note[:1000],
            decided_at=at,
        )
    )
    by_whom = "by the rules" if candidate.score.decision is decision else f"by {actor}"
    if decision is Decision.QUALIFY:
        reason = f"qualified {by_whom}: {candidate.score.explain()}"
        record_stage_change(lead, Stage.SQL, session=session, reason=reason[:500], actor=actor, at=at)
    else:
        reason = f"disqualified {by_whom}: {candidate.score.explain()}"
        record_stage_change(lead, Stage.DISQUALIFIED, session=session, reason=reason[:500], actor=actor, at=at)
    return True


def review_description(candidates: list[Candidate]) -> str:
    """Return the Markdown that the Prefect UI shows above the review form."""
    lines = [
        "Decide each lead below: **qualify** makes it an SQL and hands it to sales, **disqualify** ends it, "
        "**later** leaves it for the next review. Enter your name as the reviewer.",
        "",
    ]
    for candidate in candidates:
        score = candidate.score
        lines += [
            f"### lead_{candidate.lead_id}: {candidate.name}",
            f"{candidate.title or 'no title'}, {candidate.company or 'no company'}. "
            f"{score.framework} score **{score.total:g}** of {score.max_total:g} "
            f"(qualifies at {score.qualify_at:g}, disqualified below {score.disqualify_below:g}).",
            "",
            "| criterion | answer | points | passed |",
            "| --- | --- | ---: | --- |",
            *(
                f"| {item.name} | {item.answer_label or 'not answered'} | {item.points:g} | {'yes' if item.passed else 'no'} |"
                for item in score.criteria
            ),
            "",
            f"Fit: {candidate.fit or 'not answered'}. Pain points: {candidate.pain_points or 'not answered'}",
            "",
        ]
    return "\n".join(lines)
