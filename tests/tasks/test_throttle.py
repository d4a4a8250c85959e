"""The shared sending limits as Prefect global concurrency limits, on the Prefect test server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client

from leadflow.settings import Settings, get_settings
from tasks.throttle import CONNECTION_LIMIT_NAME, RATE_LIMIT_NAME, Pacer, configure_limits, group_size

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_group_size_bounds() -> None:
    assert group_size(0.5) == 1
    assert group_size(50) == 25
    assert group_size(10_000) == 100


@pytest.mark.no_database
def test_limits_are_created_from_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_SEND_RATE_PER_SECOND", "40")
    monkeypatch.setenv("LEADFLOW_SMTP_MAX_CONNECTIONS", "3")
    get_settings.cache_clear()

    configure_limits(get_settings())

    with get_client(sync_client=True) as client:
        rate = client.read_global_concurrency_limit_by_name(RATE_LIMIT_NAME)
        connections = client.read_global_concurrency_limit_by_name(CONNECTION_LIMIT_NAME)
    assert (rate.limit, rate.slot_decay_per_second) == (40, 40)
    assert connections.limit == 3


@pytest.mark.no_database
def test_pacer_spaces_messages(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_SEND_RATE_PER_SECOND", "20")
    get_settings.cache_clear()
    configure_limits(get_settings())
    pacer = Pacer(20)

    started = time.monotonic()
    for remaining in range(15, 0, -1):
        pacer.wait(remaining)
    elapsed = time.monotonic() - started

    # 15 messages at 20 per second: the last one may go 14/20 s after the first.
    assert elapsed >= 0.65


def test_unlimited_pacer_does_not_wait() -> None:
    pacer = Pacer(None)

    started = time.monotonic()
    for remaining in range(1000, 0, -1):
        pacer.wait(remaining)

    assert time.monotonic() - started < 0.5


def test_campaign_under_limits_sends_everything(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_server: object
) -> None:
    from flows.trial_invite import trial_invite
    from tests.conftest import SmtpServer
    from tests.flows.test_trial_invite import import_people

    assert isinstance(smtp_server, SmtpServer)
    monkeypatch.setenv("LEADFLOW_SMTP_URL", smtp_server.url)
    monkeypatch.setenv("LEADFLOW_SEND_RATE_PER_SECOND", "100")
    monkeypatch.setenv("LEADFLOW_SMTP_MAX_CONNECTIONS", "1")
    monkeypatch.setenv("LEADFLOW_BATCH_SIZE", "7")
    get_settings.cache_clear()
    import_people(tmp_path, 20)

    summary = trial_invite(name="spring")

    assert summary.this_run.sent == 20
    assert len(smtp_server.handler.messages) == 20
