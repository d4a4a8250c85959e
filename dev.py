#!/usr/bin/env python3
"""Install leadflow into ./.venv from the lock file when needed, then run a command in it.

    python3 dev.py demo            the funnel on a generated sample list
    python3 dev.py test [ARGS]     the test suite (ARGS go to pytest)
    python3 dev.py leadflow ARGS   any leadflow command, such as: leadflow leads import FILE
    python3 dev.py install         only install

Needs nothing but Python 3.11 or newer. The install is skipped while
requirements.lock and pyproject.toml are unchanged since the last one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("LEADFLOW_VENV", ROOT / ".venv"))
STAMP = VENV / ".leadflow-install-stamp"


def _bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.lock", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def install() -> None:
    """Create the virtual environment and install the locked dependencies and leadflow itself."""
    if STAMP.exists() and STAMP.read_text() == _fingerprint():
        return
    if not _bin("python").exists():
        print(f"dev.py: creating a virtual environment in {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    python = str(_bin("python"))
    print("dev.py: installing the locked dependencies (about a minute the first time)", file=sys.stderr)
    quiet = ["--quiet", "--disable-pip-version-check"]
    subprocess.run([python, "-m", "pip", "install", *quiet, "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([python, "-m", "pip", "install", *quiet, "--no-deps", "-e", str(ROOT)], check=True)
    STAMP.write_text(_fingerprint())


def main(arguments: list[str]) -> int:
    if sys.version_info < (3, 11):
        print(f"dev.py: leadflow needs Python 3.11 or newer; this is {sys.version.split()[0]}", file=sys.stderr)
        return 2
    if not arguments or arguments[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0

    command, rest = arguments[0], arguments[1:]
    try:
        install()
    except subprocess.CalledProcessError as exc:
        print(f"dev.py: the install failed (exit code {exc.returncode}); see pip's output above", file=sys.stderr)
        return exc.returncode or 1

    environment = dict(os.environ)
    # Prefect sends usage reports unless these are set.
    environment.setdefault("DO_NOT_TRACK", "1")
    environment.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if command == "install":
        return 0
    if command == "test":
        program = [str(_bin("python")), "-m", "pytest", *rest]
    elif command == "leadflow":
        program = [str(_bin("leadflow")), *rest]
    else:
        program = [str(_bin("leadflow")), command, *rest]
    return subprocess.run(program, cwd=ROOT, env=environment).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
