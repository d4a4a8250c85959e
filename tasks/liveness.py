"""Check whether the worker process that owns a ledger row is still alive.

A worker writes its identity into every row it claims. The identity names the
host, the kernel boot, the PID namespace, the PID and the process start time, so
a later launch on the same machine and in the same PID namespace can check the
process directly: when it is gone, or the PID now belongs to a process that
started at another time, the worker is dead for certain and its rows can be
recovered at once. A worker on another host or in another container cannot be
checked this way; its rows wait for the lease to pass since its last sign of life.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path

_PROC = Path("/proc")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> tuple[str, str] | None:
    """Return the state letter and the start time (clock ticks since boot) of `pid`, or None when it does not exist."""
    stat = _read(_PROC / str(pid) / "stat")
    if stat is None:
        return None
    # The command name (field 2) is in brackets and may contain spaces; fields after it split cleanly.
    fields = stat.rpartition(")")[2].split()
    return fields[0], fields[19]


def _namespace() -> str:
    """Return the boot id and the PID namespace of this process, or "" where /proc does not show them."""
    boot = (_read(_PROC / "sys" / "kernel" / "random" / "boot_id") or "")[:8]
    try:
        pid_namespace = str(os.stat(_PROC / "self" / "ns" / "pid").st_ino)
    except OSError:
        return ""
    return f"{boot}-{pid_namespace}" if boot else ""


@lru_cache(maxsize=1)
def _this_process() -> str:
    pid = os.getpid()
    started = _process_start(pid)
    return f"{socket.gethostname()}/{_namespace() or '-'}/{pid}/{started[1] if started else '-'}"


def current_owner() -> str:
    """Return this process's identity as stored in `EmailSend.owner`."""
    # A forked child inherits the cache, so compare the PID before trusting it.
    identity = _this_process()
    if identity.split("/")[2] != str(os.getpid()):
        _this_process.cache_clear()
        identity = _this_process()
    return identity


def owner_is_dead(owner: str) -> bool | None:
    """Return True when the process `owner` is known to have stopped, False when it runs, None when it cannot be checked."""
    parts = owner.split("/")
    if len(parts) != 4:
        return None
    host, namespace, pid_text, started = parts
    if host != socket.gethostname() or namespace == "-" or namespace != _namespace() or not pid_text.isdigit():
        return None
    found = _process_start(int(pid_text))
    if found is None:
        return True
    state, start = found
    # A zombie (Z) or dead (X) process cannot send; a different start time means the PID was reused.
    return state in ("Z", "X") or start != started
