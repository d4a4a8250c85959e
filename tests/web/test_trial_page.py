"""The stand-in trial sign-up page behind the invite's trial link."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient

from leadflow.settings import Settings
from models import Stage
from tasks.emails import trial_url
from tests.web.conftest import add_lead, load_lead


def ref_for(lead_id: int, settings: Settings) -> str:
    return parse_qs(urlsplit(trial_url(lead_id, "spring", settings)).query)["ref"][0]


def test_get_changes_nothing(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")

    response = client.get("/trial", params={"ref": ref_for(lead_id, settings), "utm_campaign": "spring"})

    assert response.status_code == 200
    assert "Start your free 7-day trial" in response.text
    assert "ann@example.com" not in response.text
    assert load_lead(lead_id).stage == Stage.SUBSCRIBER


def test_post_starts_the_trial(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")

    response = client.post("/trial", params={"ref": ref_for(lead_id, settings)})
    again = client.get("/trial", params={"ref": ref_for(lead_id, settings)})

    lead = load_lead(lead_id)
    assert response.status_code == 200
    assert "Your free trial has started" in response.text
    assert lead.stage == Stage.MQL
    assert lead.trial_started_at is not None
    assert "Your trial is running" in again.text


def test_tampered_ref_changes_nothing(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    other_id = add_lead("bob@example.com")
    forged = ref_for(lead_id, settings).replace(f".{lead_id}.", f".{other_id}.")

    response = client.post("/trial", params={"ref": forged})

    assert response.status_code == 400
    assert load_lead(other_id).stage == Stage.SUBSCRIBER
    assert load_lead(lead_id).stage == Stage.SUBSCRIBER


def test_customer_gets_no_trial(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    from models import Lead, session_scope

    with session_scope() as session:
        lead = session.get(Lead, lead_id)
        assert lead is not None
        lead.is_customer = True
        lead.stage = Stage.CUSTOMER.value
        session.add(lead)

    response = client.post("/trial", params={"ref": ref_for(lead_id, settings)})

    assert response.status_code == 409
    assert load_lead(lead_id).trial_started_at is None
