"""The pages behind the links in emails: the survey and the unsubscribe confirmation.

Each page's URL carries a signed token bound to one lead and one purpose
(leadflow.tokens), so a page can act only for the lead its token names.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from starlette.concurrency import run_in_threadpool

from leadflow.clock import now
from leadflow.settings import Settings
from leadflow.tokens import TokenClaims, verify_token
from leadflow.web.rendering import render_message, render_page
from leadflow.web.bodies import read_body
from leadflow.web.survey_form import FORM_MAX_BYTES, InvalidForm, SurveyForm, form_context, parse_survey_form
from models import Lead, Stage, SurveyResponse, session_scope
from tasks.email_address import mask_email
from tasks.scoring import Rules, load_rules
from tasks.surveys import SurveyOutcome, record_survey_response
from tasks.unsubscribe import unsubscribe_lead

logger = logging.getLogger("leadflow.web")
router = APIRouter(tags=["pages"], default_response_class=HTMLResponse)

SURVEY_PATH = "/survey/{token}"
UNSUBSCRIBE_PATH = "/unsubscribe/{token}"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
TOKEN_DESCRIPTION = "The signed token from the link in the email."


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _claims(request: Request, token: str, purpose: str) -> TokenClaims:
    """Verify `token` for `purpose`; an `InvalidToken` becomes the app's invalid-link page."""
    settings = _settings(request)
    return verify_token(token, key=settings.secret_key.get_secret_value(), purpose=purpose, now=now())


def _lead_gone(request: Request) -> HTMLResponse:
    return render_message(
        request, title="This link does not work", status_code=404,
        message="The link names no one on our list any more. Nothing was changed.",
    )


def _survey_closed_reason(lead: Lead) -> str:
    """Return why `lead` cannot answer the survey now, or an empty string when it can."""
    if lead.unsubscribed_at is not None or lead.is_customer:
        return "This survey is closed for your address."
    if lead.stage == Stage.MQL or lead.stage == Stage.SAL:
        return ""
    if lead.stage in (Stage.SQL, Stage.DISQUALIFIED):
        return "Your answers are already with our team, so they can no longer be changed here."
    return "This survey is open only during a free trial."


# Survey ------------------------------------------------------------------------------------------


@router.get(SURVEY_PATH, summary="Show the survey form", description=TOKEN_DESCRIPTION)
def show_survey(token: str, request: Request) -> HTMLResponse:
    claims = _claims(request, token, "survey")
    with session_scope(_settings(request).resolved_database_url) as session:
        lead = session.get(Lead, claims.lead_id)
        stored = session.exec(select(SurveyResponse).where(SurveyResponse.lead_id == claims.lead_id)).first()
    if lead is None:
        return _lead_gone(request)
    closed = _survey_closed_reason(lead)
    if closed:
        return render_message(request, title="Thank you", message=closed, status_code=200)

    form = SurveyForm()
    if stored is not None and lead.stage == Stage.SAL:
        form = SurveyForm(answers=dict(stored.answers), fit=stored.fit, pain_points=stored.pain_points or "")
    return _survey_page(request, lead, form, status_code=200, answered=stored is not None)


@router.post(
    SURVEY_PATH, summary="Store the survey answers", description=TOKEN_DESCRIPTION,
    responses={400: {"description": "Invalid or expired link"}, 409: {"description": "The survey is closed"},
               415: {"description": "Not a form"}, 422: {"description": "Missing or invalid answers"}},
)
async def submit_survey(token: str, request: Request) -> HTMLResponse:
    claims = _claims(request, token, "survey")
    settings = _settings(request)
    rules = load_rules(settings.rules_file)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_CONTENT_TYPE:
        return render_message(
            request, title="The answers were not sent as a form", status_code=415,
            message="Nothing was stored. Open the survey from the email and send it with the button.",
        )
    try:
        form = parse_survey_form(await read_body(request, max_bytes=FORM_MAX_BYTES), rules)
    except InvalidForm as exc:
        return render_message(
            request, title="The answers could not be read", status_code=400,
            message=f"Nothing was stored because {exc}. Open the survey from the email and send it again.",
        )
    return await run_in_threadpool(_store_survey_with_retry, request, claims.lead_id, form, rules, settings)


def _store_survey_with_retry(
    request: Request, lead_id: int, form: SurveyForm, rules: Rules, settings: Settings
) -> HTMLResponse:
    try:
        return _store_survey(request, lead_id, form, rules, settings)
    except IntegrityError:
        # Two first submissions at once (a double click) both insert the lead's one row,
        # so the second attempt finds the first one's answers and replaces them.
        return _store_survey(request, lead_id, form, rules, settings)


def _store_survey(request: Request, lead_id: int, form: SurveyForm, rules: Rules, settings: Settings) -> HTMLResponse:
    with session_scope(settings.resolved_database_url) as session:
        lead = session.get(Lead, lead_id)
        if lead is None:
            return _lead_gone(request)
        closed = _survey_closed_reason(lead)
        if closed:
            return render_message(request, title="Thank you", message=closed, status_code=409)
        if form.problems:
            answered = session.exec(select(SurveyResponse.id).where(SurveyResponse.lead_id == lead_id)).first()
            return _survey_page(request, lead, form, status_code=422, answered=answered is not None)

        result = record_survey_response(
            lead_id, session=session, rules=rules, answers=form.answers, fit=form.fit,
            pain_points=form.pain_points, source="web survey page", actor="web:survey", at=now(),
        )

    logger.info("survey for lead %d: %s", lead_id, result.outcome.value)
    if result.outcome is SurveyOutcome.REJECTED:
        return render_message(request, title="Thank you", message=f"Nothing was stored: {result.reason}.", status_code=409)
    return render_page(request, "survey_thanks.html", {"updated": result.outcome is SurveyOutcome.UPDATED})


def _survey_page(request: Request, lead: Lead, form: SurveyForm, *, status_code: int, answered: bool) -> HTMLResponse:
    rules = load_rules(_settings(request).rules_file)
    context = {"first_name": lead.first_name or "", "answered": answered, **form_context(rules, form)}
    return render_page(request, "survey.html", context, status_code=status_code)


# Unsubscribe -------------------------------------------------------------------------------------


@router.get(
    UNSUBSCRIBE_PATH, summary="Ask to confirm unsubscribing (changes nothing)", description=TOKEN_DESCRIPTION
)
def confirm_unsubscribe(token: str, request: Request) -> HTMLResponse:
    # NOTE: a GET never unsubscribes, because mail scanners and link previews fetch every link in an email.
    claims = _claims(request, token, "unsubscribe")
    with session_scope(_settings(request).resolved_database_url) as session:
        lead = session.get(Lead, claims.lead_id)
    if lead is None:
        return _lead_gone(request)
    context = {"address": mask_email(lead.email), "unsubscribed_at": lead.unsubscribed_at}
    return render_page(request, "unsubscribe.html", context)


@router.post(
    UNSUBSCRIBE_PATH, summary="Unsubscribe, from the page or as an RFC 8058 one-click POST",
    description=(
        TOKEN_DESCRIPTION + " Any POST unsubscribes, whatever its body, so a mail client's one-click POST "
        "(body `List-Unsubscribe=One-Click`) needs no further step."
    ),
)
def unsubscribe(token: str, request: Request) -> HTMLResponse:
    claims = _claims(request, token, "unsubscribe")
    with session_scope(_settings(request).resolved_database_url) as session:
        result = unsubscribe_lead(claims.lead_id, session=session, at=now())
    if not result.found:
        return _lead_gone(request)

    logger.info("lead %d %s", claims.lead_id, "unsubscribed" if result.changed else "was unsubscribed before")
    return render_page(request, "unsubscribed.html", {"unsubscribed_at": result.unsubscribed_at})
