"""Step 5 of the funnel: score the survey answers, decide the clear cases, ask a person about the rest, hand SQLs to sales."""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field, create_model

from leadflow.clock import now
from leadflow.settings import get_settings
from models import session_scope
from tasks.funnel import publish_funnel_artifact
from tasks.handoff import assign_owners, email_owners, notify_crm, sqls_without_handoff
from tasks.review import (
    Candidate,
    record_decision,
    review_description,
    score_leads,
    select_unreviewed_batch,
)
from tasks.scoring import Decision, load_rules
from tasks.stages import current_actor

MAX_LEADS_PER_FORM = 20
"""Borderline leads shown in one review form; the rest wait for the next run."""


class ReviewSummary(BaseModel):
    """Counts of one bant-review run."""

    framework: str
    scored: int = 0
    """Leads scored in this run; the other counts are for this run too."""
    qualified: int = 0
    disqualified: int = 0
    borderline: int = 0
    decided_by_reviewer: int = 0
    left_for_later: int = 0
    handed_off: int = 0
    handoff_emails: int = 0
    crm_sent: int = 0
    crm_failed: int = 0


class _ReviewFormBase(RunInput):
    reviewer: str = Field(min_length=1, max_length=100, description="Your name; it is stored with each decision.")


def review_form(candidates: list[Candidate]) -> type[RunInput]:
    """Build the form for these leads: one choice and one note per lead, and the reviewer's name."""
    fields: dict[str, Any] = {}
    for candidate in candidates:
        fields[f"lead_{candidate.lead_id}"] = (
            Literal["qualify", "disqualify", "later"],
            Field(default="later", description=f"{candidate.name}, {candidate.company or 'no company'}"),
        )
        fields[f"note_{candidate.lead_id}"] = (str, Field(default="", max_length=1000))
    return create_model("LeadReviewForm", __base__=_ReviewFormBase, **fields)


class BatchDecisions(BaseModel):
    qualified: int = 0
    disqualified: int = 0
    borderline: list[int] = Field(default_factory=list)


@task(name="score-and-decide")
def score_and_decide(lead_ids: list[int]) -> BatchDecisions:
    """Score a batch, record the clear decisions, and return their counts and the borderline lead ids."""
    settings = get_settings()
    rules = load_rules(settings.rules_file)
    actor = current_actor()
    result = BatchDecisions()
    with session_scope() as session:
        for candidate in score_leads(session=session, rules=rules, lead_ids=lead_ids):
            decision = candidate.score.decision
            if decision is Decision.REVIEW:
                result.borderline.append(candidate.lead_id)
            elif record_decision(candidate, decision, session=session, actor=actor, at=now()):
                if decision is Decision.QUALIFY:
                    result.qualified += 1
                else:
                    result.disqualified += 1
    return result


@flow(name="review-borderline-leads", flow_run_name="review-borderline-leads/{count}-leads")
def review_borderline_leads(lead_ids: list[int], count: int, timeout_seconds: int) -> dict[str, int]:
    """Pause for a person to decide the borderline leads in the Prefect UI, then record the decisions.

    If no reviewer submits the form within `timeout_seconds`, this run fails and the leads stay
    `sal` for the next review.
    """
    logger = get_run_logger()
    settings = get_settings()
    rules = load_rules(settings.rules_file)
    with session_scope() as session:
        candidates = score_leads(session=session, rules=rules, lead_ids=lead_ids)
    form = review_form(candidates).with_initial_data(description=review_description(candidates))
    logger.info("waiting up to %d s for a reviewer to decide %d leads in the Prefect UI", timeout_seconds, len(candidates))
    answer = pause_flow_run(wait_for_input=form, timeout=timeout_seconds, poll_interval=2, key="bant-review")

    reviewer = answer.reviewer.strip()
    counts = {"qualified": 0, "disqualified": 0, "later": 0}
    with session_scope() as session:
        for candidate in candidates:
            choice = getattr(answer, f"lead_{candidate.lead_id}")
            if choice == "later":
                counts["later"] += 1
                continue
            decision = Decision.QUALIFY if choice == "qualify" else Decision.DISQUALIFY
            recorded = record_decision(
                candidate, decision, session=session, actor=f"reviewer:{reviewer}", at=now(),
                note=getattr(answer, f"note_{candidate.lead_id}") or None,
            )
            if recorded:
                counts["qualified" if decision is Decision.QUALIFY else "disqualified"] += 1
    logger.info(
        "reviewer %r qualified %d, disqualified %d, left %d for later",
        reviewer, counts["qualified"], counts["disqualified"], counts["later"],
    )
    return counts


@task(name="hand-off-to-sales")
def hand_off_to_sales() -> dict[str, int]:
    """Give every SQL without an owner one, email the owners, and tell the CRM."""
    logger = get_run_logger()
    settings = get_settings()
    with session_scope() as session:
        lead_ids = sqls_without_handoff(session=session)
        assigned = assign_owners(session=session, lead_ids=lead_ids, team=settings.sales_team_addresses, at=now())
    emailed, not_emailed = email_owners(lead_ids=lead_ids, settings=settings, actor=current_actor(), logger=logger)
    crm_sent, crm_failed = notify_crm(lead_ids=lead_ids, settings=settings, logger=logger)
    logger.info(
        "handed %d SQLs to sales: %d emails sent, %d not sent, %d CRM posts, %d failed",
        assigned, emailed, not_emailed, crm_sent, crm_failed,
    )
    return {"assigned": assigned, "emailed": emailed, "crm_sent": crm_sent, "crm_failed": crm_failed}


@flow(name="bant-review", flow_run_name="bant-review")
def bant_review(review_timeout_minutes: float | None = None) -> ReviewSummary:
    """Score every `sal` lead with survey answers and no decision, and act on the score.

    Clear passes become `sql` and clear fails `disqualified`, with the reason. The
    borderline leads wait for a person in a Prefect UI form. If nobody submits it
    within the timeout, they stay `sal` for the next run. Every new SQL gets an
    owner, an email to that owner and, where configured, a signed CRM POST.

    Args:
        review_timeout_minutes: How long to wait for the reviewer; empty means LEADFLOW_REVIEW_TIMEOUT_MINUTES.
    """
    logger = get_run_logger()
    settings = get_settings()
    rules = load_rules(settings.rules_file)
    timeout_minutes = review_timeout_minutes or settings.review_timeout_minutes
    summary = ReviewSummary(framework=rules.framework)

    borderline: list[int] = []
    after_id = 0
    while True:
        with session_scope() as session:
            lead_ids = select_unreviewed_batch(session=session, after_id=after_id, size=settings.batch_size)
        if not lead_ids:
            break
        after_id = lead_ids[-1]
        summary.scored += len(lead_ids)
        decided = score_and_decide(lead_ids)
        summary.qualified += decided.qualified
        summary.disqualified += decided.disqualified
        borderline += decided.borderline
    summary.borderline = len(borderline)
    logger.info(
        "scored %d leads with %s: %d borderline leads need a person", summary.scored, rules.framework, len(borderline)
    )

    if borderline:
        shown = borderline[:MAX_LEADS_PER_FORM]
        state = review_borderline_leads(
            shown, len(shown), int(timeout_minutes * 60), return_state=True
        )
        if state.is_completed():
            counts = state.result()
            summary.decided_by_reviewer = counts["qualified"] + counts["disqualified"]
            summary.qualified += counts["qualified"]
            summary.disqualified += counts["disqualified"]
            summary.left_for_later = counts["later"] + len(borderline) - len(shown)
        else:
            summary.left_for_later = len(borderline)
            logger.warning(
                "no reviewer decided within %g minutes; %d borderline leads stay sal for the next run",
                timeout_minutes, len(borderline),
            )

    handoff = hand_off_to_sales()
    summary.handed_off = handoff["assigned"]
    summary.handoff_emails = handoff["emailed"]
    summary.crm_sent = handoff["crm_sent"]
    summary.crm_failed = handoff["crm_failed"]
    create_markdown_artifact(_summary_markdown(summary), key="bant-review-last-run", description="Summary of the last BANT review")
    publish_funnel_artifact()
    return summary


def _summary_markdown(summary: ReviewSummary) -> str:
    rows = [
        ("leads scored in this run", summary.scored),
        ("borderline, for a person", summary.borderline),
        ("decided by the reviewer", summary.decided_by_reviewer),
        ("left sal for the next run", summary.left_for_later),
        ("new SQLs handed to sales", summary.handed_off),
        ("hand-off emails sent", summary.handoff_emails),
        ("CRM posts sent", summary.crm_sent),
        ("CRM posts failed", summary.crm_failed),
        ("qualified in this run", summary.qualified),
        ("disqualified in this run", summary.disqualified),
    ]
    return "\n".join(
        [f"# {summary.framework} review", "", "| | count |", "| --- | ---: |", *(f"| {label} | {count:,} |" for label, count in rows)]
    )
