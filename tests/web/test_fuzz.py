"""Property-based runs: no generated request may get a 5xx from the app.

The example counts are bounded so the whole file runs in seconds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from leadflow.settings import Settings
from leadflow.web.signatures import sign_webhook
from tasks.emails import survey_url
from tests.web.conftest import load_lead, start_trial

EXAMPLES = hypothesis_settings(
    max_examples=40, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(st.none(), st.text(max_size=60), st.integers(), st.floats(allow_nan=False), st.booleans())


def test_schema_operations_never_answer_5xx(app: FastAPI, settings: Settings) -> None:
    start_trial("ann@example.com")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} == {
        "/survey/{token}", "/unsubscribe/{token}", "/trial", "/webhooks/trial-signups", "/webhooks/survey-responses",
    }

    statuses: set[int] = set()
    for operation in operations:

        @EXAMPLES
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            response = case.call()
            statuses.add(response.status_code)
            case.validate_response(response, checks=[not_a_server_error])

        check()

    # Random tokens are invalid links (400), and unsigned webhooks are rejected (401).
    assert {400, 401} <= statuses


def test_signed_webhook_bodies_never_answer_5xx(client: TestClient, settings: Settings) -> None:
    start_trial("ann@example.com")
    events = st.fixed_dictionaries(
        {"event_id": st.text(max_size=20) | st.just("e-1")},
        optional={
            "email": FIELD_VALUES | st.just("ann@example.com") | st.just("new@example.com"),
            "ref": FIELD_VALUES,
            "token": FIELD_VALUES,
            "started_at": FIELD_VALUES | st.just("2026-03-02T15:00:00Z"),
            "days": FIELD_VALUES | st.integers(min_value=-3, max_value=400),
            "answers": st.dictionaries(st.sampled_from(["budget", "need", "x"]), FIELD_VALUES, max_size=3),
            "fit": FIELD_VALUES | st.sampled_from(["great", "poor"]),
            "pain_points": FIELD_VALUES,
            "submitted_at": FIELD_VALUES,
        },
    )

    @EXAMPLES
    @given(path=st.sampled_from(["/webhooks/trial-signups", "/webhooks/survey-responses"]), payload=events | JSON_VALUES)
    def check(path: str, payload: object) -> None:
        body = json.dumps(payload).encode()
        sent_at = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Leadflow-Timestamp": str(sent_at),
            "X-Leadflow-Signature": sign_webhook(body, secret=settings.resolved_webhook_secret, timestamp=sent_at),
        }
        response = client.post(path, content=body, headers=headers)
        assert response.status_code < 500, response.text

    check()


def test_survey_form_bodies_never_answer_5xx(client: TestClient, settings: Settings) -> None:
    lead_id = start_trial("ann@example.com")
    lead = load_lead(lead_id)
    assert lead.trial_ends_at is not None
    path = survey_url(lead_id, lead.trial_ends_at, settings).removeprefix(settings.public_url)
    names = st.sampled_from(["fit", "pain_points", "answer_budget", "answer_need", "answer_timing", "other"]) | st.text(max_size=10)

    @EXAMPLES
    @given(form=st.dictionaries(names, st.text(max_size=80), max_size=8), raw=st.binary(max_size=200))
    def check(form: dict[str, str], raw: bytes) -> None:
        as_form = client.post(path, data=form)
        as_bytes = client.post(path, content=raw, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert as_form.status_code < 500, as_form.text
        assert as_bytes.status_code < 500, as_bytes.text

    check()
