"""Measure what the ledger protocol costs per message: the `sending` commit and the outcome commit.

    .venv/bin/python -m bench.commit_cost [--messages 2000] [--database-url URL]

Without --database-url it uses a new SQLite file (WAL, synchronous=NORMAL, as
leadflow configures it) in a temporary folder. A PostgreSQL URL gets a new schema,
dropped at the end, so the database's own tables are left alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from sqlmodel import Session


def measure(database_url: str, messages: int) -> list[float]:
    """Claim `messages` keys, then time each hand-over commit plus outcome commit; return milliseconds per message."""
    from leadflow.clock import wall_clock
    from models import Lead, SendStatus
    from models.db import create_db_engine, upgrade_database
    from tasks.ledger import Outcome, claim_sends, get_or_create_campaign, mark_handed_over, record_outcomes

    engine = create_db_engine(database_url)
    upgrade_database(engine)
    with Session(engine) as session:
        leads = [Lead(email=f"cost{number}@example.com") for number in range(messages)]
        session.add_all(leads)
        session.flush()
        campaign, _ = get_or_create_campaign(session=session, kind="bench", name=f"cost-{time.time_ns()}")
        claims = claim_sends(
            session=session, campaign=campaign, lead_ids=[lead.id or 0 for lead in leads], step="bench", actor="bench",
            owner="bench", at=wall_clock(), wall_time=wall_clock(), domain="example.com", max_attempts=5,
        )
        session.commit()

    costs = []
    for claim in claims:
        started = time.perf_counter()
        with Session(engine) as session:
            mark_handed_over(session=session, ledger_id=claim.ledger_id, owner="bench", wall_time=wall_clock())
            session.commit()
        with Session(engine) as session:
            record_outcomes(session=session, outcomes=[Outcome(claim.ledger_id, SendStatus.SENT, wall_clock())])
            session.commit()
        costs.append((time.perf_counter() - started) * 1000)
    engine.dispose()
    return costs


@contextmanager
def scratch_url(database_url: str) -> Iterator[str]:
    """Yield `database_url`, or for PostgreSQL a URL on a new schema that is dropped afterwards."""
    from models.db import create_db_engine

    if not database_url.startswith("postgresql"):
        yield database_url
        return
    schema = f"leadflow_bench_{uuid.uuid4().hex[:12]}"
    admin = create_db_engine(database_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{database_url}{'&' if '?' in database_url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages to time (default 2000)")
    parser.add_argument("--database-url", help="SQLAlchemy URL; default: a new SQLite file")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="leadflow-commit-") as temporary:
        url = arguments.database_url or f"sqlite:///{Path(temporary) / 'cost.db'}"
        with scratch_url(url) as scoped:
            costs = sorted(measure(scoped, arguments.messages))
    print(
        f"{url.split(':')[0]}: two commits per message, median {statistics.median(costs):.2f} ms, "
        f"95th percentile {costs[int(len(costs) * 0.95)]:.2f} ms, over {len(costs):,} messages"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
