"""Settings defaults and the production checks."""

from __future__ import annotations

import os

import pytest

from leadflow.errors import ConfigurationError
from leadflow.settings import Settings, apply_prefect_privacy_defaults, get_settings

# These tests parse settings only; none opens the database.
pytestmark = pytest.mark.no_database


def test_defaults_point_into_the_data_folder(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_DATABASE_URL")
    monkeypatch.delenv("LEADFLOW_OUTBOX_DIR")

    default = Settings(_env_file=None, data_dir=settings.data_dir)  # type: ignore[call-arg]

    assert default.resolved_database_url == f"sqlite:///{settings.data_dir / 'leadflow.db'}"
    assert default.resolved_outbox_dir == settings.data_dir / "outbox"
    assert default.resolved_trial_url == "http://127.0.0.1:8000/trial"
    assert default.smtp_url is None


def test_production_rejects_placeholders(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_ENVIRONMENT", "production")
    get_settings.cache_clear()

    with pytest.raises(ConfigurationError) as caught:
        get_settings()

    message = str(caught.value)
    assert "LEADFLOW_SECRET_KEY" in message
    assert "LEADFLOW_SENDER_POSTAL_ADDRESS" in message
    assert "LEADFLOW_SENDER_ADDRESS" in message


def test_production_accepts_real_values(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("LEADFLOW_SENDER_ADDRESS", "news@leadflow.test")
    monkeypatch.setenv("LEADFLOW_SENDER_POSTAL_ADDRESS", "Leadflow Ltd, 2 Real Road, Leeds")
    get_settings.cache_clear()

    assert get_settings().environment == "production"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LEADFLOW_PUBLIC_URL", "ftp://example.com"),
        ("LEADFLOW_SENDER_NAME", "Team\r\nBcc: x@example.com"),
        ("LEADFLOW_SENDER_ADDRESS", "not an address"),
        ("LEADFLOW_BATCH_SIZE", "0"),
    ],
)
def test_invalid_values_name_the_setting(settings: Settings, monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    with pytest.raises(ConfigurationError) as caught:
        get_settings()

    assert name.removeprefix("LEADFLOW_").lower() in str(caught.value)


def test_privacy_defaults_respect_user_choice() -> None:
    environment = {"DO_NOT_TRACK": "0"}

    apply_prefect_privacy_defaults(environment)

    assert environment == {"DO_NOT_TRACK": "0", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_production_rejects_weak_webhook_secret(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADFLOW_ENVIRONMENT", "production")
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", "k" * 40)
    monkeypatch.setenv("LEADFLOW_WEBHOOK_SECRET", "k" * 40)
    monkeypatch.setenv("LEADFLOW_SENDER_ADDRESS", "news@leadflow.test")
    monkeypatch.setenv("LEADFLOW_SENDER_POSTAL_ADDRESS", "Leadflow Ltd, 2 Real Road, Leeds")
    get_settings.cache_clear()

    with pytest.raises(ConfigurationError, match="LEADFLOW_WEBHOOK_SECRET"):
        get_settings()


def test_webhook_secret_defaults_to_secret_key(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.resolved_webhook_secret == settings.secret_key.get_secret_value()
    monkeypatch.setenv("LEADFLOW_WEBHOOK_SECRET", "w" * 40)
    get_settings.cache_clear()

    assert get_settings().resolved_webhook_secret == "w" * 40
