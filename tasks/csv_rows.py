"""Small CSV files with a header row (sign-ups, survey answers), read row by row with line numbers."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leadflow.errors import ImportFileError
from tasks.list_columns import normalize_header


@contextmanager
def open_csv_rows(path: Path, *, example_header: str) -> Iterator[tuple[list[str], Iterator[tuple[int, list[str]]]]]:
    """Open a UTF-8 CSV file; yield its headers and an iterator of (first line number, values) per non-blank row.

    Raises `ImportFileError` when the file cannot be opened or has no header row;
    `example_header` is shown in that message.
    """
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}; check the path and its permissions") from exc

    with handle:
        reader = csv.reader(handle)
        try:
            headers = [header.strip() for header in next(reader)]
        except StopIteration:
            raise ImportFileError(f"{path.name} is empty; expected a header row such as: {example_header}") from None

        def rows() -> Iterator[tuple[int, list[str]]]:
            line = reader.line_num + 1
            for values in reader:
                if any(value.strip() for value in values):
                    yield line, values
                line = reader.line_num + 1

        yield headers, rows()


def find_column(headers: list[str], *names: str) -> int | None:
    """Return the position of the first header that matches one of `names` (case, spaces and punctuation ignored)."""
    wanted = {normalize_header(name) for name in names}
    return next((index for index, header in enumerate(headers) if normalize_header(header) in wanted), None)
