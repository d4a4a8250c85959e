"""A stand-in trial sign-up page at `<public URL>/trial`, where the invite links by default.

In production `LEADFLOW_TRIAL_URL` points at the product's own sign-up page, which
reports sign-ups through the intake webhook. This page lets a team run the whole
funnel on one machine. A GET shows a confirmation and changes nothing, because
link scanners fetch links. Its POST records the sign-up through the same function
as the webhook and the command line.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import HTMLResponse

from leadflow.clock import now
from leadflow.settings import Settings
from leadflow.tokens import verify_token
from leadflow.web.rendering import render_message, render_page
from leadflow.web.webhooks import schedule_survey_quietly
from models import Lead, session_scope
from tasks.email_address import mask_email
from tasks.trials import SignupOutcome, record_trial_signup

logger = logging.getLogger("leadflow.web")
router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)

TRIAL_PATH = "/trial"
REF_DESCRIPTION = "The signed `ref` token from the invite's trial link."


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _lead_for(request: Request, ref: str) -> Lead | None:
    settings = _settings(request)
    claims = verify_token(ref, key=settings.secret_key.get_secret_value(), purpose="trial", now=now())
    with session_scope(settings.resolved_database_url) as session:
        return session.get(Lead, claims.lead_id)


@router.get(TRIAL_PATH, summary="Ask to confirm the free trial (changes nothing)", description=REF_DESCRIPTION)
def confirm_trial(request: Request, ref: str = Query(min_length=1, max_length=200)) -> HTMLResponse:
    lead = _lead_for(request, ref)
    if lead is None:
        return render_message(request, title="This link does not work", status_code=404, message="The link names no one on our list any more.")
    context = {"address": mask_email(lead.email), "days": _settings(request).trial_days, "started_at": lead.trial_started_at}
    return render_page(request, "trial.html", context)


@router.post(TRIAL_PATH, summary="Start the free trial of the lead the link names", description=REF_DESCRIPTION)
def start_trial(
    request: Request, background_tasks: BackgroundTasks, ref: str = Query(min_length=1, max_length=200)
) -> HTMLResponse:
    lead = _lead_for(request, ref)
    if lead is None:
        return render_message(request, title="This link does not work", status_code=404, message="The link names no one on our list any more.")
    settings = _settings(request)
    with session_scope(settings.resolved_database_url) as session:
        result = record_trial_signup(
            lead.email, session=session, started_at=now(), days=settings.trial_days, source="trial page",
            actor="web:trial-page", offset_hours=settings.survey_offset_hours,
        )
    logger.info("lead %d trial sign-up: %s", result.lead_id, result.outcome.value)
    if result.outcome in (SignupOutcome.STARTED, SignupOutcome.CREATED) and result.survey_due_at is not None:
        background_tasks.add_task(schedule_survey_quietly, settings, result.survey_due_at)
    if result.outcome is SignupOutcome.IGNORED:
        return render_message(request, title="No trial started", status_code=409, message=f"No trial was started: {result.reason}.")
    return render_page(request, "trial_started.html", {"ends_at": result.trial_ends_at})
