"""`leadflow surveys`, `leadflow review` and `leadflow sales`: answers, the BANT review and the sales queue."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from leadflow.cli.common import console, current_settings, error_console, prefect_api
from leadflow.errors import LeadflowError

surveys_app = typer.Typer(help="Survey answers collected outside leadflow.", no_args_is_help=True)
review_app = typer.Typer(help="The BANT review of the leads that answered the survey.", no_args_is_help=True)
sales_app = typer.Typer(help="What sales sees: the qualified leads.", no_args_is_help=True)


@surveys_app.command("import")
def surveys_import(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="CSV file: email, one column per question (key or text), optional fit and pain points."),
    ],
) -> None:
    """Record survey answers from a CSV file; each lead that answered moves to SAL."""
    from leadflow.clock import now
    from models import session_scope
    from tasks.scoring import load_rules
    from tasks.surveys import import_survey_responses

    settings = current_settings()
    rules = load_rules(settings.rules_file)
    with session_scope() as session:
        summary = import_survey_responses(file, session=session, rules=rules, actor="cli:surveys-import", at=now())
    for line, reason in summary.rejections[:20]:
        console.print(f"  line {line}: rejected, {reason}", markup=False, highlight=False)
    console.print(
        f"read {summary.read:,} responses ({rules.framework} questions): {summary.recorded:,} recorded, "
        f"{summary.updated:,} updated, {summary.rejected:,} rejected"
    )


@review_app.command("run")
def review_run(
    timeout_minutes: Annotated[
        float | None,
        typer.Option("--timeout-minutes", min=0.1, help="How long to wait for a reviewer; default: LEADFLOW_REVIEW_TIMEOUT_MINUTES."),
    ] = None,
) -> None:
    """Score the answers, decide the clear cases, wait for a person on the borderline ones, hand SQLs to sales."""
    from flows.bant_review import bant_review

    settings = current_settings()
    with prefect_api(settings) as ui_url:
        error_console.print(f"Borderline leads, if any, wait for a decision in the Prefect UI: {ui_url}/runs (Paused runs)")
        state = bant_review(review_timeout_minutes=timeout_minutes, return_state=True)
        result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the bant-review flow run failed: {result}") from result
    console.print(
        f"{result.framework} review: {result.scored:,} scored, {result.qualified:,} qualified, "
        f"{result.disqualified:,} disqualified ({result.decided_by_reviewer:,} by the reviewer), "
        f"{result.left_for_later:,} left for the next run; {result.handed_off:,} handed to sales, "
        f"{result.handoff_emails:,} hand-off emails, {result.crm_sent:,} CRM posts, {result.crm_failed:,} failed"
    )
    if result.crm_failed:
        raise typer.Exit(code=1)


@sales_app.command("queue")
def sales_queue(
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many leads.")] = 50,
) -> None:
    """List the SQLs, most qualified first, with their owner and the reasons."""
    from sqlmodel import col, select

    from models import Lead, LeadReview, SalesHandoff, Stage, session_scope
    from tasks.scoring import ScoreResult

    with session_scope() as session:
        rows = session.exec(
            select(Lead, LeadReview, SalesHandoff)
            .join(LeadReview, col(LeadReview.lead_id) == Lead.id)
            .outerjoin(SalesHandoff, col(SalesHandoff.lead_id) == Lead.id)
            .where(col(Lead.stage) == Stage.SQL.value)
            .order_by(col(LeadReview.score).desc(), col(LeadReview.decided_at))
            .limit(limit)
        ).all()
    if not rows:
        console.print("No SQLs yet; run: leadflow review run")
        return
    table = Table(title="Sales queue: SQLs, most qualified first")
    for column in ("lead", "company", "score", "owner", "why"):
        # Fold long cells instead of cutting them, so a narrow terminal or a pipe keeps whole addresses.
        table.add_column(column, justify="right" if column == "score" else "left", overflow="fold")
    for lead, review, handoff in rows:
        score = ScoreResult.model_validate(review.explanation)
        reasons = ", ".join(f"{item.name} {'pass' if item.passed else 'fail'}" for item in score.criteria)
        table.add_row(
            f"{lead.first_name or ''} {lead.last_name or ''} <{lead.email}>".strip(),
            lead.company or "",
            f"{review.score:g}/{score.max_total:g}",
            handoff.owner if handoff else "(not assigned yet)",
            reasons,
        )
    console.print(table)
