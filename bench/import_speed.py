"""Time `leadflow leads import` several times per list size, as bench/campaign_speed.py times it.

    .venv/bin/python -m bench.import_speed [--rows 100000 1000000] [--repeat 5] [--output FILE]

Each run writes the list with `write_leads_csv` (columns Email, First Name and
Company, every address distinct) and imports it with `python -m leadflow.cli
leads import FILE` in a child process, on a new data folder with a new SQLite
database. The wall time covers the whole child, Python start-up and imports
included; the peak memory is the child's own maximum resident set size. The
child's CPU time (user and system) and the machine's one-minute load average
before each run are recorded too, because other processes on the machine
stretch the wall time much more than the CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

from bench.campaign_speed import machine, measure_import


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_size(rows: int, repeat: int) -> dict:
    """Import a `rows`-row list `repeat` times and return every run with the best and median rates."""
    runs = []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        before = _children_cpu_seconds()
        with tempfile.TemporaryDirectory(prefix="leadflow-import-speed-") as folder:
            result = measure_import(rows=rows, folder=Path(folder))
        # Only the import's child ends between the two readings, so the difference is its CPU time.
        result["cpu_seconds"] = _children_cpu_seconds() - before
        result["load_average"] = load
        runs.append(result)
        print(
            f"{rows:,} rows: {result['seconds']:.2f} s, {result['rows_per_second']:,.0f} rows/s, "
            f"CPU {result['cpu_seconds']:.2f} s, peak RSS {result['peak_rss_mib']:.0f} MiB, "
            f"load average before {load:.1f}",
            flush=True,
        )
    seconds = [run["seconds"] for run in runs]
    return {
        "rows": rows,
        "runs": runs,
        "best_seconds": min(seconds),
        "median_seconds": statistics.median(seconds),
        "best_rows_per_second": rows / min(seconds),
        "median_rows_per_second": rows / statistics.median(seconds),
        "median_cpu_seconds": statistics.median(run["cpu_seconds"] for run in runs),
        "max_peak_rss_mib": max(run["peak_rss_mib"] for run in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000], help="rows per list (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="imports per list size (default 5)")
    parser.add_argument("--output", type=Path, help="also write the results to this JSON file")
    arguments = parser.parse_args()
    if arguments.repeat < 1:
        parser.error("--repeat must be 1 or more")

    results = {"machine": machine(), "sizes": [measure_size(rows, arguments.repeat) for rows in arguments.rows]}
    for size in results["sizes"]:
        print(
            f"{size['rows']:,} rows: best {size['best_seconds']:.2f} s ({size['best_rows_per_second']:,.0f} rows/s), "
            f"median {size['median_seconds']:.2f} s ({size['median_rows_per_second']:,.0f} rows/s), "
            f"median CPU {size['median_cpu_seconds']:.2f} s, peak RSS up to {size['max_peak_rss_mib']:.0f} MiB"
        )
    if arguments.output is not None:
        arguments.output.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {arguments.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
