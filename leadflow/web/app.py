"""The web app's factory: routers, page templates, security headers and one log line per request."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadflow.settings import Settings
from leadflow.tokens import ExpiredToken, InvalidToken
from leadflow.web.rendering import page_environment, render_message
from leadflow.web.survey_form import form_schema
from tasks.scoring import Rules, load_rules

logger = logging.getLogger("leadflow.web")

# Pages may use inline styles and nothing else: no scripts, no external assets, no framing.
# The form posts back to the page's own URL.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # The token in a page's URL acts for its lead, so no Referer may carry it elsewhere.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# Tokens in paths act for a lead, so request log lines show this instead.
_TOKEN_IN_PATH = re.compile(r"^/(survey|unsubscribe)/[^/]+")


def create_app(settings: Settings) -> FastAPI:
    """Build the app for `settings`: the survey and unsubscribe pages and the intake webhooks."""
    from leadflow.web.pages import router as pages_router
    from leadflow.web.trial import router as trial_router
    from leadflow.web.webhooks import router as webhooks_router

    app = FastAPI(
        title="leadflow web",
        summary="Survey and unsubscribe pages behind the links in leadflow's emails, and signed intake webhooks.",
        version="1",
        # The interactive docs load scripts from a CDN, which the pages' policy forbids.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.page_environment = page_environment(settings.templates_dir)
    app.include_router(pages_router)
    app.include_router(trial_router)
    app.include_router(webhooks_router)
    _describe_survey_form(app, load_rules(settings.rules_file))
    app.add_exception_handler(InvalidToken, _invalid_link)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.middleware("http")(_log_and_secure)
    return app


def _describe_survey_form(app: FastAPI, rules: Rules) -> None:
    """Put the form fields of the active rules into the OpenAPI schema of the survey's POST.

    The route reads the form itself, so FastAPI cannot derive these fields.
    """
    from leadflow.web.pages import SURVEY_PATH

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema["paths"][SURVEY_PATH]["post"]["requestBody"] = form_schema(rules)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


async def _log_and_secure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    started = time.perf_counter()
    response = await call_next(request)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    path = _TOKEN_IN_PATH.sub(r"/\1/<token>", request.url.path)
    elapsed_ms = (time.perf_counter() - started) * 1000
    logger.info("%s %s %d %.0f ms", request.method, path, response.status_code, elapsed_ms)
    return response


async def _invalid_link(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ExpiredToken):
        return render_message(
            request, title="This link has expired", status_code=400,
            message="The link in your email works for a limited time, and that time has passed. Nothing was changed.",
        )
    return render_message(
        request, title="This link does not work", status_code=400,
        message=f"{str(exc).capitalize()}. Nothing was changed.",
        detail="Copy the whole link from the email, or click it again.",
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if request.url.path.startswith("/webhooks/"):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    response = render_message(request, title="Page not available", message=str(exc.detail), status_code=exc.status_code)
    response.headers.update(exc.headers or {})
    return response
