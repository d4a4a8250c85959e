"""Fixtures for the web app: an in-process client, and a real uvicorn server on a loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from leadflow.clock import now
from leadflow.settings import Settings, get_settings
from leadflow.web import create_app
from models import Lead, session_scope
from tasks.trials import record_trial_signup
from tests.conftest import free_port

@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)

@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # The base URL is the default public URL, so the test client never names another host.
    with TestClient(app, base_url="http://127.0.0.1:8000", follow_redirects=False) as test_client:
        yield test_client

def add_lead(email: str, *, first_name: str | None = None) -> int:
    """Store a subscriber and return its id."""
    with session_scope() as session:
        lead = Lead(email=email, first_name=first_name)
        session.add(lead)
        session.flush()
        assert lead.id is not None
        return lead.id

def start_trial(email: str, *, started_at: datetime | None = None, days: int = 7) -> int:
    """Record a trial sign-up (the lead becomes an MQL) and return the lead id."""
    with session_scope() as session:
        result = record_trial_signup(
            email, session=session, started_at=started_at or now() - timedelta(days=5), days=days,
            source="test", actor="tester", offset_hours=48,
        )
    return result.lead_id

def load_lead(lead_id: int) -> Lead:
    with session_scope() as session:
        lead = session.get(Lead, lead_id)
    assert lead is not None
    return lead

@dataclass
class LiveServer:
    url: str
    settings: Settings

@pytest.fixture
def live_server(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    """The app under uvicorn in a thread on a free 127.0.0.1 port, which LEADFLOW_PUBLIC_URL names."""
    port = free_port()
    monkeypatch.setenv("LEADFLOW_PUBLIC_URL", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    current = get_settings()
    config = uvicorn.Config(
        create_app(current), host="127.0.0.1", port=port, access_log=False, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="leadflow-web-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield LiveServer(url=f"http://127.0.0.1:{port}", settings=current)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
