"""Measure how long a campaign takes under LEADFLOW_SEND_RATE_PER_SECOND.

    .venv/bin/python -m bench.rate_limit --leads 1000 --rate 50

Starts an SMTP server and a Prefect server on loopback in a temporary folder and
imports the leads. It then times three things: one `leadflow campaign launch`
process from start to exit, its flow run from start to end as Prefect recorded
them, and the span from the first to the last message the server accepted. At
50 messages per second, 1,000 messages need at least 999/50 = 19.98 s of
sending; the launch adds the process start-up and the flow run's set-up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fault_injection import _environment, _leadflow, _start_prefect, _stop_prefect, _write_leads
from bench.fault_smtp import FaultPlan, fault_server


def _flow_run_seconds(prefect_api_url: str) -> float:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_api_url}), get_client(sync_client=True) as client:
        run = client.read_flow_runs(limit=1)[0]
    if run.start_time is None or run.end_time is None:
        return 0.0
    return (run.end_time - run.start_time).total_seconds()


def measure(*, leads: int, rate: float, batch_size: int) -> tuple[float, float, float, int]:
    """Return the launch's wall time, the flow run's duration and the span of accepted messages in seconds, and their count."""
    with tempfile.TemporaryDirectory(prefix="leadflow-rate-") as temporary:
        folder = Path(temporary)
        _write_leads(folder / "leads.csv", leads)
        with fault_server(FaultPlan()) as (smtp_url, handler):
            prefect_api_url = _start_prefect(folder)
            try:
                environment = _environment(folder, smtp_url, prefect_api_url, batch_size)
                environment["LEADFLOW_SEND_RATE_PER_SECOND"] = str(rate)
                subprocess.run(_leadflow("leads", "import", str(folder / "leads.csv")), env=environment, check=True, capture_output=True)
                started = time.monotonic()
                subprocess.run(
                    _leadflow("campaign", "launch", "trial-invite", "--name", "rate"),
                    env=environment, check=True, capture_output=True,
                )
                elapsed = time.monotonic() - started
                flow_seconds = _flow_run_seconds(prefect_api_url)
            finally:
                _stop_prefect(folder)
            times = handler.accepted_at
            return elapsed, flow_seconds, (times[-1] - times[0]) if times else 0.0, len(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1000, help="messages to send (default 1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="LEADFLOW_SEND_RATE_PER_SECOND (default 50)")
    parser.add_argument("--batch-size", type=int, default=500, help="LEADFLOW_BATCH_SIZE (default 500)")
    arguments = parser.parse_args()
    elapsed, flow_seconds, span, accepted = measure(leads=arguments.leads, rate=arguments.rate, batch_size=arguments.batch_size)
    print(
        f"{accepted:,} messages at {arguments.rate:g}/s: launch process {elapsed:.1f} s, flow run {flow_seconds:.1f} s, "
        f"first to last accepted message {span:.1f} s ({(accepted - 1) / span if span else 0:.1f} messages/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
