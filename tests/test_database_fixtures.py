"""The switch for the PostgreSQL half of the suite: skipped without the variable, failing on an unreachable server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from leadflow.settings import PROJECT_ROOT
from tests.conftest import free_port
from tests.databases import POSTGRESQL_VARIABLE

# A quick database test, which runs once per backend.
DATABASE_TEST = "tests/models/test_db.py::test_naive_time_is_rejected"


def run_pytest(tmp_path: Path, postgresql_url: str | None) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name != POSTGRESQL_VARIABLE}
    if postgresql_url is not None:
        environment[POSTGRESQL_VARIABLE] = postgresql_url
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "run"), DATABASE_TEST]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, timeout=180)


def test_postgresql_half_skips_without_variable(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, None)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert f"set {POSTGRESQL_VARIABLE} (for example" in result.stdout


def test_unreachable_server_fails_instead_of_skipping(tmp_path: Path) -> None:
    # Nothing listens on this loopback port, so the connection is refused at once.
    result = run_pytest(tmp_path, f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert "cannot connect to the PostgreSQL server" in result.stdout
    assert "skipped" not in result.stdout
