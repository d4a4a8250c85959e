"""The signed intake webhooks: signatures, the time window, deduplication, and the recorded effects."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from leadflow.clock import now
from leadflow.settings import Settings, get_settings
from leadflow.tokens import sign_token
from leadflow.web import create_app
from leadflow.web.signatures import sign_webhook
from models import Lead, Stage, StageChange, SurveyResponse, WebhookEvent, session_scope
from tests.web.conftest import add_lead, load_lead, start_trial

TRIALS = "/webhooks/trial-signups"
SURVEYS = "/webhooks/survey-responses"


def post_signed(
    client: TestClient, path: str, body: bytes, settings: Settings, *, timestamp: int | None = None,
    content_type: str = "application/json",
) -> httpx.Response:
    sent_at = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": content_type,
        "X-Leadflow-Timestamp": str(sent_at),
        "X-Leadflow-Signature": sign_webhook(body, secret=settings.resolved_webhook_secret, timestamp=sent_at),
    }
    return client.post(path, content=body, headers=headers)


def signup_body(event_id: str = "evt-1", email: str = "ann@example.com", **extra: object) -> bytes:
    return json.dumps({"event_id": event_id, "email": email, **extra}).encode()


def count(model: type, *conditions: object) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(model).where(*conditions)).one()  # type: ignore[arg-type]


def lead_by_email(email: str) -> Lead | None:
    with session_scope() as session:
        return session.exec(select(Lead).where(Lead.email == email)).first()


class TestTrialSignups:
    def test_signed_signup_is_recorded(self, client: TestClient, settings: Settings) -> None:
        lead_id = add_lead("ann@example.com")

        response = post_signed(client, TRIALS, signup_body(days=10), settings)

        assert response.status_code == 200
        assert response.json() == {
            "event_id": "evt-1", "status": "recorded", "outcome": "started", "lead_id": lead_id, "reason": "",
        }
        lead = load_lead(lead_id)
        assert lead.stage == Stage.MQL
        assert lead.trial_started_at is not None
        assert lead.trial_ends_at == lead.trial_started_at + timedelta(days=10)

    def test_five_replays_record_once(self, client: TestClient, settings: Settings) -> None:
        body = signup_body()
        started = int(time.time())

        responses = [post_signed(client, TRIALS, body, settings, timestamp=started + 10 * i) for i in range(6)]

        assert [r.status_code for r in responses] == [200] * 6
        assert responses[0].json()["status"] == "recorded"
        assert [r.json()["status"] for r in responses[1:]] == ["duplicate"] * 5
        assert count(WebhookEvent) == 1
        assert count(Lead) == 1
        assert count(StageChange, StageChange.to_stage == Stage.MQL) == 1

    def test_unusual_spacing_and_float_numbers_accepted(self, client: TestClient, settings: Settings) -> None:
        body = b'{ "event_id" :"evt-2",\n\t"email":   "Ann@Example.com" ,  "days" : 7.0 ,"started_at":"2026-03-02T15:00:00.0+01:00"  }'

        response = post_signed(client, TRIALS, body, settings)

        assert response.status_code == 200, response.text
        lead = lead_by_email("ann@example.com")
        assert lead is not None
        assert lead.trial_ends_at is not None
        assert lead.trial_started_at is not None
        assert (lead.trial_ends_at - lead.trial_started_at) == timedelta(days=7)
        assert lead.trial_started_at.isoformat() == "2026-03-02T14:00:00+00:00"

    def test_body_changed_by_one_byte_is_rejected(self, client: TestClient, settings: Settings) -> None:
        body = signup_body(days=7)
        sent_at = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Leadflow-Timestamp": str(sent_at),
            "X-Leadflow-Signature": sign_webhook(body, secret=settings.resolved_webhook_secret, timestamp=sent_at),
        }

        response = client.post(TRIALS, content=body.replace(b"7", b"8"), headers=headers)

        assert response.status_code == 401
        assert "does not match" in response.json()["detail"]
        assert count(Lead) == 0
        assert count(WebhookEvent) == 0

    def test_replay_after_ten_minutes_is_rejected(self, client: TestClient, settings: Settings) -> None:
        response = post_signed(client, TRIALS, signup_body(), settings, timestamp=int(time.time()) - 600)

        assert response.status_code == 401
        assert "5-minute window" in response.json()["detail"]
        assert count(Lead) == 0

    def test_timestamp_from_the_future_is_rejected(self, client: TestClient, settings: Settings) -> None:
        response = post_signed(client, TRIALS, signup_body(), settings, timestamp=int(time.time()) + 600)

        assert response.status_code == 401
        assert count(Lead) == 0

    @pytest.mark.parametrize(
        ("headers", "reason"),
        [
            ({}, "headers are required"),
            ({"X-Leadflow-Timestamp": "soon", "X-Leadflow-Signature": "v1=" + "0" * 64}, "Unix time"),
            ({"X-Leadflow-Timestamp": "NOW", "X-Leadflow-Signature": "sha256=abc"}, "v1=<64"),
        ],
    )
    def test_bad_signature_headers_are_rejected(
        self, client: TestClient, settings: Settings, headers: dict[str, str], reason: str
    ) -> None:
        if headers.get("X-Leadflow-Timestamp") == "NOW":
            headers = {**headers, "X-Leadflow-Timestamp": str(int(time.time()))}

        response = client.post(TRIALS, content=signup_body(), headers={"Content-Type": "application/json", **headers})

        assert response.status_code == 401
        assert reason in response.json()["detail"]
        assert count(Lead) == 0

    @pytest.mark.no_database
    def test_other_secret_is_rejected(self, client: TestClient, settings: Settings) -> None:
        body = signup_body()
        sent_at = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Leadflow-Timestamp": str(sent_at),
            "X-Leadflow-Signature": sign_webhook(body, secret="another-secret", timestamp=sent_at),
        }

        assert client.post(TRIALS, content=body, headers=headers).status_code == 401

    def test_separate_webhook_secret_is_used(self, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LEADFLOW_WEBHOOK_SECRET", "w" * 40)
        get_settings.cache_clear()
        current = get_settings()
        body = signup_body()

        with TestClient(create_app(current), base_url="http://127.0.0.1:8000") as client:
            with_link_key = post_signed(client, TRIALS, body, settings)
            with_webhook_key = post_signed(client, TRIALS, body, current)

        assert with_link_key.status_code == 401
        assert with_webhook_key.status_code == 200

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b"not json", "invalid TrialSignupEvent"),
            (b"[1, 2]", "invalid TrialSignupEvent"),
            (b'{"event_id": "evt-1"}', "give the lead's email"),
            (b'{"event_id": "evt 1", "email": "ann@example.com"}', "event_id"),
            (b'{"event_id": "evt-1", "email": "ann@example.com", "days": 7.5}', "days"),
            (b'{"event_id": "evt-1", "email": "ann@example.com", "days": 0}', "days"),
            (b'{"event_id": "evt-1", "email": "ann@example.com", "started_at": "2026-03-02T15:00:00"}', "started_at"),
            (b'{"event_id": "evt-1", "email": "ann@example.com", "plan": "pro"}', "plan"),
            (b'{"event_id": "evt-1", "email": "not an address"}', "spaces"),
        ],
    )
    def test_invalid_bodies_get_4xx_and_change_nothing(
        self, client: TestClient, settings: Settings, body: bytes, reason: str
    ) -> None:
        response = post_signed(client, TRIALS, body, settings)

        assert response.status_code == 422
        assert reason in response.json()["detail"]
        assert count(Lead) == 0
        assert count(WebhookEvent) == 0

    def test_future_start_is_rejected(self, client: TestClient, settings: Settings) -> None:
        later = (now() + timedelta(hours=1)).isoformat()

        response = post_signed(client, TRIALS, signup_body(started_at=later), settings)

        assert response.status_code == 422
        assert "in the future" in response.json()["detail"]

    def test_wrong_content_type_gets_415(self, client: TestClient, settings: Settings) -> None:
        response = post_signed(client, TRIALS, signup_body(), settings, content_type="text/plain")

        assert response.status_code == 415
        assert count(Lead) == 0

    @pytest.mark.no_database
    def test_oversized_body_gets_413(self, client: TestClient, settings: Settings) -> None:
        response = post_signed(client, TRIALS, signup_body(padding="x" * 70_000), settings)

        assert response.status_code == 413

    def test_reused_event_id_with_other_body_gets_409(self, client: TestClient, settings: Settings) -> None:
        post_signed(client, TRIALS, signup_body(), settings)

        response = post_signed(client, TRIALS, signup_body(email="bob@example.com"), settings)

        assert response.status_code == 409
        assert "another body" in response.json()["detail"]
        assert lead_by_email("bob@example.com") is None

    def test_ref_token_names_the_lead(self, client: TestClient, settings: Settings) -> None:
        lead_id = add_lead("ann@example.com")
        ref = sign_token(key=settings.secret_key.get_secret_value(), purpose="trial", lead_id=lead_id)

        response = post_signed(client, TRIALS, json.dumps({"event_id": "evt-1", "ref": ref}).encode(), settings)

        assert response.status_code == 200
        assert load_lead(lead_id).stage == Stage.MQL

    def test_ref_for_another_lead_is_rejected(self, client: TestClient, settings: Settings) -> None:
        ann = add_lead("ann@example.com")
        bob = add_lead("bob@example.com")
        ref = sign_token(key=settings.secret_key.get_secret_value(), purpose="trial", lead_id=ann)
        forged = ref.replace(f".{ann}.", f".{bob}.")

        mismatch = post_signed(client, TRIALS, signup_body(email="bob@example.com", ref=ref), settings)
        tampered = post_signed(client, TRIALS, json.dumps({"event_id": "evt-2", "ref": forged}).encode(), settings)

        assert mismatch.status_code == 422
        assert "different leads" in mismatch.json()["detail"]
        assert tampered.status_code == 422
        assert load_lead(ann).stage == load_lead(bob).stage == Stage.SUBSCRIBER

    def test_unsubscribed_lead_is_ignored(self, client: TestClient, settings: Settings) -> None:
        lead_id = add_lead("ann@example.com")
        with session_scope() as session:
            lead = load_lead(lead_id)
            lead.unsubscribed_at = now()
            session.add(lead)

        response = post_signed(client, TRIALS, signup_body(), settings)

        assert response.status_code == 200
        assert response.json()["outcome"] == "ignored"
        assert response.json()["reason"] == "unsubscribed"
        assert load_lead(lead_id).stage == Stage.SUBSCRIBER

    def test_signup_works_without_prefect_server(self, client: TestClient, settings: Settings) -> None:
        # No Prefect server runs in this test; scheduling the survey run is skipped and logged.
        response = post_signed(client, TRIALS, signup_body(email="new@example.com"), settings)

        assert response.status_code == 200
        assert response.json()["outcome"] == "created"


class TestSurveyResponses:
    ANSWERS = {"budget": "planned", "authority": "recommend", "need": "important", "timing": "year"}

    def test_answers_by_email_move_lead_to_sal(self, client: TestClient, settings: Settings) -> None:
        lead_id = start_trial("ann@example.com")
        body = json.dumps(
            {"event_id": "form-1", "email": "ann@example.com", "answers": self.ANSWERS, "fit": "partial",
             "pain_points": "slow reports"}
        ).encode()

        responses = [post_signed(client, SURVEYS, body, settings) for _ in range(3)]

        assert [r.json()["status"] for r in responses] == ["recorded", "duplicate", "duplicate"]
        assert load_lead(lead_id).stage == Stage.SAL
        with session_scope() as session:
            stored = session.exec(select(SurveyResponse)).one()
        assert stored.answers == self.ANSWERS
        assert stored.source == "webhook event form-1"

    def test_answers_by_survey_token(self, client: TestClient, settings: Settings) -> None:
        lead_id = start_trial("ann@example.com")
        token = sign_token(key=settings.secret_key.get_secret_value(), purpose="survey", lead_id=lead_id)
        body = json.dumps({"event_id": "form-1", "token": token, "answers": self.ANSWERS}).encode()

        response = post_signed(client, SURVEYS, body, settings)

        assert response.status_code == 200
        assert response.json()["outcome"] == "recorded"

    def test_unknown_option_is_rejected(self, client: TestClient, settings: Settings) -> None:
        start_trial("ann@example.com")
        body = json.dumps({"event_id": "f", "email": "ann@example.com", "answers": {"budget": "lots"}}).encode()

        response = post_signed(client, SURVEYS, body, settings)

        assert response.status_code == 422
        assert "'lots' is not an answer to 'budget'" in response.json()["detail"]
        assert count(SurveyResponse) == 0
        assert count(WebhookEvent) == 0

    def test_reviewed_lead_gets_409(self, client: TestClient, settings: Settings) -> None:
        lead_id = add_lead("ann@example.com")
        body = json.dumps({"event_id": "f", "email": "ann@example.com", "answers": self.ANSWERS}).encode()

        response = post_signed(client, SURVEYS, body, settings)

        assert response.status_code == 409
        assert "not in a trial" in response.json()["detail"]
        assert load_lead(lead_id).stage == Stage.SUBSCRIBER
        assert count(WebhookEvent) == 0

    def test_unknown_address_is_rejected(self, client: TestClient, settings: Settings) -> None:
        body = json.dumps({"event_id": "f", "email": "nobody@example.com", "answers": self.ANSWERS}).encode()

        response = post_signed(client, SURVEYS, body, settings)

        assert response.status_code == 422
        assert count(Lead) == 0


def test_rejection_logs_mask_addresses(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    with caplog.at_level(logging.INFO, logger="leadflow.web"):
        response = post_signed(client, TRIALS, signup_body(email="ann..smith@example.com"), settings)

    assert response.status_code == 422
    assert "ann..smith@example.com" in response.json()["detail"]
    assert "rejected (422)" in caplog.text
    assert "ann..smith" not in caplog.text
