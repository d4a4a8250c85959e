"""Measure how fast leadflow sends a campaign against what the machine and Python allow.

    .venv/bin/python -m bench.campaign_speed [--sizes 10000 100000] [--naive-leads 2000]
        [--bare-leads 10000] [--import-rows 100000] [--profile-leads N] [--output FILE]

All runs use one loopback SMTP sink: postfix's `smtp-sink`, or an aiosmtpd server
when /usr/sbin/smtp-sink is missing. They send the real trial-invite email to
leads on example.com addresses. The measurements, in this order:

  raw     postfix's `smtp-source` sends as many messages as the bare loop, with
          the rendered email's body size, over as many connections as leadflow
          opens (LEADFLOW_SMTP_CONNECTIONS, 4 by default), and over one.
  bare    render_trial_invite, build_message and smtplib over one connection,
          with one SQLite row per message, inserted in batches of 500. No Prefect.
  naive   a Prefect flow with one task run per lead (render, build, send, insert
          and commit one row), against a Prefect server on loopback.
  launch  `leadflow campaign launch trial-invite` in a subprocess, once per size,
          each on a new data folder with the list imported beforehand.
  import  `leadflow leads import` of a generated CSV file.

Rates are emails (or rows) per second of wall time. The launch is also timed
from its first to its last ledger `sent_at`, which leaves out process start-up
and the audience query. Peak memory is the child's own maximum resident set
size, from wait4. The results go to a JSON file (default campaign-speed.json in
the current folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.fault_injection import _start_prefect, _stop_prefect
from bench.fault_smtp import FaultPlan, fault_server, free_port

ROOT = Path(__file__).resolve().parents[1]
SMTP_SINK = Path("/usr/sbin/smtp-sink")
SMTP_SOURCE = Path("/usr/sbin/smtp-source")
SENDER = "invites@example.com"
INSERT_BATCH = 500


@dataclass
class Sink:
    """The loopback SMTP server every measurement sends to."""

    kind: str
    port: int


@contextmanager
def smtp_sink() -> Iterator[Sink]:
    """Start `smtp-sink` on a free 127.0.0.1 port and stop it by its process id; fall back to aiosmtpd."""
    if not SMTP_SINK.exists():
        print(f"{SMTP_SINK} not found (Debian package postfix); using an aiosmtpd sink instead", file=sys.stderr)
        with fault_server(FaultPlan()) as (url, _handler):
            yield Sink(kind="aiosmtpd", port=int(url.rsplit(":", 1)[1]))
        return

    port = free_port()
    command = [str(SMTP_SINK)]
    if os.geteuid() == 0:
        # smtp-sink exits when started as root without -u, the user to switch to.
        command += ["-u", "nobody"]
    command += [f"127.0.0.1:{port}", "256"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port)
        yield Sink(kind="postfix smtp-sink", port=port)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=2) as probe:
                probe.noop()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for the SMTP sink on 127.0.0.1:{port} after {timeout:.0f} s; check that {SMTP_SINK} can start")


def _bench_settings(data_dir: Path):  # noqa: ANN202
    from leadflow.settings import Settings

    return Settings(data_dir=data_dir)


def _leads(count: int) -> list:
    """Return unsaved leads with ids, as the renderer needs, on example.com addresses."""
    from models import Lead

    return [
        Lead(id=number + 1, email=f"lead{number:06d}@example.com", first_name=f"Lead{number}", company="Example Corp")
        for number in range(count)
    ]


def build_wire_message(lead, settings, environment) -> bytes:  # noqa: ANN001
    """Render the trial invite for `lead` and return its bytes as they go on the wire."""
    from tasks.emails import render_trial_invite, unsubscribe_url
    from tasks.render_email import build_message, make_message_id, serialize_message

    message = build_message(
        render_trial_invite(lead, campaign="speed", settings=settings, environment=environment),
        sender_name=settings.sender_name,
        sender_address=SENDER,
        recipient_name=f"{lead.first_name} {lead.last_name or ''}".strip(),
        recipient_address=lead.email,
        message_id=make_message_id(campaign_public_id="speed", lead_id=lead.id, step="trial-invite", domain="example.com"),
        unsubscribe_url=unsubscribe_url(lead.id, settings),
        date=datetime.now(UTC),
    )
    return serialize_message(message)


def measure_raw(sink: Sink, *, messages: int, size: int, connections: int) -> dict:
    """Time `smtp-source` sending `messages` messages of `size` body bytes over `connections` connections."""
    if not SMTP_SOURCE.exists():
        return {"skipped": f"{SMTP_SOURCE} not found (Debian package postfix)"}
    command = [
        str(SMTP_SOURCE), "-d", "-s", str(connections), "-m", str(messages), "-l", str(size),
        "-f", SENDER, "-t", "lead@example.com", f"127.0.0.1:{sink.port}",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    return {
        "messages": messages, "body_bytes": size, "connections": connections, "seconds": elapsed,
        "emails_per_second": messages / elapsed,
    }


def measure_bare(sink: Sink, *, leads: int, folder: Path) -> dict:
    """Time the bare loop: render, build, send over one smtplib connection, batched SQLite inserts."""
    from tasks.emails import email_environment

    settings = _bench_settings(folder / "bare-data")
    environment = email_environment(settings)
    people = _leads(leads)
    database = sqlite3.connect(folder / "bare.db")
    database.execute("CREATE TABLE sends (lead_id INTEGER PRIMARY KEY, status TEXT, sent_at TEXT)")

    started = time.perf_counter()
    pending: list[tuple[int, str, str]] = []
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=30) as connection:
        for lead in people:
            connection.sendmail(SENDER, [lead.email], build_wire_message(lead, settings, environment))
            pending.append((lead.id, "sent", datetime.now(UTC).isoformat()))
            if len(pending) == INSERT_BATCH:
                database.executemany("INSERT INTO sends VALUES (?, ?, ?)", pending)
                database.commit()
                pending.clear()
        if pending:
            database.executemany("INSERT INTO sends VALUES (?, ?, ?)", pending)
            database.commit()
    elapsed = time.perf_counter() - started
    database.close()
    return {"emails": leads, "seconds": elapsed, "emails_per_second": leads / elapsed}


def run_naive_worker(*, leads: int, port: int, database_path: Path, data_dir: Path) -> dict:
    """Send to `leads` leads with one Prefect task run each; runs inside the child process of `measure_naive`."""
    from prefect import flow, task

    from tasks.emails import email_environment

    settings = _bench_settings(data_dir)
    environment = email_environment(settings)
    people = _leads(leads)
    database = sqlite3.connect(database_path, check_same_thread=False)
    database.execute("CREATE TABLE sends (lead_id INTEGER PRIMARY KEY, status TEXT, sent_at TEXT)")
    connection = smtplib.SMTP("127.0.0.1", port, timeout=30)

    @task(name="send-one")
    def send_one(index: int) -> None:
        lead = people[index]
        connection.sendmail(SENDER, [lead.email], build_wire_message(lead, settings, environment))
        database.execute("INSERT INTO sends VALUES (?, ?, ?)", (lead.id, "sent", datetime.now(UTC).isoformat()))
        database.commit()

    @flow(name="naive-campaign")
    def naive_campaign() -> None:
        for index in range(len(people)):
            send_one(index)

    started = time.perf_counter()
    naive_campaign()
    elapsed = time.perf_counter() - started
    connection.quit()
    sent = database.execute("SELECT count(*) FROM sends").fetchone()[0]
    database.close()
    return {"emails": sent, "seconds": elapsed, "emails_per_second": sent / elapsed}


def measure_naive(sink: Sink, *, leads: int, folder: Path, prefect_api_url: str) -> dict:
    """Run `run_naive_worker` in a child process pointed at the loopback Prefect server."""
    environment = _child_environment(folder / "naive-data", sink, prefect_api_url)
    command = [
        sys.executable, "-m", "bench.campaign_speed", "--naive-worker", str(leads), "--sink-port", str(sink.port),
        "--output", str(folder / "naive.json"),
    ]
    elapsed, peak, exit_code, output = _run_child(command, environment, cwd=ROOT)
    if exit_code != 0:
        raise RuntimeError(f"the naive Prefect run failed with exit code {exit_code}:\n{output[-3000:]}")
    result = json.loads((folder / "naive.json").read_text())
    result["process_seconds"] = elapsed
    result["peak_rss_mib"] = peak
    return result


def _child_environment(data_dir: Path, sink: Sink, prefect_api_url: str) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LEADFLOW_")}
    environment.update(
        {
            "LEADFLOW_DATA_DIR": str(data_dir),
            "LEADFLOW_SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
            "LEADFLOW_SENDER_ADDRESS": SENDER,
            "PREFECT_API_URL": prefect_api_url,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    return environment


_last_cpu_seconds = 0.0
"""User plus system CPU time of the last child `_run_child` waited for."""


def _run_child(command: list[str], environment: dict[str, str], *, cwd: Path) -> tuple[float, float, int, str]:
    """Run `command`; return its wall time in seconds, its peak RSS in MiB, its exit code and its output.

    The child's CPU time is left in `_last_cpu_seconds`.
    """
    global _last_cpu_seconds
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=environment, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
        # wait4 returns this child's own resource usage; ru_maxrss is in KiB on Linux.
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        _last_cpu_seconds = usage.ru_utime + usage.ru_stime
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read().decode(errors="replace")
    return elapsed, usage.ru_maxrss / 1024, child.returncode, output


def write_leads_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("Email,First Name,Company\n")
        for number in range(rows):
            handle.write(f"lead{number:06d}@example.com,Lead{number},Example Corp\n")


def _leadflow(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "leadflow.cli", *arguments]


def measure_launch(
    sink: Sink, *, leads: int, folder: Path, prefect_api_url: str, profile: bool, profile_dir: Path
) -> dict:
    """Import `leads` leads into a new data folder, then time one `leadflow campaign launch trial-invite`."""
    # A profiled launch gets its own data folder, so it never finds the leads already sent.
    label = f"launch-{leads}-profiled" if profile else f"launch-{leads}"
    data_dir = folder / label
    environment = _child_environment(data_dir, sink, prefect_api_url)
    csv_path = folder / f"{label}.csv"
    write_leads_csv(csv_path, leads)
    subprocess.run(_leadflow("leads", "import", str(csv_path)), env=environment, cwd=folder, check=True, capture_output=True)

    command = _leadflow("campaign", "launch", "trial-invite", "--name", label)
    profile_path = profile_dir / f"campaign-speed-profile-{leads}.txt"
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if profile and not Path(py_spy).exists():
        raise FileNotFoundError(f"py-spy not found at {py_spy}; install it with `.venv/bin/pip install py-spy`")
    if profile:
        command = [py_spy, "record", "--format", "raw", "--rate", "50", "--output", str(profile_path), "--", *command]
    elapsed, peak, exit_code, output = _run_child(command, environment, cwd=folder)
    if exit_code != 0:
        raise RuntimeError(f"the launch of {leads} leads failed with exit code {exit_code}:\n{output[-3000:]}")

    database = sqlite3.connect(data_dir / "leadflow.db")
    sent, first, last = database.execute(
        "SELECT count(*), min(sent_at), max(sent_at) FROM email_ledger WHERE status = 'sent'"
    ).fetchone()
    database.close()
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() if sent > 1 else 0.0
    result = {
        "leads": leads,
        "sent": sent,
        "seconds": elapsed,
        "emails_per_second": sent / elapsed,
        "sending_seconds": span,
        "sending_emails_per_second": (sent - 1) / span if span else None,
        "peak_rss_mib": peak,
        "cpu_seconds": _last_cpu_seconds,
        "cpu_ms_per_email": 1000 * _last_cpu_seconds / sent if sent else None,
    }
    if profile:
        # wait4 then reports py-spy's child, so this peak RSS is the larger of py-spy's and leadflow's.
        result["profile"] = str(profile_path)
    return result


def measure_import(*, rows: int, folder: Path) -> dict:
    """Time `leadflow leads import` of a `rows`-row CSV file into a new data folder."""
    csv_path = folder / f"import-{rows}.csv"
    write_leads_csv(csv_path, rows)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LEADFLOW_")}
    environment["LEADFLOW_DATA_DIR"] = str(folder / "import-data")
    elapsed, peak, exit_code, output = _run_child(_leadflow("leads", "import", str(csv_path)), environment, cwd=folder)
    if exit_code != 0:
        raise RuntimeError(f"the import of {rows} rows failed with exit code {exit_code}:\n{output[-3000:]}")
    return {"rows": rows, "seconds": elapsed, "rows_per_second": rows / elapsed, "peak_rss_mib": peak}


def machine() -> dict:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(), "kernel": platform.release()}


def run(arguments: argparse.Namespace) -> dict:
    from tasks.emails import email_environment

    results: dict = {"machine": machine(), "started": datetime.now(UTC).isoformat(timespec="seconds")}
    with tempfile.TemporaryDirectory(prefix="leadflow-speed-") as temporary, smtp_sink() as sink:
        folder = Path(temporary)
        results["sink"] = sink.kind
        settings = _bench_settings(folder / "sample-data")
        sample = build_wire_message(_leads(1)[0], settings, email_environment(settings))
        body_bytes = len(sample.split(b"\r\n\r\n", 1)[1])
        results["message_bytes"] = len(sample)

        # The ratio d/a compares like with like: smtp-source opens as many connections as leadflow does.
        connections = settings.smtp_connections
        results["raw"] = measure_raw(sink, messages=arguments.bare_leads, size=body_bytes, connections=connections)
        results["raw_one_connection"] = measure_raw(sink, messages=arguments.bare_leads, size=body_bytes, connections=1)
        print(f"raw smtp-source: {results['raw']}", flush=True)
        results["bare"] = measure_bare(sink, leads=arguments.bare_leads, folder=folder)
        print(f"bare loop: {results['bare']}", flush=True)

        prefect_api_url = _start_prefect(folder)
        try:
            results["naive"] = measure_naive(sink, leads=arguments.naive_leads, folder=folder, prefect_api_url=prefect_api_url)
            print(f"naive Prefect: {results['naive']}", flush=True)
            results["launch"] = []
            for size in arguments.sizes:
                launch = measure_launch(
                    sink, leads=size, folder=folder, prefect_api_url=prefect_api_url, profile=False,
                    profile_dir=arguments.output.parent,
                )
                results["launch"].append(launch)
                print(f"leadflow launch: {launch}", flush=True)
            if arguments.profile_leads:
                profiled = measure_launch(
                    sink, leads=arguments.profile_leads, folder=folder, prefect_api_url=prefect_api_url, profile=True,
                    profile_dir=arguments.output.parent,
                )
                results["profiled_launch"] = profiled
                print(f"profiled launch: {profiled}", flush=True)
        finally:
            _stop_prefect(folder)

        results["import"] = measure_import(rows=arguments.import_rows, folder=folder)
        print(f"import: {results['import']}", flush=True)

    results["ratios"] = {
        f"launch {launch['leads']}": {
            name: launch["emails_per_second"] / results[name]["emails_per_second"]
            for name in ("raw", "bare", "naive")
            if "emails_per_second" in results[name]
        }
        for launch in results["launch"]
    }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="leads per campaign launch (default 10000 100000)")
    parser.add_argument("--naive-leads", type=int, default=2000, help="leads of the one-task-per-lead Prefect run (default 2000)")
    parser.add_argument("--bare-leads", type=int, default=10_000, help="messages of the bare loop and of smtp-source (default 10000)")
    parser.add_argument("--import-rows", type=int, default=100_000, help="rows of the imported CSV file (default 100000)")
    parser.add_argument("--profile-leads", type=int, default=0, help="also launch this many leads under py-spy (default 0: no profile)")
    parser.add_argument("--output", type=Path, default=Path("campaign-speed.json"), help="JSON results file")
    parser.add_argument("--naive-worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sink-port", type=int, help=argparse.SUPPRESS)
    arguments = parser.parse_args()

    if arguments.naive_worker is not None:
        with tempfile.TemporaryDirectory(prefix="leadflow-naive-") as temporary:
            result = run_naive_worker(
                leads=arguments.naive_worker, port=arguments.sink_port, database_path=Path(temporary) / "naive.db",
                data_dir=Path(temporary) / "data",
            )
        arguments.output.write_text(json.dumps(result))
        return 0

    results = run(arguments)
    arguments.output.write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(summary_lines(results)))
    print(f"results written to {arguments.output}")
    return 0


def summary_lines(results: dict) -> list[str]:
    lines = [f"sink: {results['sink']}, message {results['message_bytes']:,} bytes"]
    for name in ("raw", "raw_one_connection", "bare", "naive"):
        entry = results[name]
        if "emails_per_second" in entry:
            connections = f" over {entry['connections']} connections" if "connections" in entry else ""
            lines.append(f"{name}: {entry['emails_per_second']:,.0f} emails/s{connections}")
        else:
            lines.append(f"{name}: {entry.get('skipped')}")
    for launch in results["launch"]:
        ratios = results["ratios"][f"launch {launch['leads']}"]
        lines.append(
            f"leadflow launch {launch['leads']:,}: {launch['emails_per_second']:,.0f} emails/s "
            f"({launch['sending_emails_per_second'] or 0:,.0f} while sending), peak RSS {launch['peak_rss_mib']:.0f} MiB, "
            f"CPU {launch['cpu_ms_per_email']:.2f} ms per email; "
            + ", ".join(f"d/{name} {ratio:.3f}" for name, ratio in ratios.items())
        )
    lines.append(f"import {results['import']['rows']:,} rows: {results['import']['rows_per_second']:,.0f} rows/s")
    return lines


if __name__ == "__main__":
    sys.exit(main())
