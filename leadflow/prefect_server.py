"""A long-lived local Prefect server for the command line.

Without `PREFECT_API_URL`, Prefect starts a temporary server for every process
that runs a flow: about 9 seconds each time, and most task-run records are lost
when it exits. leadflow instead starts one `prefect server start` on loopback the
first time a command needs it, leaves it running in the background, and reuses it
from then on, so every run stays visible in the UI at http://127.0.0.1:4200.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from leadflow.errors import ConfigurationError
from leadflow.settings import Settings, apply_prefect_privacy_defaults

HOST = "127.0.0.1"
STARTUP_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class ServerInfo:
    url: str
    """The API URL, ending in /api."""
    pid: int | None
    """The process id when leadflow started the server, else None."""
    started_now: bool = False

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")


def _state_file(settings: Settings) -> Path:
    return settings.data_dir / "prefect-server.json"


def _log_file(settings: Settings) -> Path:
    return settings.data_dir / "prefect-server.log"


def is_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Return True when the Prefect API at `api_url` passes its health check."""
    try:
        response = httpx.get(f"{api_url}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def configured_api_url() -> str | None:
    """Return the Prefect API URL the user configured (environment or Prefect profile), if any."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def running_server(settings: Settings) -> ServerInfo | None:
    """Return the server leadflow started earlier, if it still passes its health check."""
    state_file = _state_file(settings)
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    url = state.get("url")
    if isinstance(url, str) and is_healthy(url):
        return ServerInfo(url=url, pid=state.get("pid"))
    return None


def start_server(settings: Settings) -> ServerInfo:
    """Start `prefect server start` on loopback in the background and wait until it is healthy."""
    url = f"http://{HOST}:{settings.prefect_port}/api"
    if is_healthy(url):
        # A Prefect server the user started on this port: use it as it is.
        return ServerInfo(url=url, pid=None)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    environment = dict(os.environ)
    apply_prefect_privacy_defaults(environment)
    environment.pop("PREFECT_API_URL", None)
    environment["PREFECT_HOME"] = str(settings.data_dir / "prefect")
    environment["PREFECT_UI_API_URL"] = url
    log = _log_file(settings).open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(settings.prefect_port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=environment,
        start_new_session=True,
    )
    log.close()

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(
                f"the local Prefect server exited with code {process.returncode} during start-up; "
                f"see {_log_file(settings)}. If port {settings.prefect_port} is taken, set LEADFLOW_PREFECT_PORT"
            )
        if is_healthy(url, timeout=1.0):
            _state_file(settings).write_text(json.dumps({"url": url, "pid": process.pid}))
            return ServerInfo(url=url, pid=process.pid, started_now=True)
        time.sleep(0.5)
    _terminate(process.pid)
    raise ConfigurationError(
        f"the local Prefect server did not become healthy within {STARTUP_TIMEOUT_SECONDS:.0f} s; see {_log_file(settings)}"
    )


def ensure_server(settings: Settings) -> ServerInfo:
    """Return the Prefect API to use: the configured one, the running local one, or a new local one."""
    configured = configured_api_url()
    if configured:
        return ServerInfo(url=configured, pid=None)
    return running_server(settings) or start_server(settings)


def _terminate(pid: int, timeout: float = 15.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _is_prefect_server(pid: int) -> bool:
    """Check the command line of `pid`, so a recycled process id never gets a signal meant for the server."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        # No /proc (macOS): the id cannot be checked, so no signal is sent and the server must be stopped by hand.
        return False
    return b"prefect" in command and b"server" in command


def stop_server(settings: Settings) -> ServerInfo | None:
    """Stop the server leadflow started, by the process id it recorded; return what was stopped."""
    state_file = _state_file(settings)
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if isinstance(pid, int) and _is_prefect_server(pid):
        _terminate(pid)
    state_file.unlink(missing_ok=True)
    return ServerInfo(url=str(state.get("url")), pid=pid if isinstance(pid, int) else None)
