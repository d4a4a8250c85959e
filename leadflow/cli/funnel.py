"""`leadflow funnel`: leads of each trial-invite campaign per stage, with conversion rates."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from leadflow.cli.common import console
from leadflow.errors import LeadflowError

if TYPE_CHECKING:
    from tasks.funnel import FunnelRow


def print_funnel(rows: list[FunnelRow]) -> None:
    from tasks.funnel import format_rate

    if not rows:
        console.print("No trial-invite campaign has been launched yet; launch one with: leadflow campaign launch trial-invite --name NAME")
        return
    table = Table(title="Funnel by trial-invite campaign")
    table.add_column("campaign")
    table.add_column("stage")
    table.add_column("leads", justify="right")
    table.add_column("of invited", justify="right")
    table.add_column("of the stage before", justify="right")
    for row in rows:
        for stage in row.stages():
            table.add_row(
                row.campaign, stage.label, f"{stage.count:,}", format_rate(stage.rate_of_invited), stage.rate_of_previous_text
            )
        table.add_section()
    console.print(table)


def load_funnel(campaign: str | None) -> list[FunnelRow]:
    """Count the funnel of every campaign, or of `campaign`; raise `LeadflowError` for an unknown name."""
    from flows.trial_invite import normalize_campaign_name
    from models import session_scope
    from tasks.funnel import campaign_names, count_funnel

    name = normalize_campaign_name(campaign) if campaign is not None else None
    with session_scope() as session:
        rows = count_funnel(session=session, campaign=name)
        if name is not None and not rows:
            known = ", ".join(campaign_names(session=session)) or "none yet"
            raise LeadflowError(f"no trial-invite campaign named {campaign!r}; the campaigns are: {known}")
    return rows


def funnel(
    campaign: Annotated[
        str | None, typer.Option("--campaign", metavar="NAME", help="Show only this trial-invite campaign; default: all.")
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option("--chart", metavar="FILE", help="Also draw the funnel into this SVG file, e.g. funnel.svg."),
    ] = None,
) -> None:
    """Print how many leads of each campaign were invited, in trial (MQL), surveyed (SAL), qualified (SQL) or disqualified.

    Each stage's rate is given against the invited leads and against the stage
    before. A lead counts for the campaign whose invite it received, and an SQL
    also counts as MQL and SAL.
    """
    from tasks.funnel_chart import check_chart_path, write_funnel_chart

    if chart is not None:
        check_chart_path(chart)
    rows = load_funnel(campaign)
    print_funnel(rows)
    if chart is not None:
        console.print(f"Chart: {write_funnel_chart(rows, chart)}")
