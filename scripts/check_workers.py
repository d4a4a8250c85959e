#!/usr/bin/env python3
"""Check parallel sending with a Prefect server on PostgreSQL and two process workers, all on loopback.

    .venv/bin/python scripts/check_workers.py [--leads 20000] [--mode all|scale|kill] [--keep]

It creates two new PostgreSQL databases on 127.0.0.1:5432, one for the Prefect
server and one for leadflow's data. Each as a process of its own, it starts an
SMTP sink that writes every accepted Message-ID to a file (scripts/smtp_sink.py)
and `prefect server start` on a free port. It registers the deployments of
prefect.yaml with `prefect deploy --all` and starts two workers on the
`leadflow` process work pool:

- worker 1 serves every queue of the pool, at most 2 flow runs at a time: the
  trial-invite launcher and one campaign sender;
- worker 2 serves only the `senders` queue, 1 flow run at a time.

It imports generated leads with addresses on example.com. Every 50th is a
customer and every 100th is marked do-not-email, so the rules exclude 3%. Then
it launches trial-invite campaigns through the Prefect API with run_deployment:

- scale: senders=2 on both workers, then, with worker 2 stopped, senders=1 on
  worker 1 for the first `--one-worker-leads` emails (5,000). Every lead the
  rules allow must get exactly one email, counted at the sink as total and
  distinct Message-IDs. Both workers must have sent part of the first
  campaign, which the ledger's owner column shows once each owner is traced
  to a worker's process tree. The rates of both runs are printed side by side.
- kill: senders=2 on both workers; once worker 2's sender has sent a share of
  the campaign, worker 2 and its flow-run process are killed with SIGKILL
  (each process group). No Message-ID may reach the sink twice, the campaign
  must still complete, and every lead must be sent exactly once. The only
  exceptions allowed are `ambiguous` sends of messages that the killed process
  was handing over when it died (at most one per SMTP connection), and those
  are listed.

It prints PASS or FAIL lines with the numbers and exits with 1 when any check
fails. Every process it started is stopped by its process group id, and both
databases are dropped. A full run (`--mode all`, 20,000 leads) took 150 s on a
2-core machine at a load average of 1.5 to 2.6, and 13 to 17 minutes before the
fast sending path; see docs/deployment.md for its output.
"""

from __future__ import annotations

import argparse
import csv
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
POSTGRESQL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOOPBACK = "127.0.0.1"
CAMPAIGN_TIMEOUT_SECONDS = 600.0
STARTUP_TIMEOUT_SECONDS = 120.0
KILL_AFTER_SHARE = 0.05
"""The kill comes once worker 2's sender has sent this share of the emails to send."""


# Processes ------------------------------------------------------------------------------------------------


@dataclass
class Started:
    """A process this script started, in a session (and process group) of its own."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def start(name: str, command: list[str], environment: dict[str, str], log: Path) -> Started:
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Started(name=name, process=process, log=log)


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in brackets and may hold spaces: state, ppid, ...
    return int(stat.rpartition(")")[2].split()[1])


def descendants(pid: int) -> list[int]:
    """Return the live processes below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def process_groups(started: Started) -> list[int]:
    """Return the process group of `started` and those of its descendants.

    A Prefect process worker starts each flow run in a session of its own, so
    the worker's group does not contain its flow-run processes.
    """
    groups = [started.pid]
    for child in descendants(started.pid):
        try:
            group = os.getpgid(child)
        except ProcessLookupError:
            continue
        if group not in groups:
            groups.append(group)
    return groups


def signal_groups(groups: list[int], sig: int) -> None:
    for group in groups:
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            pass


def stop(started: Started, timeout: float = 30.0) -> None:
    """Stop `started` and every process below it: SIGTERM to each process group, then SIGKILL to what is left."""
    groups = process_groups(started)
    signal_groups(groups, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Reap the leader, or its zombie would keep its group alive for the check below.
        started.process.poll()
        alive = [group for group in groups if _group_alive(group)]
        if not alive:
            break
        time.sleep(0.3)
    signal_groups(groups, signal.SIGKILL)
    try:
        started.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        print(f"  note: {started.name} (pid {started.pid}) did not exit after SIGKILL")


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float, description: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{description} did not happen within {timeout:.0f} s")
        time.sleep(interval)


# PostgreSQL -----------------------------------------------------------------------------------------------


def create_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRESQL_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop_database(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRESQL_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Ledger:
    """Read-only queries on leadflow's database."""

    def __init__(self, database: str) -> None:
        import psycopg

        self.connection = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True)

    def campaign_id(self, name: str) -> int | None:
        row = self.connection.execute(
            "SELECT id FROM campaigns WHERE kind = 'trial-invite' AND name = %s", (name,)
        ).fetchone()
        return None if row is None else int(row[0])

    def statuses(self, campaign_id: int) -> Counter[str]:
        rows = self.connection.execute(
            "SELECT status, count(*) FROM email_ledger WHERE campaign_id = %s GROUP BY status", (campaign_id,)
        )
        return Counter({status: count for status, count in rows})

    def sent_by_owner(self, campaign_id: int) -> dict[str, int]:
        rows = self.connection.execute(
            "SELECT owner, count(*) FROM email_ledger WHERE campaign_id = %s AND status = 'sent' GROUP BY owner",
            (campaign_id,),
        )
        return {owner: count for owner, count in rows if owner is not None}

    def sending_windows_by_owner(self, campaign_id: int) -> dict[str, tuple[datetime, datetime]]:
        rows = self.connection.execute(
            "SELECT owner, min(sent_at), max(sent_at) FROM email_ledger "
            "WHERE campaign_id = %s AND status = 'sent' GROUP BY owner",
            (campaign_id,),
        )
        return {owner: (first, last) for owner, first, last in rows if owner is not None}

    def owners(self, campaign_id: int) -> list[str]:
        rows = self.connection.execute(
            "SELECT DISTINCT owner FROM email_ledger WHERE campaign_id = %s AND owner IS NOT NULL", (campaign_id,)
        )
        return [owner for (owner,) in rows]

    def message_ids(self, campaign_id: int, statuses: tuple[str, ...]) -> set[str]:
        rows = self.connection.execute(
            "SELECT message_id FROM email_ledger WHERE campaign_id = %s AND status = ANY(%s)",
            (campaign_id, list(statuses)),
        )
        return {message_id for (message_id,) in rows}

    def rows_of_owners(self, campaign_id: int, owners: list[str], statuses: tuple[str, ...]) -> list[tuple[str, str]]:
        rows = self.connection.execute(
            "SELECT message_id, status FROM email_ledger WHERE campaign_id = %s AND owner = ANY(%s) AND status = ANY(%s)",
            (campaign_id, owners, list(statuses)),
        )
        return [(message_id, status) for message_id, status in rows]

    def sending_window(self, campaign_id: int) -> tuple[datetime | None, datetime | None]:
        row = self.connection.execute(
            "SELECT min(sent_at), max(sent_at) FROM email_ledger WHERE campaign_id = %s AND status = 'sent'",
            (campaign_id,),
        ).fetchone()
        return (row[0], row[1]) if row else (None, None)


# The check ------------------------------------------------------------------------------------------------


@dataclass
class Results:
    failed: bool = False
    lines: list[str] = field(default_factory=list)

    def check(self, passed: bool, text: str) -> bool:
        self.failed = self.failed or not passed
        line = f"{'PASS' if passed else 'FAIL'}: {text}"
        self.lines.append(line)
        print(line, flush=True)
        return passed


@dataclass
class CampaignRun:
    name: str
    workers: int
    senders: int
    seconds: float
    state: str
    campaign_id: int | None
    owner_workers: dict[str, str]
    """Ledger owner (a flow-run process) to the name of the worker whose process tree it ran in."""
    sink_ids: list[str]
    flow_run_states: dict[str, str] = field(default_factory=dict)
    killed_owners: list[str] = field(default_factory=list)
    handed_over_at_kill: set[str] = field(default_factory=set)
    """Message-IDs the killed process was handing to the sink when it died: at most one per SMTP connection."""
    load: tuple[float, float] = (0.0, 0.0)
    """The machine's 1-minute load average when the campaign started and when it ended."""


@dataclass
class Setup:
    work: Path
    environment: dict[str, str]
    sink_log: Path
    ledger: Ledger
    workers: dict[str, Started]
    expected: int
    args: argparse.Namespace
    started: list[Started] = field(default_factory=list)


def write_leads(path: Path, count: int) -> int:
    """Write `count` leads as CSV and return how many of them the trial invite may go to."""
    expected = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "First Name", "Company", "Customer", "Do Not Email"])
        for number in range(count):
            customer = number % 50 == 0
            do_not_email = number % 100 == 7
            expected += not (customer or do_not_email)
            writer.writerow([
                f"lead{number}@example.com", f"Lead{number}", f"Company {number % 997}",
                "yes" if customer else "no", "yes" if do_not_email else "",
            ])
    return expected


def worker_of(owner: str, workers: dict[str, Started]) -> str | None:
    """Return the name of the worker whose process tree contains the process `owner`, while that process is alive."""
    parts = owner.split("/")
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    by_pid = {started.pid: name for name, started in workers.items()}
    pid: int | None = int(parts[2])
    while pid is not None and pid > 1:
        if pid in by_pid:
            return by_pid[pid]
        pid = parent_of(pid)
    return None


def read_sink(path: Path) -> list[str]:
    return path.read_text(encoding="ascii").splitlines() if path.exists() else []


def launch(
    setup: Setup,
    name: str,
    senders: int,
    workers: int,
    on_tick: Callable[[CampaignRun], None] | None = None,
    limit: int | None = None,
) -> CampaignRun:
    """Start a trial-invite run through the Prefect API, follow it to its end, and return what happened."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    sink_before = len(read_sink(setup.sink_log))
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    parameters: dict[str, Any] = {"name": name, "senders": senders}
    if limit is not None:
        parameters["limit"] = limit
    flow_run = run_deployment("trial-invite/trial-invite", parameters=parameters, timeout=0, as_subflow=False)
    run = CampaignRun(
        name=name, workers=workers, senders=senders, seconds=0.0, state="", campaign_id=None, owner_workers={},
        sink_ids=[],
    )
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run.id).state
            if run.campaign_id is None:
                run.campaign_id = setup.ledger.campaign_id(name)
            if run.campaign_id is not None:
                for owner in setup.ledger.owners(run.campaign_id):
                    if owner not in run.owner_workers:
                        worker = worker_of(owner, setup.workers)
                        if worker is not None:
                            run.owner_workers[owner] = worker
            if on_tick is not None:
                on_tick(run)
            if state is not None and state.is_final():
                run.state = state.type.value
                break
            if time.monotonic() - started > CAMPAIGN_TIMEOUT_SECONDS:
                run.state = f"still {state.type.value if state else 'unknown'} after {CAMPAIGN_TIMEOUT_SECONDS:.0f} s"
                break
            time.sleep(0.5)
        run.seconds = time.monotonic() - started
        for child in client.read_flow_runs(limit=50):
            if child.name.startswith(f"campaign-sender/{name}/") and child.state is not None:
                run.flow_run_states[child.name] = child.state.type.value
    run.sink_ids = read_sink(setup.sink_log)[sink_before:]
    run.load = (load_before, os.getloadavg()[0])
    return run


def rate_line(setup: Setup, run: CampaignRun) -> str:
    assert run.campaign_id is not None
    sent = setup.ledger.statuses(run.campaign_id).get("sent", 0)
    first, last = setup.ledger.sending_window(run.campaign_id)
    sending = (last - first).total_seconds() if first and last else 0.0
    while_sending = f"{sent / sending:,.0f} emails/s from first to last message ({sending:.1f} s)" if sending else "-"
    return (
        f"{run.workers} worker{'s' if run.workers > 1 else ' '}, senders={run.senders}: {sent:,} emails in "
        f"{run.seconds:.1f} s from launch to end = {sent / run.seconds:,.0f} emails/s; {while_sending}; "
        f"load average {run.load[0]:.1f} at the start, {run.load[1]:.1f} at the end"
    )


def check_exactly_once(setup: Setup, run: CampaignRun, results: Results, label: str, expected: int) -> None:
    results.check(run.state == "COMPLETED", f"{label}: the trial-invite run ended {run.state} in {run.seconds:.1f} s")
    if run.campaign_id is None:
        results.check(False, f"{label}: the campaign was never created in leadflow's database")
        return
    statuses = setup.ledger.statuses(run.campaign_id)
    counts = Counter(run.sink_ids)
    duplicates = sum(1 for count in counts.values() if count > 1)
    results.check(
        statuses == Counter({"sent": expected}),
        f"{label}: ledger {dict(statuses)}, expected sent {expected:,}",
    )
    results.check(
        len(run.sink_ids) == expected and len(counts) == expected and duplicates == 0,
        f"{label}: sink got {len(run.sink_ids):,} messages with {len(counts):,} distinct Message-IDs "
        f"({duplicates} sent more than once), expected {expected:,}",
    )
    results.check(
        set(counts) == setup.ledger.message_ids(run.campaign_id, ("sent",)),
        f"{label}: the Message-IDs at the sink are those the ledger marks sent",
    )


def sent_by_worker(setup: Setup, run: CampaignRun) -> Counter[str]:
    assert run.campaign_id is not None
    shares: Counter[str] = Counter()
    for owner, count in setup.ledger.sent_by_owner(run.campaign_id).items():
        shares[run.owner_workers.get(owner, "unknown process")] += count
    return shares


def print_sending_windows(setup: Setup, run: CampaignRun) -> None:
    """Print when each sending process sent its first and last message, counted from the campaign's first message."""
    assert run.campaign_id is not None
    windows = setup.ledger.sending_windows_by_owner(run.campaign_id)
    counts = setup.ledger.sent_by_owner(run.campaign_id)
    if not windows:
        return
    start = min(first for first, _ in windows.values())
    for owner, (first, last) in sorted(windows.items(), key=lambda item: item[1][0]):
        worker = run.owner_workers.get(owner, "unknown process")
        pid = owner.split("/")[2] if owner.count("/") == 3 else owner
        print(
            f"  {worker} (pid {pid}): {counts.get(owner, 0):,} emails from +{(first - start).total_seconds():.1f} s "
            f"to +{(last - start).total_seconds():.1f} s"
        )


def scale_mode(setup: Setup, results: Results) -> None:
    print("scale: senders=2 on two workers", flush=True)
    two_workers_run = launch(setup, "check-two-workers", senders=2, workers=2)
    check_exactly_once(setup, two_workers_run, results, "two workers", setup.expected)
    shares = sent_by_worker(setup, two_workers_run)
    results.check(
        shares.get("worker-1", 0) > 0 and shares.get("worker-2", 0) > 0,
        "two workers: both sent part of it: " + ", ".join(f"{name} {count:,}" for name, count in sorted(shares.items())),
    )
    print_sending_windows(setup, two_workers_run)

    one_worker_leads = min(setup.args.one_worker_leads, setup.expected)
    print(f"scale: senders=1 on one worker (worker 2 stopped), {one_worker_leads:,} emails", flush=True)
    stop(setup.workers.pop("worker-2"))
    one_worker_run = launch(setup, "check-one-worker", senders=1, workers=1, limit=one_worker_leads)
    check_exactly_once(setup, one_worker_run, results, "one worker", one_worker_leads)
    print("throughput:")
    print(f"  {rate_line(setup, two_workers_run)}")
    print(f"  {rate_line(setup, one_worker_run)}", flush=True)


def kill_mode(setup: Setup, results: Results) -> None:
    if "worker-2" not in setup.workers:
        setup.workers["worker-2"] = start_worker(setup, "worker-2")
    print("kill: senders=2 on two workers; worker 2 is killed mid-campaign", flush=True)
    victim = setup.workers["worker-2"]
    threshold = max(1, int(setup.expected * KILL_AFTER_SHARE))

    def kill_when_sending(run: CampaignRun) -> None:
        if run.killed_owners or run.campaign_id is None:
            return
        victim_owners = [owner for owner, worker in run.owner_workers.items() if worker == "worker-2"]
        sent = setup.ledger.sent_by_owner(run.campaign_id)
        if sum(sent.get(owner, 0) for owner in victim_owners) < threshold:
            return
        groups = process_groups(victim)
        signal_groups(groups, signal.SIGKILL)
        run.killed_owners = victim_owners
        # A dead process changes nothing more; the launcher may already have marked these ambiguous.
        run.handed_over_at_kill = {
            message_id
            for message_id, _ in setup.ledger.rows_of_owners(run.campaign_id, victim_owners, ("sending", "ambiguous"))
        }
        total_sent = sum(sent.values())
        print(
            f"  killed worker 2 (process groups {', '.join(map(str, groups))}) after {total_sent:,} of "
            f"{setup.expected:,} emails were sent; it was handing over {len(run.handed_over_at_kill)}", flush=True,
        )

    run = launch(setup, "check-kill", senders=2, workers=2, on_tick=kill_when_sending)
    setup.workers.pop("worker-2")
    try:
        victim.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass

    results.check(
        bool(run.killed_owners),
        f"kill: worker 2 was killed while its sender was sending (once it had sent at least {threshold:,} emails)",
    )
    results.check(run.state == "COMPLETED", f"kill: the trial-invite run ended {run.state} in {run.seconds:.1f} s")
    if run.campaign_id is None or not run.killed_owners:
        return
    statuses = setup.ledger.statuses(run.campaign_id)
    counts = Counter(run.sink_ids)
    duplicates = {message_id: count for message_id, count in counts.items() if count > 1}
    ambiguous = setup.ledger.rows_of_owners(run.campaign_id, run.killed_owners, ("ambiguous",))
    all_ambiguous = statuses.get("ambiguous", 0)
    results.check(not duplicates, f"kill: no Message-ID reached the sink twice ({len(run.sink_ids):,} messages, {len(counts):,} distinct)")
    results.check(
        statuses.get("sent", 0) + all_ambiguous == setup.expected and set(statuses) <= {"sent", "ambiguous"},
        f"kill: ledger {dict(statuses)}; sent + ambiguous = {statuses.get('sent', 0) + all_ambiguous:,}, expected {setup.expected:,}",
    )
    sent_ids = setup.ledger.message_ids(run.campaign_id, ("sent",))
    results.check(
        sent_ids <= set(counts) and set(counts) - sent_ids <= {message_id for message_id, _ in ambiguous},
        "kill: every sent Message-ID is at the sink, and the sink has nothing else but ambiguous ones",
    )
    ambiguous_ids = {message_id for message_id, _ in ambiguous}
    results.check(
        all_ambiguous == len(ambiguous) and ambiguous_ids <= run.handed_over_at_kill,
        f"kill: {all_ambiguous} ambiguous, only messages the killed process was handing over when it died "
        f"({len(run.handed_over_at_kill)}, at most one per SMTP connection)",
    )
    for message_id, _ in ambiguous:
        print(f"  ambiguous: {message_id} ({'at the sink' if message_id in counts else 'not at the sink'})")
    crashed = [name for name, state in run.flow_run_states.items() if state == "CRASHED"]
    results.check(
        len(crashed) == 1,
        "kill: the killed sender's flow run was marked Crashed: "
        + ", ".join(f"{name} {state}" for name, state in sorted(run.flow_run_states.items())),
    )
    print_sending_windows(setup, run)


def start_worker(setup: Setup, name: str) -> Started:
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", "leadflow", "--name", f"check-{name}"]
    if name == "worker-1":
        command += ["--limit", "2"]
    else:
        command += ["--work-queue", "senders", "--limit", "1"]
    started = start(name, command, setup.environment, setup.work / f"{name}.log")
    setup.started.append(started)
    wait_until(
        lambda: "started!" in started.log.read_text(errors="replace") or started.process.poll() is not None,
        STARTUP_TIMEOUT_SECONDS, f"{name} start-up",
    )
    if started.process.poll() is not None:
        raise RuntimeError(f"{name} exited with {started.process.returncode}; see {started.log}")
    return started


def run_prefect(arguments: list[str], environment: dict[str, str], log: Path) -> None:
    with log.open("ab") as output:
        completed = subprocess.run(
            [sys.executable, "-m", "prefect", *arguments], cwd=ROOT, env=environment, stdout=output,
            stderr=subprocess.STDOUT, timeout=300,
        )
    if completed.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(arguments)} failed with exit code {completed.returncode}; see {log}")


def healthy(api_url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000, help="Number of generated leads (default 20,000).")
    parser.add_argument("--mode", choices=("all", "scale", "kill"), default="all", help="Which checks to run.")
    parser.add_argument(
        "--one-worker-leads", type=int, default=5_000,
        help="Emails of the one-worker run that the rates are compared with (default 5,000, to keep the check short).",
    )
    parser.add_argument("--keep", action="store_true", help="Keep the working folder with the logs.")
    args = parser.parse_args()

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="leadflow-check-workers-"))
    suffix = secrets.token_hex(4)
    prefect_database = f"leadflow_check_{suffix}_prefect"
    data_database = f"leadflow_check_{suffix}_data"
    port, smtp_port = free_port(), free_port()
    api_url = f"http://{LOOPBACK}:{port}/api"
    base = {name: value for name, value in os.environ.items() if not name.startswith(("LEADFLOW_", "PREFECT_"))}
    environment = {
        **base,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_HOME": str(work / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "LEADFLOW_PROJECT_DIR": str(ROOT),
        "LEADFLOW_DATA_DIR": str(work / "data"),
        "LEADFLOW_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{data_database}",
        "LEADFLOW_SMTP_URL": f"smtp://{LOOPBACK}:{smtp_port}",
        "LEADFLOW_INVITE_COOLDOWN_DAYS": "0",
    }
    # This process uses the Prefect client too; Prefect reads these when first used.
    os.environ.update({name: environment[name] for name in environment if name.startswith(("PREFECT_", "DO_NOT_TRACK"))})
    server_environment = {
        **environment,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{prefect_database}",
        # No scheduled survey or review runs during the measurement.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_UI_API_URL": api_url,
    }
    server_environment.pop("PREFECT_API_URL")

    print(f"working folder: {work}")
    print(f"databases: {prefect_database} (Prefect), {data_database} (leadflow); Prefect API {api_url}; SMTP sink port {smtp_port}")
    results = Results()
    created: list[str] = []
    setup: Setup | None = None
    started: list[Started] = []
    try:
        for database in (prefect_database, data_database):
            create_database(database)
            created.append(database)

        sink_log = work / "sink-message-ids.txt"
        sink = start("smtp sink", [sys.executable, str(ROOT / "scripts" / "smtp_sink.py"), "--port", str(smtp_port), "--output", str(sink_log)], environment, work / "sink.log")
        started.append(sink)
        server = start("prefect server", [sys.executable, "-m", "prefect", "server", "start", "--host", LOOPBACK, "--port", str(port)], server_environment, work / "server.log")
        started.append(server)
        wait_until(lambda: healthy(api_url), STARTUP_TIMEOUT_SECONDS, "the Prefect server's health check")
        print(f"Prefect server on PostgreSQL is up after {time.monotonic() - began:.0f} s", flush=True)

        run_prefect(["work-pool", "create", "leadflow", "--type", "process"], environment, work / "setup.log")
        run_prefect(["--no-prompt", "deploy", "--all"], environment, work / "setup.log")

        leads_file = work / "leads.csv"
        expected = write_leads(leads_file, args.leads)
        imported = subprocess.run(
            [sys.executable, "-m", "leadflow.cli", "leads", "import", str(leads_file), "--customer-if", "Customer=yes"],
            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600,
        )
        if imported.returncode != 0:
            raise RuntimeError(f"the import failed: {imported.stdout}{imported.stderr}")
        print(f"imported {args.leads:,} leads; the rules allow {expected:,} invites", flush=True)

        setup = Setup(
            work=work, environment=environment, sink_log=sink_log, ledger=Ledger(data_database), workers={},
            expected=expected, args=args, started=started,
        )
        for name in ("worker-1", "worker-2"):
            setup.workers[name] = start_worker(setup, name)

        if args.mode in ("all", "scale"):
            scale_mode(setup, results)
        if args.mode in ("all", "kill"):
            kill_mode(setup, results)
    except Exception as exc:  # noqa: BLE001 (reported as a failed check, then everything is cleaned up)
        results.check(False, f"the check stopped: {exc}")
    finally:
        for process in reversed(started):
            stop(process)
        if setup is not None:
            setup.ledger.connection.close()
        for database in created:
            try:
                drop_database(database)
            except Exception as exc:  # noqa: BLE001 (the other database is still dropped)
                print(f"FAIL: could not drop database {database}: {exc}")
                results.failed = True
        if not args.keep and not results.failed:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        elif results.failed:
            print(f"logs kept in {work}")

    print(f"{'FAIL' if results.failed else 'PASS'}: {sum(line.startswith('PASS') for line in results.lines)} checks passed, "
          f"{sum(line.startswith('FAIL') for line in results.lines)} failed; {time.monotonic() - began:.0f} s in all")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
