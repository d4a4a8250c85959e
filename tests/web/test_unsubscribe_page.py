"""The unsubscribe link: a confirmation page on GET, unsubscribing on POST and on the one-click POST."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlmodel import select

from leadflow.settings import Settings
from leadflow.tokens import sign_token
from models import Lead, session_scope
from tasks.audience import invite_conditions, lead_gets_survey, lead_is_invitable
from tasks.emails import unsubscribe_url
from tests.web.conftest import add_lead, load_lead, start_trial

ONE_CLICK_BODY = {"List-Unsubscribe": "One-Click"}


def unsubscribe_path(lead_id: int, settings: Settings) -> str:
    return unsubscribe_url(lead_id, settings).removeprefix(settings.public_url)


def test_get_changes_nothing(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")

    first = client.get(unsubscribe_path(lead_id, settings))
    second = client.get(unsubscribe_path(lead_id, settings))

    assert first.status_code == second.status_code == 200
    assert "Unsubscribe a***@example.com?" in first.text
    assert '<form method="post">' in first.text
    assert "ann@example.com" not in first.text
    assert load_lead(lead_id).unsubscribed_at is None


def test_post_from_the_page_unsubscribes(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")

    page = client.post(unsubscribe_path(lead_id, settings))

    assert page.status_code == 200
    assert "You are unsubscribed" in page.text
    assert load_lead(lead_id).unsubscribed_at is not None


def test_one_click_post_unsubscribes(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    other = add_lead("bob@example.com")

    urlencoded = client.post(unsubscribe_path(lead_id, settings), data=ONE_CLICK_BODY)
    multipart = client.post(unsubscribe_path(other, settings), files={"List-Unsubscribe": (None, "One-Click")})

    assert urlencoded.status_code == 200
    assert multipart.status_code == 200
    assert load_lead(lead_id).unsubscribed_at is not None
    assert load_lead(other).unsubscribed_at is not None


def test_second_unsubscribe_keeps_first_time(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    client.post(unsubscribe_path(lead_id, settings), data=ONE_CLICK_BODY)
    first_time = load_lead(lead_id).unsubscribed_at

    again = client.post(unsubscribe_path(lead_id, settings), data=ONE_CLICK_BODY)
    page = client.get(unsubscribe_path(lead_id, settings))

    assert again.status_code == 200
    assert load_lead(lead_id).unsubscribed_at == first_time
    assert "<form" not in page.text
    assert "was unsubscribed on" in page.text


def test_tampered_token_gets_400(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    path = unsubscribe_path(lead_id, settings)

    page = client.post(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"), data=ONE_CLICK_BODY)

    assert page.status_code == 400
    assert "signature does not match" in page.text
    assert load_lead(lead_id).unsubscribed_at is None


def test_token_cannot_unsubscribe_another_lead(client: TestClient, settings: Settings) -> None:
    ann = add_lead("ann@example.com")
    bob = add_lead("bob@example.com")
    forged = unsubscribe_path(ann, settings).replace(f".{ann}.", f".{bob}.")

    page = client.post(forged, data=ONE_CLICK_BODY)

    assert page.status_code == 400
    assert load_lead(bob).unsubscribed_at is None
    assert load_lead(ann).unsubscribed_at is None


def test_other_purpose_token_gets_400(client: TestClient, settings: Settings) -> None:
    lead_id = add_lead("ann@example.com")
    token = sign_token(key=settings.secret_key.get_secret_value(), purpose="trial", lead_id=lead_id)

    page = client.post(f"/unsubscribe/{token}", data=ONE_CLICK_BODY)

    assert page.status_code == 400
    assert load_lead(lead_id).unsubscribed_at is None


def test_deleted_lead_gets_404(client: TestClient, settings: Settings) -> None:
    token = sign_token(key=settings.secret_key.get_secret_value(), purpose="unsubscribe", lead_id=999)

    page = client.post(f"/unsubscribe/{token}", data=ONE_CLICK_BODY)

    assert page.status_code == 404


def test_unsubscribed_lead_leaves_every_audience(client: TestClient, settings: Settings) -> None:
    subscriber = add_lead("ann@example.com")
    in_trial = start_trial("bob@example.com")
    lead_ids = (subscriber, in_trial)

    for lead_id in lead_ids:
        client.post(unsubscribe_path(lead_id, settings), data=ONE_CLICK_BODY)

    with session_scope() as session:
        invitable = list(session.exec(select(Lead.id).where(*invite_conditions())))
    assert invitable == []
    assert not lead_is_invitable(load_lead(subscriber))
    bob = load_lead(in_trial)
    assert bob.trial_ends_at is not None
    assert not lead_gets_survey(bob, at=bob.trial_ends_at, offset_hours=48)
