"""A short run of the fault-injection check: kills, deferrals, bounces and dropped connections."""

from __future__ import annotations

import pytest
from prefect.settings import PREFECT_API_URL

from bench.fault_injection import run


@pytest.mark.usefixtures("prefect_server")
def test_kills_and_faults_send_nothing_twice(database_url: str) -> None:
    report = run(
        leads=200, cycles=3, defer_share=0.05, bounces=5, seed=7, batch_size=50,
        prefect_api_url=str(PREFECT_API_URL.value()), database_url=database_url,
    )

    assert report.problems == [], "\n".join(report.lines())
    assert report.kills + report.finished_before_kill == 3
    assert len(report.ambiguous) <= report.kills * report.connections
    assert report.ledger["bounced"] == 5
    assert report.ledger["sent"] + len(report.ambiguous) + 5 == 200
