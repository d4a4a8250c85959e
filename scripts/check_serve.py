#!/usr/bin/env python3
"""End-to-end check of the scheduled survey emails with a real Prefect server and `leadflow serve`.

    .venv/bin/python scripts/check_serve.py

It starts `prefect server start` on a free loopback port and `leadflow serve`,
both with a fresh data folder, and survey slots of one minute:

1. A lead whose trial ends in two days and one minute signs up; its survey
   email must reach the outbox within two minutes.
2. `leadflow serve` stops. A second lead signs up with its survey due in 20
   seconds, and the due time passes while nothing serves. When `leadflow serve`
   starts again, that email must go out within two minutes.

Every process it starts is stopped by its process id at the end. Exit code 0
means both checks passed. It takes about four minutes.
"""

from __future__ import annotations

import email
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
LEADFLOW = [sys.executable, "-m", "leadflow.cli"]
DEADLINE_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(command: list[str], log: Path, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        command, stdout=handle, stderr=subprocess.STDOUT, env=environment, cwd=ROOT, start_new_session=True
    )


def stop(process: subprocess.Popen[bytes], *, first_signal: int = signal.SIGINT) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, first_signal)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_until(condition, timeout: float, interval: float = 2.0) -> float | None:  # noqa: ANN001
    """Poll `condition` until it is true; return the seconds it took, or None on timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(interval)
    return None


def recipients(outbox: Path) -> set[str]:
    if not outbox.exists():
        return set()
    found = set()
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        found.add(message["To"].addresses[0].addr_spec)
    return found


def sign_up(address: str, started: datetime, environment: dict[str, str]) -> None:
    output = subprocess.run(
        [*LEADFLOW, "trial", "start", address, "--at", started.isoformat()],
        env=environment, cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    print(f"  {output.strip()}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="leadflow-serve-check-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    environment = {
        **os.environ,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_API_URL": api_url,
        "LEADFLOW_DATA_DIR": str(work / "data"),
        "LEADFLOW_FOLLOWUP_SLOT_MINUTES": "1",
    }
    outbox = work / "data" / "outbox"
    print(f"working folder: {work}")

    server = start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], work / "server.log", environment)
    serve: subprocess.Popen[bytes] | None = None
    results: list[tuple[str, float | None]] = []
    try:
        if wait_until(lambda: _healthy(api_url), 90, 1) is None:
            print("the Prefect server did not start; see server.log")
            return 1
        serve = start([*LEADFLOW, "serve"], work / "serve-1.log", environment)
        if wait_until(lambda: "Serving" in (work / "serve-1.log").read_text(errors="replace"), 120, 1) is None:
            print("leadflow serve did not start; see serve-1.log")
            return 1

        print("check 1: a trial that ends in two days and one minute")
        now = datetime.now(UTC)
        sign_up("first@example.com", now - timedelta(days=5) + timedelta(minutes=1), environment)
        elapsed = wait_until(lambda: "first@example.com" in recipients(outbox), DEADLINE_SECONDS + 60)
        results.append(("survey email due in one minute", elapsed))

        print("check 2: a survey that falls due while leadflow serve is stopped")
        stop(serve)
        now = datetime.now(UTC)
        sign_up("second@example.com", now - timedelta(days=5) + timedelta(seconds=20), environment)
        time.sleep(90)
        sent_while_stopped = "second@example.com" in recipients(outbox)
        serve = start([*LEADFLOW, "serve"], work / "serve-2.log", environment)
        elapsed = wait_until(lambda: "second@example.com" in recipients(outbox), DEADLINE_SECONDS + 60)
        results.append(("overdue survey email after restart", None if sent_while_stopped else elapsed))
    finally:
        if serve is not None:
            stop(serve)
        stop(server, first_signal=signal.SIGTERM)

    failed = False
    for label, elapsed in results:
        passed = elapsed is not None and elapsed <= DEADLINE_SECONDS
        failed = failed or not passed
        shown = f"{elapsed:.0f} s" if elapsed is not None else "not sent (or sent too early)"
        print(f"{'PASS' if passed else 'FAIL'}: {label}: {shown} (limit {DEADLINE_SECONDS:.0f} s)")
    return 1 if failed or len(results) < 2 else 0


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
