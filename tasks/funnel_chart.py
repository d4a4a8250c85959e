"""The funnel report as an SVG chart: one funnel of centred bars per campaign, written without a plotting library."""

from __future__ import annotations

from html import escape
from pathlib import Path

from leadflow.errors import LeadflowError
from tasks.funnel import FunnelRow, format_rate

WIDTH = 840
LABEL_WIDTH = 150
"""Room on the left for the stage names."""
VALUE_WIDTH = 270
"""Room on the right for the count and the rates."""
BAR_HEIGHT = 30
BAR_GAP = 8
TITLE_HEIGHT = 36
BLOCK_GAP = 24
BAR_COLOURS = ("#1f5f99", "#2d7fc1", "#4a9bd6", "#2e9e6b", "#9a9a9a")
"""Invited, MQL and SAL in blues, SQL in green and disqualified in grey."""


def funnel_svg(rows: list[FunnelRow]) -> str:
    """Draw every campaign's funnel; each bar's width is its count as a share of the campaign's invited leads."""
    bar_area = WIDTH - LABEL_WIDTH - VALUE_WIDTH
    block_height = TITLE_HEIGHT + 5 * (BAR_HEIGHT + BAR_GAP)
    height = max(1, len(rows)) * (block_height + BLOCK_GAP) + BLOCK_GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'font-family="Helvetica, Arial, sans-serif" font-size="13">',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
    ]
    if not rows:
        parts.append(f'<text x="20" y="{BLOCK_GAP + 20}">No trial-invite campaign has been launched yet.</text>')

    top = BLOCK_GAP
    for row in rows:
        parts.append(
            f'<text x="20" y="{top + 22}" font-size="16" font-weight="bold">Campaign {escape(row.campaign)}: '
            f"{row.invited:,} invited</text>"
        )
        y = top + TITLE_HEIGHT
        for stage, colour in zip(row.stages(), BAR_COLOURS, strict=True):
            share = stage.count / row.invited if row.invited else 0.0
            width = max(bar_area * share, 1.0 if stage.count else 0.0)
            x = LABEL_WIDTH + (bar_area - width) / 2
            middle = y + BAR_HEIGHT / 2 + 5
            rates = ""
            if stage.previous_label:
                rates = f"{format_rate(stage.rate_of_invited)} of invited"
            if stage.previous_label != "invited" and stage.rate_of_previous_text:
                rates += f", {stage.rate_of_previous_text}"
            parts += [
                f'<text x="{LABEL_WIDTH - 10}" y="{middle:.1f}" text-anchor="end">{escape(stage.label)}</text>',
                f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" rx="3" fill="{colour}"/>',
                f'<text x="{WIDTH - VALUE_WIDTH + 10}" y="{middle:.1f}">'
                f'<tspan font-weight="bold">{stage.count:,}</tspan>{escape(f"  {rates}" if rates else "")}</text>',
            ]
            y += BAR_HEIGHT + BAR_GAP
        top += block_height + BLOCK_GAP
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def check_chart_path(path: Path) -> None:
    """Raise `LeadflowError` unless `path` names an SVG file."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        raise LeadflowError(
            f"cannot write {path.name}: leadflow writes the chart as SVG only, because PNG would need an image library. "
            f"Name the file {path.with_suffix('.svg').name}; browsers show SVG, and rsvg-convert or Inkscape convert it to PNG"
        )
    if suffix != ".svg":
        raise LeadflowError(f"cannot write {path.name}: the chart file name must end in .svg")


def write_funnel_chart(rows: list[FunnelRow], path: Path) -> Path:
    """Write the chart to `path`, which must end in .svg, and return the path."""
    check_chart_path(path)
    try:
        path.write_text(funnel_svg(rows), encoding="utf-8")
    except OSError as exc:
        raise LeadflowError(f"cannot write the chart to {path}: {exc.strerror}; check the folder and its permissions") from exc
    return path
