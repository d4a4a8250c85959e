"""Kill a trial-invite campaign with SIGKILL again and again under SMTP faults, then check nothing was sent twice.

    .venv/bin/python -m bench.fault_injection --leads 5000 --cycles 20 --defer-share 0.05 --bounces 50

Everything runs on loopback in a temporary folder: the fault SMTP server
(bench.fault_smtp) in this process, a Prefect server, and each campaign launch
as a `leadflow campaign launch` process. Each cycle kills the launch at a random
moment: either after a random delay, or from inside the SMTP server after it has
accepted a message and before it replies. That is the worst case, because the
server has the message and the worker never learns it. After the cycles, the
campaign is launched without kills until it reports nothing left to send. The
check then counts, per Message-ID, what the server accepted.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.fault_smtp import FaultHandler, FaultPlan, fault_server, free_port

CAMPAIGN = "faults"
DEFAULT_CONNECTIONS = 4
FINAL_RUNS = 5


@dataclass
class Report:
    leads: int
    bouncing: int
    connections: int
    """SMTP connections per sending task: each can leave one ambiguous send per kill."""
    kills: int = 0
    kills_in_data: int = 0
    finished_before_kill: int = 0
    final_runs: int = 0
    seconds: float = 0.0
    ledger: Counter[str] = field(default_factory=Counter)
    replies: Counter[str] = field(default_factory=Counter)
    ambiguous: list[str] = field(default_factory=list)
    """Message-IDs marked ambiguous, with whether the server has them."""
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [
            f"leads {self.leads:,}, bouncing addresses {self.bouncing}, kills {self.kills} "
            f"({self.kills_in_data} while the server held an unacknowledged message), "
            f"launches that finished before their kill {self.finished_before_kill}, final launches {self.final_runs}",
            "ledger: " + ", ".join(f"{status} {count:,}" for status, count in sorted(self.ledger.items())),
            "server replies: " + ", ".join(f"{code} {count:,}" for code, count in sorted(self.replies.items())),
            f"ambiguous: {len(self.ambiguous)} (at most one per connection and kill allowed: "
            f"{self.connections} x {self.kills} = {self.connections * self.kills})",
            *(f"  {line}" for line in self.ambiguous),
            f"time: {self.seconds:.0f} s",
            "PASS" if self.passed else "FAIL:",
            *(f"  {problem}" for problem in self.problems),
        ]


def _environment(
    workdir: Path, smtp_url: str, prefect_api_url: str, batch_size: int, database_url: str | None
) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("LEADFLOW_")}
    environment.update(
        {
            "LEADFLOW_DATA_DIR": str(workdir / "data"),
            "LEADFLOW_DATABASE_URL": database_url or f"sqlite:///{workdir / 'leadflow.db'}",
            "LEADFLOW_SMTP_URL": smtp_url,
            "LEADFLOW_SMTP_TIMEOUT_SECONDS": "10",
            "LEADFLOW_BATCH_SIZE": str(batch_size),
            "LEADFLOW_RETRY_BACKOFF_SECONDS": "0.2",
            "LEADFLOW_RETRY_WAIT_SECONDS": "20",
            "LEADFLOW_MAX_SEND_ATTEMPTS": "12",
            "PREFECT_API_URL": prefect_api_url,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    return environment


def _leadflow(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "leadflow.cli", *arguments]


def _write_leads(path: Path, count: int) -> list[str]:
    addresses = [f"lead{number:05d}@example.com" for number in range(count)]
    path.write_text("email,first_name\n" + "".join(f"{address},Lead{number}\n" for number, address in enumerate(addresses)))
    return addresses


def _kill_cycle(
    environment: dict[str, str], handler: FaultHandler, chooser: random.Random, report: Report, log_file: Path
) -> None:
    """Launch the campaign once and kill it at a random moment."""
    in_data = chooser.random() < 0.5
    with log_file.open("ab") as log:
        process = subprocess.Popen(_leadflow("campaign", "launch", "trial-invite", "--name", CAMPAIGN), env=environment, stdout=log, stderr=subprocess.STDOUT)
    fired = threading.Event()
    if in_data:
        countdown = [chooser.randint(1, 300)]

        def kill_in_data(message_id: str) -> None:
            countdown[0] -= 1
            if countdown[0] == 0 and not fired.is_set():
                fired.set()
                os.kill(process.pid, signal.SIGKILL)

        handler.on_data = kill_in_data
        deadline = time.monotonic() + 120
        while process.poll() is None and not fired.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        handler.on_data = None
    else:
        delay = chooser.uniform(1.0, 12.0)
        deadline = time.monotonic() + delay
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if process.poll() is None:
            fired.set()
            os.kill(process.pid, signal.SIGKILL)
    if not fired.is_set() and process.poll() is None:
        fired.set()
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    if fired.is_set():
        report.kills += 1
        report.kills_in_data += in_data
    else:
        report.finished_before_kill += 1


def _check(report: Report, handler: FaultHandler, database_url: str, bouncing: set[str]) -> None:
    """Compare the ledger with what the server accepted and fill in the report."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT leads.email, leads.suppressed_at, email_ledger.status, email_ledger.message_id "
                "FROM leads LEFT JOIN email_ledger ON email_ledger.lead_id = leads.id"
            )
        ).all()
    engine.dispose()

    report.replies = Counter(handler.replies)
    for message_id, count in handler.accepted.items():
        if count > 1:
            report.problems.append(f"{message_id} accepted {count} times")
    for email, suppressed_at, status, message_id in rows:
        report.ledger[status or "none"] += 1
        accepted = handler.accepted.get(message_id, 0) if message_id else 0
        if status == "ambiguous":
            report.ambiguous.append(f"{message_id} ({'accepted by the server' if accepted else 'not accepted'})")
        elif email in bouncing:
            if status != "bounced" or suppressed_at is None:
                report.problems.append(f"bouncing address {email}: ledger {status}, suppressed {suppressed_at is not None}")
            if handler.recipient_attempts[email] != 1:
                report.problems.append(f"bouncing address {email} tried {handler.recipient_attempts[email]} times")
        elif status != "sent" or accepted != 1:
            report.problems.append(f"{email}: ledger {status}, accepted {accepted} times")
    if len(report.ambiguous) > report.kills * report.connections:
        report.problems.append(
            f"{len(report.ambiguous)} ambiguous sends after {report.kills} kills with {report.connections} connections each"
        )


def run(
    *, leads: int, cycles: int, defer_share: float, bounces: int, seed: int = 1, batch_size: int = 100,
    connections: int = DEFAULT_CONNECTIONS, prefect_api_url: str | None = None, workdir: Path | None = None,
    database_url: str | None = None,
) -> Report:
    """Run the whole fault-injection check and return its report.

    `database_url` names a database with no leads yet. Without it, the check uses a new SQLite
    file in the work folder.
    """
    chooser = random.Random(seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="leadflow-faults-") as temporary:
        folder = workdir or Path(temporary)
        addresses = _write_leads(folder / "leads.csv", leads)
        bouncing = set(chooser.sample(addresses, bounces))
        codes = ("550 5.1.1 no such user", "551 5.1.6 user has moved", "553 5.1.3 mailbox name not allowed")
        plan = FaultPlan(
            defer_share=defer_share, bounces={address: chooser.choice(codes) for address in bouncing},
            drop_every=(20, 60), seed=seed,
        )
        report = Report(leads=leads, bouncing=bounces, connections=connections)
        with fault_server(plan) as (smtp_url, handler):
            own_server = prefect_api_url is None
            if own_server:
                prefect_api_url = _start_prefect(folder)
            assert prefect_api_url is not None
            environment = _environment(folder, smtp_url, prefect_api_url, batch_size, database_url)
            environment["LEADFLOW_SMTP_CONNECTIONS"] = str(connections)
            log_file = folder / "launches.log"
            try:
                subprocess.run(_leadflow("leads", "import", str(folder / "leads.csv")), env=environment, check=True, capture_output=True)
                for _ in range(cycles):
                    _kill_cycle(environment, handler, chooser, report, log_file)
                for _ in range(FINAL_RUNS):
                    report.final_runs += 1
                    with log_file.open("ab") as log:
                        finished = subprocess.run(
                            _leadflow("campaign", "launch", "trial-invite", "--name", CAMPAIGN),
                            env=environment, stdout=log, stderr=subprocess.STDOUT,
                        )
                    if finished.returncode == 0:
                        break
            finally:
                if own_server:
                    _stop_prefect(folder)
            _check(report, handler, environment["LEADFLOW_DATABASE_URL"], bouncing)
    report.seconds = time.monotonic() - started
    return report


def _prefect_settings(folder: Path):  # noqa: ANN202
    from leadflow.settings import Settings

    return Settings(data_dir=folder / "prefect-data", prefect_port=free_port())


_servers: dict[Path, object] = {}


def _start_prefect(folder: Path) -> str:
    from leadflow.prefect_server import start_server

    settings = _prefect_settings(folder)
    server = start_server(settings)
    _servers[folder] = settings
    return server.url


def _stop_prefect(folder: Path) -> None:
    from leadflow.prefect_server import stop_server

    settings = _servers.pop(folder, None)
    if settings is not None:
        stop_server(settings)  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=5000, help="leads on the list (default 5000)")
    parser.add_argument("--cycles", type=int, default=20, help="kill-and-restart cycles (default 20)")
    parser.add_argument("--defer-share", type=float, default=0.05, help="share of messages deferred with a 4xx (default 0.05)")
    parser.add_argument("--bounces", type=int, default=50, help="addresses that get a hard bounce (default 50)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--batch-size", type=int, default=100, help="LEADFLOW_BATCH_SIZE of the launches (default 100)")
    parser.add_argument(
        "--connections", type=int, default=DEFAULT_CONNECTIONS,
        help=f"LEADFLOW_SMTP_CONNECTIONS of the launches (default {DEFAULT_CONNECTIONS}, leadflow's default)",
    )
    arguments = parser.parse_args()
    report = run(
        leads=arguments.leads, cycles=arguments.cycles, defer_share=arguments.defer_share, bounces=arguments.bounces,
        seed=arguments.seed, batch_size=arguments.batch_size, connections=arguments.connections,
    )
    print("\n".join(report.lines()))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
