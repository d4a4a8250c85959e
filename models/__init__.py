"""SQLModel tables and the database engine."""

from models.campaigns import (
    IN_FLIGHT_STATUSES,
    RETRYABLE_STATUSES,
    SENDER_CLAIMABLE_STATUSES,
    Campaign,
    EmailSend,
    SendStatus,
)
from models.db import dispose_engines, get_engine, session_scope, upgrade_database
from models.leads import Lead, LeadBase, StageChange
from models.reviews import LeadReview, SalesHandoff
from models.stages import ALLOWED_TRANSITIONS, Stage, check_transition
from models.suppressions import Suppression, SuppressionReason
from models.surveys import SurveyResponse
from models.webhooks import WebhookEvent

__all__ = [
    "ALLOWED_TRANSITIONS",
    "IN_FLIGHT_STATUSES",
    "RETRYABLE_STATUSES",
    "SENDER_CLAIMABLE_STATUSES",
    "Campaign",
    "EmailSend",
    "Lead",
    "LeadBase",
    "LeadReview",
    "SalesHandoff",
    "SendStatus",
    "Stage",
    "StageChange",
    "Suppression",
    "SuppressionReason",
    "SurveyResponse",
    "WebhookEvent",
    "check_transition",
    "dispose_engines",
    "get_engine",
    "session_scope",
    "upgrade_database",
]
