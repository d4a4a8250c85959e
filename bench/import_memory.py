#!/usr/bin/env python3
"""Measure the peak memory and time of `leadflow leads import` on generated lists.

    python3 bench/import_memory.py                  1,000,000 rows
    python3 bench/import_memory.py 100000 1000000   several sizes, to see whether memory grows with rows

Each list has a header, 2% repeated addresses, 1% invalid addresses and some
blank lines. Every import runs in its own process on a new SQLite database in a
temporary folder. The peak resident set size is that child's, from wait4.
Run it from the checkout after `python3 dev.py install`.
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LEADFLOW = ROOT / ".venv" / "bin" / "leadflow"


def write_list(path: Path, rows: int, *, seed: int = 1) -> None:
    """Write `rows` data rows on reserved example domains."""
    generator = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "First Name", "Last Name", "Company", "Job Title", "Customer"])
        for number in range(rows):
            draw = generator.random()
            if draw < 0.01:
                email = f"broken-{number}"
            elif draw < 0.03 and number > 0:
                email = f"Person{generator.randrange(number)}@Example.com"
            else:
                email = f"person{number}@example.com"
            if draw > 0.999:
                writer.writerow([])
            writer.writerow([email, "Ann", "Lee", "Acme, Inc.", "Head of Marketing", "yes" if draw > 0.9 else "no"])


def measure(rows: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"leads-{rows}.csv"
        write_list(path, rows)
        size_mib = path.stat().st_size / 2**20
        environment = dict(os.environ, LEADFLOW_DATA_DIR=str(Path(folder) / "data"))
        environment.pop("LEADFLOW_DATABASE_URL", None)

        output = Path(folder) / "output.txt"
        started = time.monotonic()
        with output.open("w") as handle:
            child = subprocess.Popen(
                [str(LEADFLOW), "leads", "import", str(path)], env=environment, stdout=handle, stderr=subprocess.STDOUT
            )
            # wait4 returns this child's own resource usage; ru_maxrss is in KiB on Linux.
            _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.monotonic() - started
        exit_code = os.waitstatus_to_exitcode(status)
        child.returncode = exit_code
        lines = output.read_text().splitlines()

    summary = [line for line in lines if line.startswith("read ")]
    print(f"{rows:,} rows ({size_mib:.0f} MiB): exit {exit_code}, {elapsed:.0f} s, peak RSS {usage.ru_maxrss / 1024:.0f} MiB")
    print("  " + (summary[0] if summary else "\n  ".join(lines[-5:])))


def main(arguments: list[str]) -> int:
    sizes = [int(argument) for argument in arguments] or [1_000_000]
    for rows in sorted(sizes):
        measure(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
