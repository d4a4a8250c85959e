"""leadflow's settings, read from `LEADFLOW_*` environment variables and a `.env` file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from leadflow.errors import ConfigurationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The checkout that contains `flows/`, `tasks/`, `models/` and `templates/`."""

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-change-me"
PLACEHOLDER_POSTAL_ADDRESS = "Example Ltd, 1 Example Street, Springfield 00000"

# Prefect sends usage reports to its authors unless these are set. They are set before
# Prefect is imported by any leadflow entry point, and only where the user has not
# chosen a value.
PREFECT_PRIVACY_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


def apply_prefect_privacy_defaults(environ: dict[str, str] | None = None) -> None:
    """Turn Prefect's usage reporting off unless the environment already decides it."""
    target = os.environ if environ is None else environ
    for name, value in PREFECT_PRIVACY_DEFAULTS.items():
        target.setdefault(name, value)


class Settings(BaseSettings):
    """Every setting leadflow reads, with its environment variable and bounds."""

    model_config = SettingsConfigDict(
        env_prefix="LEADFLOW_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` rejects placeholder secrets and sender details.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / ".leadflow",
        description="Folder for the default SQLite database, the outbox and the local Prefect server.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of leadflow's database; default: a SQLite file in the data folder.",
    )
    outbox_dir: Path | None = Field(
        default=None,
        description="Folder where the file backend writes one .eml file per email; default: data folder/outbox.",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description=(
            "When set, email goes to this SMTP server instead of the outbox: "
            "smtp://[user:password@]host[:port][?starttls=true] or smtps://... for implicit TLS."
        ),
    )
    smtp_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Socket timeout for each SMTP command, in seconds."
    )
    secret_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_SECRET_KEY),
        description="Key that signs the links in emails and the intake webhooks; at least 32 characters.",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key the product signs intake webhooks with; default: the secret key. A separate key can be "
            "shared with the product and rotated without breaking the links in emails already sent."
        ),
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL of `leadflow web`, used for unsubscribe and survey links in emails.",
    )
    trial_url: str | None = Field(
        default=None,
        description="Page where a lead starts the free trial; default: public URL + /trial.",
    )
    product_name: str = Field(
        default="Example Analytics", min_length=1, max_length=100,
        description="Product name used in email subjects and bodies.",
    )
    sender_name: str = Field(
        default="Example Analytics Team", min_length=1, max_length=100,
        description="Display name in the From header.",
    )
    sender_address: str = Field(
        default="marketing@example.com", min_length=3, max_length=254,
        description="Address in the From header; its domain also ends every Message-ID.",
    )
    sender_postal_address: str = Field(
        default=PLACEHOLDER_POSTAL_ADDRESS, min_length=5, max_length=300,
        description="Postal address printed in every email footer, as anti-spam laws require.",
    )
    trial_days: int = Field(default=7, ge=1, le=365, description="Length of a free trial, in days.")
    invite_cooldown_days: int = Field(
        default=30, ge=0, le=3650,
        description=(
            "A new trial-invite campaign skips leads that another campaign invited within this many days; "
            "0 invites them again."
        ),
    )
    survey_offset_hours: float = Field(
        default=48.0, ge=0, le=24 * 365,
        description="The survey email is due this many hours before a lead's trial ends.",
    )
    survey_link_days: int = Field(
        default=14, ge=1, le=365, description="The survey link stays valid this many days after the trial ends."
    )
    followup_slot_minutes: int = Field(
        default=15, ge=1, le=24 * 60,
        description=(
            "Survey emails due within one slot go out together in one scheduled `survey-followup` run; "
            "smaller slots send closer to the due time and start more runs."
        ),
    )
    batch_size: int = Field(
        default=500, ge=1, le=10_000,
        description="Emails per batch; each batch is one Prefect task run.",
    )
    sending_lease_minutes: int = Field(
        default=30, ge=1, le=24 * 60,
        description=(
            "A worker on another host (or in another container) that has not claimed or handed over a send "
            "for this long is taken as dead: a later launch resends its queued sends and marks the one it was "
            "handing over ambiguous. Workers on the same host are checked directly and need no wait."
        ),
    )
    max_send_attempts: int = Field(
        default=5, ge=1, le=100,
        description="A send that the server defers (4xx) is tried at most this many times in all, across runs.",
    )
    retry_backoff_seconds: float = Field(
        default=60.0, ge=0, le=24 * 3600,
        description="Wait before retrying a deferred send, in seconds; it doubles with each attempt, up to one hour.",
    )
    retry_wait_seconds: float = Field(
        default=120.0, ge=0, le=24 * 3600,
        description=(
            "Seconds a run waits in all for deferred sends to become due before it ends and leaves them "
            "to a later run; 0 retries them in later runs only."
        ),
    )
    send_rate_per_second: float | None = Field(
        default=None, gt=0, le=10_000,
        description="Messages per second across every worker (a Prefect global concurrency limit); unset: no limit.",
    )
    smtp_connections: int = Field(
        default=4, ge=1, le=64,
        description=(
            "SMTP connections each sending task opens at once, each in its own thread. More connections hide the "
            "wait for each reply; a worker killed mid-batch can leave one send per connection ambiguous."
        ),
    )
    smtp_max_connections: int | None = Field(
        default=None, ge=1, le=1000,
        description="Open SMTP connections across every worker (a Prefect global concurrency limit); unset: no limit.",
    )
    prefect_port: int = Field(
        default=4200, ge=1024, le=65535,
        description="Port of the local Prefect server that leadflow starts when PREFECT_API_URL is not set.",
    )
    rules_file: Path = Field(
        default=PROJECT_ROOT / "rules" / "bant.toml",
        description="TOML file with the qualification rules: questions, answer points, weights and thresholds.",
    )
    sales_team: str = Field(
        default="sales@example.com",
        description="Comma-separated addresses of the salespeople; new SQLs are assigned to them in turn.",
    )
    crm_webhook_url: str | None = Field(
        default=None,
        description="When set, each new SQL is POSTed there as signed JSON (see the README for the format).",
    )
    crm_timeout_seconds: float = Field(default=10.0, gt=0, le=120, description="Timeout of one CRM request, in seconds.")
    review_timeout_minutes: float = Field(
        default=60.0, gt=0, le=7 * 24 * 60,
        description="How long the bant-review flow waits for a person to decide the borderline leads.",
    )
    templates_dir: Path = Field(
        default=PROJECT_ROOT / "templates",
        description="Folder holding `emails/` with the Jinja email templates.",
    )

    @field_validator("public_url", "trial_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL; write it as https://host[/path]")
        return value.rstrip("/")

    @field_validator("crm_webhook_url")
    @classmethod
    def _check_crm_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    @field_validator("sales_team")
    @classmethod
    def _check_sales_team(cls, value: str) -> str:
        addresses = [address.strip().lower() for address in value.split(",") if address.strip()]
        if not addresses:
            raise ValueError("name at least one salesperson's address, e.g. ana@example.com,ben@example.com")
        for address in addresses:
            local, at, domain = address.rpartition("@")
            if not at or not local or "." not in domain:
                raise ValueError(f"{address!r} is not an email address")
        return ",".join(addresses)

    @property
    def sales_team_addresses(self) -> list[str]:
        return self.sales_team.split(",")

    @field_validator("sender_name", "sender_postal_address", "product_name")
    @classmethod
    def _reject_line_breaks(cls, value: str) -> str:
        if "\r" in value or "\n" in value:
            raise ValueError("must be a single line: it ends up in email headers or footers")
        return value.strip()

    @field_validator("sender_address")
    @classmethod
    def _check_sender_address(cls, value: str) -> str:
        value = value.strip()
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() for c in value):
            raise ValueError(f"{value!r} is not an email address like news@example.com")
        return value

    @model_validator(mode="after")
    def _reject_placeholders_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        problems = []
        key = self.secret_key.get_secret_value()
        if key == DEVELOPMENT_SECRET_KEY or len(key) < 32:
            problems.append(
                "LEADFLOW_SECRET_KEY is the development placeholder or shorter than 32 characters; "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if self.webhook_secret is not None:
            webhook_key = self.webhook_secret.get_secret_value()
            if len(webhook_key) < 32 or webhook_key == key:
                problems.append(
                    "LEADFLOW_WEBHOOK_SECRET is shorter than 32 characters or equal to LEADFLOW_SECRET_KEY; "
                    "generate a separate one the same way"
                )
        if self.sender_postal_address == PLACEHOLDER_POSTAL_ADDRESS:
            problems.append("LEADFLOW_SENDER_POSTAL_ADDRESS is the placeholder; set your real postal address")
        if self.sender_address.endswith("@example.com"):
            problems.append("LEADFLOW_SENDER_ADDRESS is on example.com; set the address you send from")
        if problems:
            raise ValueError("invalid production settings: " + "; ".join(problems))
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'leadflow.db'}"

    @property
    def resolved_outbox_dir(self) -> Path:
        return self.outbox_dir if self.outbox_dir is not None else self.data_dir / "outbox"

    @property
    def resolved_webhook_secret(self) -> str:
        return (self.webhook_secret or self.secret_key).get_secret_value()

    @property
    def resolved_trial_url(self) -> str:
        return self.trial_url or f"{self.public_url}/trial"

    @property
    def sender_domain(self) -> str:
        return self.sender_address.rpartition("@")[2].lower()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read the settings once per process; tests call `get_settings.cache_clear()`."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigurationError(f"leadflow settings are invalid: {exc}") from exc
