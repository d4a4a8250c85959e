"""A lead's timeline, read from the database alone: stage history, emails, survey answers, review and hand-off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from models import Campaign, EmailSend, Lead, LeadReview, SalesHandoff, StageChange, SurveyResponse

FLOW_RUN_PREFIX = "flow-run:"


def flow_run_id(actor: str | None) -> str | None:
    """Return the flow run id inside an actor such as `flow-run:<uuid>`, or None for a person or a command."""
    if actor and actor.startswith(FLOW_RUN_PREFIX):
        return actor.removeprefix(FLOW_RUN_PREFIX)
    return None


@dataclass(frozen=True)
class SentEmail:
    """One ledger row of the lead, with the campaign it belongs to."""

    campaign_kind: str
    campaign_name: str
    step: str
    status: str
    claimed_at: datetime | None
    sent_at: datetime | None
    flow_run_id: str | None
    error: str | None


@dataclass(frozen=True)
class LeadTimeline:
    lead: Lead
    history: list[StageChange]
    emails: list[SentEmail]
    survey: SurveyResponse | None
    review: LeadReview | None
    handoff: SalesHandoff | None


def load_lead_timeline(*, session: Session, email: str) -> LeadTimeline | None:
    """Read everything stored about the lead with this normalised address; None when there is no such lead."""
    lead = session.exec(select(Lead).where(col(Lead.email) == email)).first()
    if lead is None or lead.id is None:
        return None

    history = list(
        session.exec(select(StageChange).where(col(StageChange.lead_id) == lead.id).order_by(col(StageChange.created_at), col(StageChange.id)))
    )
    ledger_rows = session.exec(
        select(EmailSend, Campaign)
        .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
        .where(col(EmailSend.lead_id) == lead.id)
        .order_by(col(EmailSend.created_at), col(EmailSend.id))
    ).all()
    emails = [
        SentEmail(
            campaign_kind=campaign.kind, campaign_name=campaign.name, step=row.step, status=row.status,
            claimed_at=row.claimed_at, sent_at=row.sent_at, flow_run_id=flow_run_id(row.claimed_by), error=row.error,
        )
        for row, campaign in ledger_rows
    ]
    survey = session.exec(select(SurveyResponse).where(col(SurveyResponse.lead_id) == lead.id)).first()
    review = session.exec(select(LeadReview).where(col(LeadReview.lead_id) == lead.id)).first()
    handoff = session.exec(select(SalesHandoff).where(col(SalesHandoff.lead_id) == lead.id)).first()
    return LeadTimeline(lead=lead, history=history, emails=emails, survey=survey, review=review, handoff=handoff)
