"""Signed intake webhooks: trial sign-ups from the product and survey answers from another form tool.

Every request is checked in this order, and the first failure returns a
4xx with a reason and changes nothing: body size (413), signature headers and
time window (401), content type (415), JSON body (422). A valid event is then
recorded once per event id: a replay of the same body answers 200 with
`"status": "duplicate"`, and the same id with another body answers 409.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, BackgroundTasks, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from leadflow.clock import now
from leadflow.settings import Settings
from leadflow.web.bodies import read_body
from leadflow.web.intake import (
    IntakeRejected,
    IntakeResult,
    SurveyResponseEvent,
    TrialSignupEvent,
    record_survey_event,
    record_trial_event,
)
from leadflow.web.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidSignature, verify_webhook
from models import WebhookEvent, session_scope
from tasks.email_address import mask_emails_in
from tasks.trials import SignupOutcome

logger = logging.getLogger("leadflow.web")
router = APIRouter(prefix="/webhooks", tags=["webhooks"])

WEBHOOK_MAX_BYTES = 64 * 1024
TRIAL_SIGNUP = "trial-signup"
SURVEY_RESPONSE = "survey-response"

EventModel = TypeVar("EventModel", bound=BaseModel)

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Recorded, or a duplicate of an event recorded before"},
    401: {"description": "Missing or wrong signature, or a timestamp outside the 5-minute window"},
    409: {"description": "The event id was used for another body, or the event conflicts with the lead's state"},
    413: {"description": "The body is larger than 64 KiB"},
    415: {"description": "The body is not application/json"},
    422: {"description": "The body is not a valid event"},
}


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@router.post(
    "/trial-signups", summary="Record a trial sign-up", responses=_RESPONSES,
    openapi_extra=_request_body(TrialSignupEvent),
)
async def receive_trial_signup(request: Request, background_tasks: BackgroundTasks) -> JSONResponse:
    settings: Settings = request.app.state.settings
    body, event = await _signed_event(request, TrialSignupEvent, settings)

    def record(session: Session, at: datetime) -> IntakeResult:
        return record_trial_event(event, session=session, settings=settings, at=at)

    response, result = await run_in_threadpool(_record_once, settings, TRIAL_SIGNUP, event.event_id, body, record)
    started = (SignupOutcome.STARTED.value, SignupOutcome.CREATED.value)
    if result is not None and result.outcome in started and result.survey_due_at is not None:
        background_tasks.add_task(schedule_survey_quietly, settings, result.survey_due_at)
    return response


@router.post(
    "/survey-responses", summary="Record survey answers collected by another form tool", responses=_RESPONSES,
    openapi_extra=_request_body(SurveyResponseEvent),
)
async def receive_survey_response(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    body, event = await _signed_event(request, SurveyResponseEvent, settings)

    def record(session: Session, at: datetime) -> IntakeResult:
        return record_survey_event(event, session=session, settings=settings, at=at)

    response, _ = await run_in_threadpool(_record_once, settings, SURVEY_RESPONSE, event.event_id, body, record)
    return response


async def _signed_event(request: Request, model: type[EventModel], settings: Settings) -> tuple[bytes, EventModel]:
    """Return the raw body and the event it holds; raise `HTTPException` for anything unsigned or invalid."""
    body = await read_body(request, max_bytes=WEBHOOK_MAX_BYTES)
    try:
        verify_webhook(
            body, timestamp=request.headers.get(TIMESTAMP_HEADER), signature=request.headers.get(SIGNATURE_HEADER),
            secret=settings.resolved_webhook_secret, now=now().timestamp(),
        )
    except InvalidSignature as exc:
        logger.warning("webhook %s rejected: %s", request.url.path, exc)
        raise HTTPException(status_code=401, detail=str(exc)) from exc

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(status_code=415, detail="the body must be application/json")
    try:
        return body, model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}" for error in exc.errors())
        raise HTTPException(status_code=422, detail=f"invalid {model.__name__}: {problems}") from exc


def _record_once(
    settings: Settings, kind: str, event_id: str, body: bytes, record: Callable[[Session, datetime], IntakeResult]
) -> tuple[JSONResponse, IntakeResult | None]:
    """Run `record` and store the event id in one transaction, unless the id was recorded before."""
    digest = hashlib.sha256(body).hexdigest()
    url = settings.resolved_database_url
    at = now()
    try:
        with session_scope(url) as session:
            earlier = session.exec(select(WebhookEvent).where(WebhookEvent.event_id == event_id)).first()
            if earlier is not None:
                return _duplicate(earlier, digest), None
            result = record(session, at)
            session.add(
                WebhookEvent(
                    event_id=event_id, kind=kind, body_sha256=digest, lead_id=result.lead_id,
                    outcome=result.outcome, received_at=at,
                )
            )
            session.flush()
    except IntakeRejected as exc:
        logger.info("webhook %s event %s rejected (%d): %s", kind, event_id, exc.status_code, mask_emails_in(exc.reason))
        return JSONResponse({"detail": exc.reason}, status_code=exc.status_code), None
    except IntegrityError:
        # Another request with the same event id, or for the same new lead, committed first.
        with session_scope(url) as session:
            earlier = session.exec(select(WebhookEvent).where(WebhookEvent.event_id == event_id)).first()
        if earlier is not None:
            return _duplicate(earlier, digest), None
        return JSONResponse({"detail": "a concurrent request changed the same lead; send the event again"}, 409), None

    logger.info("webhook %s event %s: %s, lead %d", kind, event_id, result.outcome, result.lead_id)
    content = {
        "event_id": event_id, "status": "recorded", "outcome": result.outcome, "lead_id": result.lead_id,
        "reason": result.reason,
    }
    return JSONResponse(content), result


def _duplicate(earlier: WebhookEvent, digest: str) -> JSONResponse:
    if earlier.body_sha256 != digest:
        detail = f"event id {earlier.event_id} was used before for another body; give every event its own id"
        return JSONResponse({"detail": detail}, status_code=409)
    content = {
        "event_id": earlier.event_id, "status": "duplicate", "outcome": earlier.outcome, "lead_id": earlier.lead_id,
        "reason": f"recorded before, at {earlier.received_at.isoformat()}",
    }
    return JSONResponse(content)


def schedule_survey_quietly(settings: Settings, due: datetime) -> None:
    """Schedule the survey run of a new sign-up, best effort: the hourly run and `leadflow serve` catch up."""
    from tasks.followup_schedule import schedule_on_available_server

    try:
        report = schedule_on_available_server([due], settings=settings, at=now())
    except Exception:  # noqa: BLE001 (the sign-up is stored; the run is scheduled later)
        logger.exception("scheduling the survey run due %s failed; `leadflow serve` schedules it", due.isoformat())
        return
    if report is None:
        logger.info("no Prefect server runs, so the survey run due %s is scheduled when `leadflow serve` starts", due.isoformat())
    elif report.error:
        logger.warning("survey run due %s not scheduled: %s", due.isoformat(), report.error)
