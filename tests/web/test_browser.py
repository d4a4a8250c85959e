"""The survey in a real browser: Debian's headless Chromium, driven by Playwright, on a link from a sent email.

Skipped when /usr/bin/chromium is absent, unless LEADFLOW_REQUIRE_BROWSER=1 (as in CI) makes that a failure.
"""

from __future__ import annotations

import email
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from email import policy
from pathlib import Path

import pytest
from sqlmodel import select

from flows.survey_followup import survey_followup
from leadflow.clock import now
from leadflow.settings import PROJECT_ROOT, get_settings
from models import Stage, StageChange, SurveyResponse, session_scope
from tests.conftest import SmtpServer
from tests.web.conftest import LiveServer, load_lead, start_trial

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = PROJECT_ROOT / ".leadflow" / "test-artifacts"


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is absent; install it with: apt-get install -y chromium"
        if os.environ.get("LEADFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LEADFLOW_REQUIRE_BROWSER=1 but {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sent_survey_link(smtp_server: SmtpServer, public_url: str) -> str:
    assert len(smtp_server.handler.messages) == 1
    message = email.message_from_bytes(smtp_server.handler.messages[0], policy=policy.default)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    found = re.search(re.escape(public_url) + r"/survey/[A-Za-z0-9._-]+", text.get_content())
    assert found is not None, "the survey email has no survey link"
    return found.group(0)


@pytest.mark.usefixtures("prefect_server")
def test_survey_in_chromium_from_sent_email(
    browser: object, live_server: LiveServer, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from playwright.sync_api import Browser

    assert isinstance(browser, Browser)
    monkeypatch.setenv("LEADFLOW_SMTP_URL", smtp_server.url)
    get_settings.cache_clear()
    lead_id = start_trial("ann@example.com", started_at=now() - timedelta(days=6))
    summary = survey_followup(now=now())
    assert summary.this_run.sent == 1
    link = sent_survey_link(smtp_server, live_server.url)

    page = browser.new_page(viewport={"width": 390, "height": 844})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(link)
    assert page.locator("h1").inner_text().startswith("How was your")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "survey-form.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot of the survey form: {screenshot}")

    page.get_by_label("It covers part of what we need").check()
    page.get_by_label("It is planned, not yet approved").check()
    page.get_by_label("I decide").check()
    page.get_by_label("Critical: it costs us every week").check()
    page.get_by_label("This quarter").check()
    page.locator("textarea[name=pain_points]").fill("Month-end reports take two days")
    page.get_by_role("button", name="Send my answers").click()
    page.wait_for_load_state()

    assert page.locator("h1").inner_text() == "Thank you"
    assert all(url.startswith(live_server.url) for url in requested), requested
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert screenshot.stat().st_size > 0
    assert load_lead(lead_id).stage == Stage.SAL
    with session_scope() as session:
        response = session.exec(select(SurveyResponse).where(SurveyResponse.lead_id == lead_id)).one()
        change = session.exec(select(StageChange).where(StageChange.lead_id == lead_id, StageChange.to_stage == "sal")).one()
    assert response.answers == {"budget": "planned", "authority": "me", "need": "critical", "timing": "quarter"}
    assert response.fit == "partial"
    assert response.pain_points == "Month-end reports take two days"
    assert change.from_stage == Stage.MQL
