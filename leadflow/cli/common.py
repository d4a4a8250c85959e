"""Helpers shared by every command module: the consoles, the settings and the Prefect API in use."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from rich.console import Console

from leadflow.errors import LeadflowError
from leadflow.settings import Settings, get_settings

console = Console(soft_wrap=True)
error_console = Console(stderr=True, soft_wrap=True)


def current_settings() -> Settings:
    return get_settings()


@contextmanager
def prefect_api(settings: Settings) -> Iterator[str]:
    """Point Prefect at the configured server, or at leadflow's local one, started if needed."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from leadflow.prefect_server import ensure_server

    server = ensure_server(settings)
    if server.started_now:
        error_console.print(
            f"Started a local Prefect server (pid {server.pid}); it keeps running for the next commands. "
            f"UI: {server.ui_url}  Stop it with: leadflow server stop"
        )
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        yield server.ui_url


def parse_time_option(text: str | None, option: str, zone: str | None = None) -> datetime:
    from leadflow.clock import now
    from leadflow.timeparse import InvalidTime, load_zone, parse_time

    if text is None:
        return now()
    try:
        return parse_time(text, naive_zone=load_zone(zone) if zone else None)
    except InvalidTime as exc:
        raise LeadflowError(f"{option}: {exc}") from exc


