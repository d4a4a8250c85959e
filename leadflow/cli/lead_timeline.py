"""`leadflow leads show`: one lead's timeline, printed from the database alone (no Prefect server needed)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.table import Table

from leadflow.cli.common import console, current_settings
from leadflow.errors import LeadflowError

if TYPE_CHECKING:
    from tasks.timeline import LeadTimeline

DECISION_WORDS = {"qualify": "qualified", "disqualify": "disqualified"}


def _time(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC" if moment is not None else ""


def show_lead(email: str) -> None:
    """Find the lead by address and print its timeline; raise `LeadflowError` when there is none."""
    from models import session_scope
    from tasks.email_address import InvalidEmailAddress, normalize_email
    from tasks.timeline import load_lead_timeline

    try:
        address = normalize_email(email)
    except InvalidEmailAddress as exc:
        raise LeadflowError(f"EMAIL: {exc}") from exc
    with session_scope() as session:
        timeline = load_lead_timeline(session=session, email=address)
    if timeline is None:
        raise LeadflowError(f"no lead with the address {address}; check the spelling, or import it with: leadflow leads import FILE")
    print_timeline(timeline)


def print_timeline(timeline: LeadTimeline) -> None:
    _print_header(timeline)
    _print_history(timeline)
    _print_emails(timeline)
    _print_survey(timeline)
    _print_review(timeline)


def _print_header(timeline: LeadTimeline) -> None:
    lead = timeline.lead
    name = " ".join(part for part in (lead.first_name, lead.last_name) if part) or "(no name)"
    role = ", ".join(part for part in (lead.title, lead.company) if part)
    console.print(f"{name} <{lead.email}>" + (f", {role}" if role else ""), markup=False, highlight=False)
    facts = [f"stage {lead.stage}", f"lead id {lead.id}"]
    if lead.is_customer:
        facts.append("customer")
    if lead.suppressed_at is not None:
        facts.append(f"suppressed {_time(lead.suppressed_at)} ({lead.suppression_reason or 'no reason given'})")
    if lead.unsubscribed_at is not None:
        facts.append(f"unsubscribed {_time(lead.unsubscribed_at)}")
    if lead.trial_started_at is not None:
        facts.append(f"trial {_time(lead.trial_started_at)} to {_time(lead.trial_ends_at)}")
    if timeline.handoff is not None:
        facts.append(f"owner {timeline.handoff.owner} (CRM: {timeline.handoff.crm_status})")
    console.print("; ".join(facts), markup=False, highlight=False)


def _by(actor: str | None) -> str:
    from tasks.timeline import flow_run_id

    run_id = flow_run_id(actor)
    return f"flow run {run_id}" if run_id else f"by {actor or 'unknown'}"


# History and emails are printed as lines rather than tables, so a narrow terminal
# never cuts a flow run id.
def _print_history(timeline: LeadTimeline) -> None:
    console.print("Stage history:")
    for change in timeline.history:
        move = f"{change.from_stage} -> {change.to_stage}" if change.from_stage else change.to_stage
        console.print(f"  {_time(change.created_at)}  {move:<24} {_by(change.actor)}", markup=False, highlight=False)
        console.print(f"      {change.reason}", markup=False, highlight=False)


def _print_emails(timeline: LeadTimeline) -> None:
    if not timeline.emails:
        console.print("Emails: none.")
        return
    console.print("Emails:")
    for sent in timeline.emails:
        name = f"{sent.campaign_kind}/{sent.campaign_name} {sent.step}"
        if sent.step == "sales-handoff" and timeline.handoff is not None:
            name += f" (to the owner, {timeline.handoff.owner})"
        run = f"flow run {sent.flow_run_id}" if sent.flow_run_id else ""
        console.print(
            f"  {_time(sent.sent_at or sent.claimed_at)}  {name}: {sent.status}  {run}".rstrip(), markup=False, highlight=False
        )
        if sent.error:
            console.print(f"      {sent.error}", markup=False, highlight=False)


def _print_survey(timeline: LeadTimeline) -> None:
    from tasks.scoring import load_rules

    survey = timeline.survey
    if survey is None:
        console.print("Survey: no response.")
        return
    rules = load_rules(current_settings().rules_file)
    table = Table(title=f"Survey answers ({survey.framework}), submitted {_time(survey.submitted_at)}", title_justify="left")
    table.add_column("question")
    table.add_column("answer")
    for key, value in survey.answers.items():
        criterion = rules.criterion(key) if rules.framework == survey.framework else None
        option = criterion.option(value) if criterion is not None else None
        table.add_row(criterion.question if criterion else key, option.label if option else value)
    table.add_row("How well did the trial fit your needs?", survey.fit or "not answered")
    table.add_row("Pain points", survey.pain_points or "not answered")
    console.print(table)


def _print_review(timeline: LeadTimeline) -> None:
    from tasks.scoring import ScoreResult

    review = timeline.review
    if review is None:
        console.print("Review: not reviewed yet.")
        return
    score = ScoreResult.model_validate(review.explanation)
    by = _by(review.decided_by)
    decided = "by the rules" if review.decision == review.rule_decision else f"by a person (the rules said {review.rule_decision})"
    console.print(
        f"{score.framework} review: {DECISION_WORDS.get(review.decision, review.decision)} {decided}, {_time(review.decided_at)}, {by}. "
        f"Score {score.total:g} of {score.max_total:g}; qualifies at {score.qualify_at:g}, "
        f"disqualified below {score.disqualify_below:g}." + (f" Note: {review.note}" if review.note else ""),
        markup=False, highlight=False,
    )
    table = Table(title=f"{score.framework} explanation", title_justify="left")
    for column in ("criterion", "answer", "points", "passed"):
        table.add_column(column, justify="right" if column == "points" else "left")
    for item in score.criteria:
        table.add_row(item.name, item.answer_label or "not answered", f"{item.points:g}", "yes" if item.passed else "no")
    console.print(table)
