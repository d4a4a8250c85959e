"""`leadflow demo`: the whole funnel on a generated sample list, over a simulated month."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leadflow.cli.campaigns import print_campaign_summary
from leadflow.cli.common import console, current_settings, prefect_api
from leadflow.cli.funnel import load_funnel, print_funnel
from leadflow.cli.leads import print_import_summary
from leadflow.errors import LeadflowError
from leadflow.settings import get_settings

if TYPE_CHECKING:
    from pathlib import Path

DEMO_CAMPAIGN = "demo"
DEMO_CUSTOMER_SHARE = 0.015
"""Few customers, so nearly the whole list is invited."""


def simulated_start(today: datetime) -> datetime:
    """Return 09:00 UTC 31 days before `today`, so the simulated month ends before the real present."""
    return datetime.combine(today.astimezone(UTC).date() - timedelta(days=31), time(9, 0), tzinfo=UTC)


def demo(
    leads: Annotated[int, typer.Option("--leads", min=1, max=100_000, help="Number of people on the sample list.")] = 1000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the sample list and of the simulated people; the same seed gives the same funnel.")
    ] = 7,
) -> None:
    """Run the whole funnel on a generated sample list over a simulated month, and print the funnel.

    It imports the list, sends the trial invite, and plays a month. About 30% of the
    invited start a trial, and the survey emails go out when due. About half of the
    trial users fill in the survey, the BANT review runs with a simulated reviewer for
    the borderline leads, and SQLs are handed to sales. The demo rebuilds its own
    folder (data folder/demo) on every run: a new SQLite database and outbox, never
    your own database or SMTP server.
    """
    import shutil

    from leadflow.clock import now
    from leadflow.sample import write_sample_list
    from models import dispose_engines

    folder = current_settings().data_dir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    database_url = f"sqlite:///{folder / 'leadflow.db'}"
    os.environ["LEADFLOW_DATABASE_URL"] = database_url
    os.environ["LEADFLOW_OUTBOX_DIR"] = str(folder / "outbox")
    os.environ.pop("LEADFLOW_SMTP_URL", None)
    get_settings.cache_clear()
    dispose_engines()
    settings = current_settings()

    sample = write_sample_list(folder / "sample-leads.csv", leads=leads, seed=seed, customer_share=DEMO_CUSTOMER_SHARE)
    console.print(f"Demo folder, rebuilt on every run: {folder}")
    console.print(f"Sample list: {sample} ({leads:,} people on example domains, plus two rows with mistakes)")

    with prefect_api(settings) as ui_url:
        month = _play_month(sample, simulated_start(now()), seed)

    print_import_summary(month.imported)
    print_campaign_summary(month.invite, None)
    console.print(
        f"Simulated month {month.start:%Y-%m-%d} to {month.end:%Y-%m-%d}: {month.signups:,} trial sign-ups, "
        f"{month.surveys_sent:,} survey emails in {month.followup_runs} survey-followup runs, {month.answers:,} answers, "
        f"{month.review_runs} bant-review runs ({month.reviewer_decisions:,} borderline leads decided by the simulated reviewer)"
    )
    rows = load_funnel(None)
    print_funnel(rows)
    _print_where_to_look(folder, database_url, ui_url, rows)


def _play_month(sample: Path, start: datetime, seed: int) -> Any:
    from leadflow.cli.progress import quiet_prefect_console, share_progress
    from leadflow.simulation import demo_month, reporting_progress

    with share_progress() as progress, quiet_prefect_console():
        bar = progress.add_task("starting the demo", total=1.0)

        def show(description: str, share: float) -> None:
            progress.update(bar, description=description, completed=share)

        with reporting_progress(show):
            state = demo_month(sample=sample, campaign=DEMO_CAMPAIGN, start=start, seed=seed, return_state=True)
            result: Any = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise LeadflowError(f"the demo-month flow run failed: {result}") from result
    return result


def _print_where_to_look(folder: Path, database_url: str, ui_url: str, rows: list[Any]) -> None:
    from sqlmodel import col, select

    from models import Lead, LeadReview, session_scope
    from tasks.funnel_chart import write_funnel_chart

    chart = write_funnel_chart(rows, folder / "funnel.svg")
    with session_scope() as session:
        example = session.exec(
            select(Lead.email)
            .join(LeadReview, col(LeadReview.lead_id) == Lead.id)
            .where(col(LeadReview.decision) == "qualify", col(LeadReview.rule_decision) == "qualify")
            .order_by(col(Lead.id))
        ).first()
    settings = current_settings()
    console.print(f"Funnel chart: {chart}")
    console.print(f"The emails, one .eml file each: {settings.resolved_outbox_dir}")
    console.print(f"The flow runs, their logs and the funnel artifact: {ui_url}/runs (the demo-month run and its sub-runs)")
    # The full path of this command, so the suggestions also work where .venv/bin is not on PATH.
    prefix = f"LEADFLOW_DATABASE_URL={database_url} {Path(sys.argv[0]).resolve()}"
    if example:
        console.print(f"One SQL's whole story: {prefix} leads show {example}", markup=False, highlight=False)
    console.print(f"The funnel again: {prefix} funnel --chart funnel.svg", markup=False, highlight=False)
