"""The survey page behind the survey email's link: the form, storing answers, and bad links."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlmodel import select

from leadflow.clock import now
from leadflow.settings import Settings, get_settings
from leadflow.tokens import sign_token
from leadflow.web import create_app
from models import Stage, StageChange, SurveyResponse, session_scope
from tasks.emails import survey_url
from tasks.scoring import load_rules
from tests.web.conftest import add_lead, load_lead, start_trial

COMPLETE_FORM = {
    "fit": "great",
    "answer_budget": "approved",
    "answer_authority": "me",
    "answer_need": "critical",
    "answer_timing": "quarter",
    "pain_points": "Reports  take\n a day",
}


def survey_path(lead_id: int, settings: Settings) -> str:
    lead = load_lead(lead_id)
    assert lead.trial_ends_at is not None
    return survey_url(lead_id, lead.trial_ends_at, settings).removeprefix(settings.public_url)


def stored_response(lead_id: int) -> SurveyResponse | None:
    with session_scope() as session:
        return session.exec(select(SurveyResponse).where(SurveyResponse.lead_id == lead_id)).first()


def test_form_asks_every_rules_question(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")

    page = client.get(survey_path(lead_id, settings))

    assert page.status_code == 200
    for criterion in load_rules(settings.rules_file).criteria:
        assert str(escape(criterion.question)) in page.text
        for option in criterion.options:
            assert f'name="answer_{criterion.key}" value="{option.value}"' in page.text
    assert 'name="fit" value="great"' in page.text
    assert 'name="pain_points"' in page.text


def test_form_follows_another_rules_file(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    champ = Path(__file__).resolve().parents[2] / "rules" / "champ.toml"
    monkeypatch.setenv("LEADFLOW_RULES_FILE", str(champ))
    get_settings.cache_clear()
    current = get_settings()
    lead_id = start_trial("ann@example.com")

    with TestClient(create_app(current), base_url="http://127.0.0.1:8000") as client:
        page = client.get(survey_path(lead_id, current))

    rules = load_rules(champ)
    assert rules.framework == "CHAMP"
    for criterion in rules.criteria:
        assert str(escape(criterion.question)) in page.text
        assert f'name="answer_{criterion.key}"' in page.text
    assert 'name="answer_timing"' not in page.text


def test_submit_stores_answers_and_moves_to_sal(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")

    page = client.post(survey_path(lead_id, settings), data=COMPLETE_FORM)

    assert page.status_code == 200
    assert "Thank you" in page.text
    assert load_lead(lead_id).stage == Stage.SAL
    response = stored_response(lead_id)
    assert response is not None
    assert response.answers == {"budget": "approved", "authority": "me", "need": "critical", "timing": "quarter"}
    assert response.fit == "great"
    assert response.pain_points == "Reports take a day"
    assert response.source == "web survey page"
    with session_scope() as session:
        changes = list(session.exec(select(StageChange).where(StageChange.lead_id == lead_id)))
    assert (changes[-1].from_stage, changes[-1].to_stage) == (Stage.MQL, Stage.SAL)
    assert changes[-1].actor == "web:survey"


def test_second_submission_replaces_answers(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")
    path = survey_path(lead_id, settings)
    client.post(path, data=COMPLETE_FORM)

    again = client.get(path)
    second = client.post(path, data={**COMPLETE_FORM, "answer_budget": "none", "fit": "poor"})

    assert "You answered this survey before" in again.text
    assert 'value="approved" required checked' in again.text
    assert second.status_code == 200
    assert "replace the earlier ones" in second.text
    response = stored_response(lead_id)
    assert response is not None
    assert response.answers["budget"] == "none"
    assert response.fit == "poor"
    with session_scope() as session:
        to_sal = session.exec(select(StageChange).where(StageChange.lead_id == lead_id, StageChange.to_stage == "sal"))
        assert len(list(to_sal)) == 1


def test_submission_after_review_is_rejected(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")
    path = survey_path(lead_id, settings)
    client.post(path, data=COMPLETE_FORM)
    with session_scope() as session:
        from tasks.stages import record_stage_change

        lead = load_lead(lead_id)
        session.add(lead)
        record_stage_change(lead, Stage.SQL, session=session, reason="review", actor="tester")

    page = client.get(path)
    late = client.post(path, data={**COMPLETE_FORM, "answer_budget": "none"})

    assert "already with our team" in page.text
    assert "<form" not in page.text
    assert late.status_code == 409
    response = stored_response(lead_id)
    assert response is not None
    assert response.answers["budget"] == "approved"


def test_missing_answers_show_the_form_again(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")
    partial = {key: value for key, value in COMPLETE_FORM.items() if key != "answer_timing"}

    page = client.post(survey_path(lead_id, settings), data={**partial, "answer_need": "forged"})

    assert page.status_code == 422
    assert "When would you want a solution in place?" in page.text
    assert "Nothing was stored yet" in page.text
    assert 'value="approved" required checked' in page.text
    assert stored_response(lead_id) is None
    assert load_lead(lead_id).stage == Stage.MQL


def test_expired_link_changes_nothing(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com", started_at=now() - timedelta(days=30))

    page = client.post(survey_path(lead_id, settings), data=COMPLETE_FORM)

    assert page.status_code == 400
    assert "This link has expired" in page.text
    assert load_lead(lead_id).stage == Stage.MQL
    assert stored_response(lead_id) is None


def test_tampered_link_changes_nothing(client: TestClient, settings: Settings) -> None:
    ann = start_trial("ann@example.com")
    bob = start_trial("bob@example.com")
    path = survey_path(ann, settings)
    forged = path.replace(f".{ann}.", f".{bob}.")

    page = client.post(forged, data=COMPLETE_FORM)

    assert page.status_code == 400
    assert "does not work" in page.text
    assert load_lead(bob).stage == Stage.MQL
    assert stored_response(bob) is None


def test_unsubscribe_token_opens_no_survey(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")
    token = sign_token(key=settings.secret_key.get_secret_value(), purpose="unsubscribe", lead_id=lead_id)

    page = client.post(f"/survey/{token}", data=COMPLETE_FORM)

    assert page.status_code == 400
    assert stored_response(lead_id) is None


def test_survey_closed_before_trial(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    token = sign_token(key=settings.secret_key.get_secret_value(), purpose="survey", lead_id=lead_id)

    page = client.post(f"/survey/{token}", data=COMPLETE_FORM)

    assert page.status_code == 409
    assert "only during a free trial" in page.text
    assert load_lead(lead_id).stage == Stage.SUBSCRIBER


def test_non_form_body_gets_415(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")

    page = client.post(survey_path(lead_id, settings), json=COMPLETE_FORM)

    assert page.status_code == 415
    assert stored_response(lead_id) is None


def test_oversized_form_gets_413(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")

    page = client.post(survey_path(lead_id, settings), data={**COMPLETE_FORM, "pain_points": "x" * 70_000})

    assert page.status_code == 413
    assert stored_response(lead_id) is None


def test_page_escapes_lead_names(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com", first_name="<script>alert(1)</script>")
    start_trial("ann@example.com")

    page = client.get(survey_path(lead_id, settings))

    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_pages_load_nothing_external(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")

    page = client.get(survey_path(lead_id, settings))

    assert re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text) is None
    assert "<script" not in page.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src" not in policy
    assert page.headers["referrer-policy"] == "no-referrer"


def test_logs_mask_tokens_and_addresses(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    lead_id = start_trial("ann.secret@example.com")
    path = survey_path(lead_id, settings)
    token = path.rsplit("/", 1)[1]

    with caplog.at_level(logging.INFO, logger="leadflow.web"):
        client.get(path)
        client.post(path, data=COMPLETE_FORM)

    assert "POST /survey/<token> 200" in caplog.text
    assert token not in caplog.text
    assert "ann.secret" not in caplog.text
