"""`leadflow web` as a real process on a loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from leadflow.settings import Settings
from tasks.emails import unsubscribe_url
from tests.conftest import free_port
from tests.web.conftest import add_lead, load_lead


def wait_for(client: httpx.Client, url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get(url)
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_web_serves_the_unsubscribe_page(settings: Settings, tmp_path: Path) -> None:
    lead_id = add_lead("ann@example.com")
    port = free_port()
    link = unsubscribe_url(lead_id, settings).replace(settings.public_url, f"http://127.0.0.1:{port}")
    log = (tmp_path / "web.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "leadflow.cli", "web", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ),
    )
    # trust_env=False: no proxy setting may send these requests anywhere but the loopback port.
    try:
        with httpx.Client(trust_env=False, timeout=5) as client:
            page = wait_for(client, link, process)
            unsubscribed = client.post(link, data={"List-Unsubscribe": "One-Click"})
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()

    output = (tmp_path / "web.log").read_text()
    assert page.status_code == 200
    assert unsubscribed.status_code == 200
    assert load_lead(lead_id).unsubscribed_at is not None
    assert f"Serving on http://127.0.0.1:{port}" in output
    assert "POST /unsubscribe/<token> 200" in output
    assert link.rsplit("/", 1)[1] not in output
    assert "ann@example.com" not in output
