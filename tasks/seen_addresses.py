"""The set of addresses already read in one import, kept on disk so memory stays bounded."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from types import TracebackType

CACHE_KIB = 8 * 1024
"""SQLite page cache of the scratch database; pages beyond it spill to a temporary file."""


class SeenAddresses:
    """A set of addresses in a private temporary SQLite database, deleted when closed.

    SQLite creates such a database for an empty file name; it lives in the page
    cache until that fills, then in a temporary file. It is separate from the
    leads database, so a dry run or a rollback never touches it.
    """

    def __init__(self) -> None:
        self._connection = sqlite3.connect("")
        self._connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._connection.execute("CREATE TABLE seen (email TEXT PRIMARY KEY) WITHOUT ROWID")

    def __enter__(self) -> SeenAddresses:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._connection.close()

    def add(self, emails: Iterable[str], *, look_up: Iterable[str] | None = None) -> set[str]:
        """Add `emails` and return those that were already in the set.

        When `look_up` is given, only those addresses are looked up, because the
        caller knows that the other ones cannot be in the set.
        """
        batch = list(emails)
        candidates = batch if look_up is None else list(look_up)
        already: set[str] = set()
        # SQLite's default limit is 999 parameters per statement before 3.32 and 32,766 since, so 500 fits both.
        for start in range(0, len(candidates), 500):
            part = candidates[start : start + 500]
            placeholders = ",".join("?" * len(part))
            already.update(
                email for (email,) in self._connection.execute(f"SELECT email FROM seen WHERE email IN ({placeholders})", part)
            )
        self._connection.executemany("INSERT OR IGNORE INTO seen (email) VALUES (?)", ((email,) for email in batch))
        return already
