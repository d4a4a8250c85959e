"""The funnel report: how many leads of each trial-invite campaign reached each stage.

A lead belongs to the trial-invite campaign whose invite it received (ledger status
`sent`). A lead invited by two campaigns counts as invited by both, and its later
stages count for the last of them whose invite went out before the lead became an
MQL. A stage counts when the lead's stage history reached it at or after that
invite, so an SQL also counts as MQL and SAL.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from models import Campaign, EmailSend, SendStatus, Stage, StageChange, session_scope

INVITE_KIND = "trial-invite"
INVITE_STEP = "trial-invite"
"""Campaign kind and ledger step of the trial invite, as `flows.trial_invite` writes them."""

COUNTED_STAGES = (Stage.MQL, Stage.SAL, Stage.SQL, Stage.DISQUALIFIED)


@dataclass(frozen=True)
class FunnelStage:
    """One line of the funnel: a stage, its lead count and the counts its rates compare with."""

    label: str
    count: int
    invited: int
    previous: int | None
    """The count of the stage before, or None for the invited line itself."""
    previous_label: str | None

    @property
    def rate_of_invited(self) -> float | None:
        return self.count / self.invited if self.invited else None

    @property
    def rate_of_previous(self) -> float | None:
        if self.previous is None:
            return None
        return self.count / self.previous if self.previous else None

    @property
    def rate_of_previous_text(self) -> str:
        """The rate against the stage before, such as "50.0% of MQL", or an empty string when there is none."""
        rate = self.rate_of_previous
        return f"{format_rate(rate)} of {self.previous_label}" if rate is not None else ""


@dataclass(frozen=True)
class FunnelRow:
    """Lead counts of one trial-invite campaign by the furthest stage reached."""

    campaign: str
    invited: int
    mql: int
    sal: int
    sql: int
    disqualified: int

    def stages(self) -> list[FunnelStage]:
        """Return the lines of the report in funnel order.

        Disqualified leads are compared with SAL, the stage the BANT review decides from.
        """
        lines = [
            ("invited", self.invited, None, None),
            ("in trial (MQL)", self.mql, self.invited, "invited"),
            ("surveyed (SAL)", self.sal, self.mql, "MQL"),
            ("qualified (SQL)", self.sql, self.sal, "SAL"),
            ("disqualified", self.disqualified, self.sal, "SAL"),
        ]
        return [FunnelStage(label, count, self.invited, previous, before) for label, count, previous, before in lines]


def count_funnel(*, session: Session, campaign: str | None = None) -> list[FunnelRow]:
    """Count the leads of every trial-invite campaign (or of `campaign` only) per stage, oldest campaign first."""
    invites = (
        select(
            col(EmailSend.id).label("ledger_id"),
            col(EmailSend.lead_id).label("lead_id"),
            col(EmailSend.campaign_id).label("campaign_id"),
            col(EmailSend.sent_at).label("sent_at"),
        )
        .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
        .where(
            col(Campaign.kind) == INVITE_KIND,
            col(EmailSend.step) == INVITE_STEP,
            col(EmailSend.status) == SendStatus.SENT.value,
            col(EmailSend.sent_at).is_not(None),
        )
        .subquery("invites")
    )

    invited_counts = dict(
        session.execute(
            select(invites.c.campaign_id, func.count(func.distinct(invites.c.lead_id))).group_by(invites.c.campaign_id)
        ).all()
    )

    first_mql = (
        select(col(StageChange.lead_id).label("lead_id"), func.min(StageChange.created_at).label("mql_at"))
        .where(col(StageChange.to_stage) == Stage.MQL.value)
        .group_by(col(StageChange.lead_id))
        .subquery("first_mql")
    )
    # Rank 1 is the latest invite sent before the lead became an MQL. For a lead that
    # never did, it is the latest invite.
    ranked = (
        select(
            invites.c.lead_id,
            invites.c.campaign_id,
            invites.c.sent_at,
            func.row_number()
            .over(partition_by=invites.c.lead_id, order_by=(invites.c.sent_at.desc(), invites.c.ledger_id.desc()))
            .label("position"),
        )
        .outerjoin(first_mql, first_mql.c.lead_id == invites.c.lead_id)
        .where(or_(first_mql.c.mql_at.is_(None), invites.c.sent_at <= first_mql.c.mql_at))
        .subquery("ranked")
    )
    stage_counts = session.execute(
        select(ranked.c.campaign_id, col(StageChange.to_stage), func.count(func.distinct(ranked.c.lead_id)))
        .join(StageChange, col(StageChange.lead_id) == ranked.c.lead_id)
        .where(
            ranked.c.position == 1,
            col(StageChange.created_at) >= ranked.c.sent_at,
            col(StageChange.to_stage).in_([stage.value for stage in COUNTED_STAGES]),
        )
        .group_by(ranked.c.campaign_id, col(StageChange.to_stage))
    ).all()
    reached: dict[tuple[int, str], int] = {(campaign_id, stage): count for campaign_id, stage, count in stage_counts}

    campaigns = select(Campaign).where(col(Campaign.kind) == INVITE_KIND).order_by(col(Campaign.created_at), col(Campaign.id))
    if campaign is not None:
        campaigns = campaigns.where(col(Campaign.name) == campaign)
    rows = []
    for stored in session.exec(campaigns):
        campaign_id = stored.id or 0
        rows.append(
            FunnelRow(
                campaign=stored.name,
                invited=invited_counts.get(campaign_id, 0),
                mql=reached.get((campaign_id, Stage.MQL.value), 0),
                sal=reached.get((campaign_id, Stage.SAL.value), 0),
                sql=reached.get((campaign_id, Stage.SQL.value), 0),
                disqualified=reached.get((campaign_id, Stage.DISQUALIFIED.value), 0),
            )
        )
    return rows


def campaign_names(*, session: Session) -> list[str]:
    """Return the names of the trial-invite campaigns, oldest first."""
    statement = select(Campaign.name).where(col(Campaign.kind) == INVITE_KIND).order_by(col(Campaign.created_at), col(Campaign.id))
    return list(session.exec(statement))


def format_rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.1%}"


def funnel_markdown(rows: list[FunnelRow]) -> str:
    """Render the report as a Markdown table, one block of lines per campaign."""
    if not rows:
        return "# Funnel\n\nNo trial-invite campaign has been launched yet."
    lines = [
        "# Funnel by trial-invite campaign",
        "",
        "| campaign | stage | leads | of invited | of the stage before |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        for stage in row.stages():
            lines.append(
                f"| {row.campaign} | {stage.label} | {stage.count:,} | {format_rate(stage.rate_of_invited)} "
                f"| {stage.rate_of_previous_text} |"
            )
    return "\n".join(lines)


def publish_funnel_artifact() -> None:
    """Publish the funnel of every campaign as the `funnel` artifact of the current flow run."""
    from prefect.artifacts import create_markdown_artifact

    with session_scope() as session:
        rows = count_funnel(session=session)
    create_markdown_artifact(funnel_markdown(rows), key="funnel", description="Leads of each trial-invite campaign by stage")
