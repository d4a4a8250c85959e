"""The funnel report: attribution of leads to campaigns, stage counts, the Markdown table and the SVG chart."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from leadflow.errors import LeadflowError
from leadflow.settings import Settings
from models import Campaign, EmailSend, Lead, StageChange, session_scope
from tasks.funnel import FunnelRow, count_funnel, funnel_markdown
from tasks.funnel_chart import funnel_svg, write_funnel_chart

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def add_lead(session: Session, email: str, path: list[tuple[str, datetime]]) -> int:
    """Store a lead that moved through `path`, a list of (stage, time) after `subscriber`."""
    lead = Lead(email=email, created_at=T0 - timedelta(days=1))
    session.add(lead)
    session.flush()
    assert lead.id is not None
    session.add(StageChange(lead_id=lead.id, to_stage="subscriber", reason="imported", actor="test", created_at=T0 - timedelta(days=1)))
    previous = "subscriber"
    for stage, moment in path:
        session.add(StageChange(lead_id=lead.id, from_stage=previous, to_stage=stage, reason="test", actor="test", created_at=moment))
        previous = stage
    lead.stage = previous
    return lead.id


def add_invite(session: Session, campaign: Campaign, lead_id: int, status: str, at: datetime) -> None:
    session.add(
        EmailSend(
            campaign_id=campaign.id, lead_id=lead_id, step="trial-invite", status=status,
            message_id=f"<{campaign.name}-{lead_id}@example.com>", created_at=at, claimed_at=at,
            sent_at=at if status == "sent" else None,
        )
    )


@pytest.fixture
def two_campaigns(settings: Settings) -> None:
    day = timedelta(days=1)
    with session_scope() as session:
        spring = Campaign(kind="trial-invite", name="spring", created_at=T0)
        summer = Campaign(kind="trial-invite", name="summer", created_at=T0 + 10 * day)
        other = Campaign(kind="survey-followup", name="survey", created_at=T0)
        session.add_all([spring, summer, other])
        session.flush()

        qualified = add_lead(session, "sql@example.com", [("mql", T0 + day), ("sal", T0 + 6 * day), ("sql", T0 + 8 * day)])
        add_invite(session, spring, qualified, "sent", T0)
        idle = add_lead(session, "idle@example.com", [])
        add_invite(session, spring, idle, "sent", T0)
        bounced = add_lead(session, "bounced@example.com", [])
        add_invite(session, spring, bounced, "bounced", T0)
        # Invited by both; signed up after the second invite, so its stages count for summer.
        twice = add_lead(session, "twice@example.com", [("mql", T0 + 11 * day), ("sal", T0 + 16 * day)])
        add_invite(session, spring, twice, "sent", T0)
        add_invite(session, summer, twice, "sent", T0 + 10 * day)
        rejected = add_lead(session, "rejected@example.com", [("mql", T0 + 12 * day), ("sal", T0 + 17 * day), ("disqualified", T0 + 18 * day)])
        add_invite(session, summer, rejected, "sent", T0 + 10 * day)
        # A trial that began before any invite counts for no campaign.
        direct = add_lead(session, "direct@example.com", [("mql", T0 - timedelta(hours=1))])
        add_invite(session, summer, direct, "failed", T0 + 10 * day)


@pytest.mark.usefixtures("two_campaigns")
class TestCountFunnel:
    def test_counts_stages_per_campaign(self) -> None:
        with session_scope() as session:
            rows = count_funnel(session=session)

        assert rows == [
            FunnelRow(campaign="spring", invited=3, mql=1, sal=1, sql=1, disqualified=0),
            FunnelRow(campaign="summer", invited=2, mql=2, sal=2, sql=0, disqualified=1),
        ]

    def test_filters_one_campaign(self) -> None:
        with session_scope() as session:
            rows = count_funnel(session=session, campaign="summer")

        assert [row.campaign for row in rows] == ["summer"]

    def test_unknown_campaign_gives_no_rows(self) -> None:
        with session_scope() as session:
            assert count_funnel(session=session, campaign="autumn") == []


def test_rates_against_invited_and_stage_before() -> None:
    row = FunnelRow(campaign="demo", invited=200, mql=60, sal=30, sql=10, disqualified=20)

    stages = {stage.label: stage for stage in row.stages()}

    assert stages["in trial (MQL)"].rate_of_invited == pytest.approx(0.3)
    assert stages["surveyed (SAL)"].rate_of_previous == pytest.approx(0.5)
    assert stages["qualified (SQL)"].rate_of_invited == pytest.approx(0.05)
    assert stages["disqualified"].previous_label == "SAL"
    assert stages["invited"].rate_of_previous is None


def test_rates_of_empty_campaign_are_blank() -> None:
    row = FunnelRow(campaign="empty", invited=0, mql=0, sal=0, sql=0, disqualified=0)

    assert all(stage.rate_of_invited is None for stage in row.stages())
    assert "| empty | in trial (MQL) | 0 |  |  |" in funnel_markdown([row])


def test_markdown_has_a_line_per_stage() -> None:
    markdown = funnel_markdown([FunnelRow(campaign="demo", invited=1000, mql=300, sal=150, sql=50, disqualified=100)])

    assert "| demo | invited | 1,000 | 100.0% |  |" in markdown
    assert "| demo | surveyed (SAL) | 150 | 15.0% | 50.0% of MQL |" in markdown
    assert "| demo | qualified (SQL) | 50 | 5.0% | 33.3% of SAL |" in markdown


class TestFunnelChart:
    def test_bars_scale_with_counts(self) -> None:
        rows = [
            FunnelRow(campaign="a<b", invited=200, mql=100, sal=50, sql=20, disqualified=30),
            FunnelRow(campaign="second", invited=10, mql=0, sal=0, sql=0, disqualified=0),
        ]

        root = ElementTree.fromstring(funnel_svg(rows))

        bars = [float(rect.attrib["width"]) for rect in root.iter(f"{SVG}rect")][1:]
        assert len(bars) == 10
        assert bars[1] == pytest.approx(bars[0] / 2, abs=0.1)
        assert bars[3] == pytest.approx(bars[0] / 10, abs=0.1)
        assert bars[6] == 0
        texts = "".join(root.itertext())
        assert "Campaign a<b: 200 invited" in texts
        assert "25.0% of invited, 50.0% of MQL" in texts

    def test_writes_svg_file(self, tmp_path: Path) -> None:
        path = write_funnel_chart([FunnelRow(campaign="demo", invited=3, mql=1, sal=1, sql=1, disqualified=0)], tmp_path / "Funnel.SVG")

        assert ElementTree.parse(path).getroot().tag == f"{SVG}svg"

    @pytest.mark.parametrize("name", ["funnel.png", "funnel.pdf", "funnel"])
    def test_rejects_other_formats(self, tmp_path: Path, name: str) -> None:
        with pytest.raises(LeadflowError) as caught:
            write_funnel_chart([], tmp_path / name)

        assert name in str(caught.value)
        assert ".svg" in str(caught.value)
        assert not (tmp_path / name).exists()
