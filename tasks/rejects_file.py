"""Write the rejected rows of an import to a CSV file that is safe to open in a spreadsheet."""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from leadflow.errors import ImportFileError

# A cell that starts with one of these is read as a formula by Excel, LibreOffice and
# Google Sheets. Tab and CR are on the list because some of them skip those first.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value: str) -> str:
    """Prefix a cell that a spreadsheet would run as a formula with an apostrophe, so it stays text."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


class RejectsFile:
    """A CSV of rejected rows: `line`, `reason`, then the row's own columns as they were read.

    The file is UTF-8 with a byte-order mark, so Excel opens accents correctly, and
    every cell is neutralized against formula injection. Rows are written as they
    are rejected, so the file's size, not memory, grows with the rejections.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: TextIO | None = None
        self._rows: Any = None
        self._width = 0

    def __enter__(self) -> RejectsFile:
        try:
            self._handle = self.path.open("w", encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise ImportFileError(
                f"cannot write the rejects file {self.path}: {exc.strerror}; choose another --rejects path"
            ) from exc
        self._rows = csv.writer(self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.close()

    def write_header(self, headers: list[str]) -> None:
        self._width = len(headers)
        self._rows.writerow(["line", "reason", *(neutralize_cell(header) for header in headers)])

    def write_row(self, line: int, reason: str, values: list[str]) -> None:
        """Write one rejected row; a row wider than the header keeps its extra fields."""
        padded = values + [""] * (self._width - len(values))
        self._rows.writerow([line, neutralize_cell(reason), *(neutralize_cell(value) for value in padded)])
