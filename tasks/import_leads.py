"""Import a mailing-list CSV: stream the rows, merge duplicates, mark customers, report bad rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session

from leadflow.clock import now
from leadflow.errors import ImportFileError
from models.leads import NAME_MAX_LENGTH
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.lead_merge import merge_chunk
from tasks.list_columns import ColumnChoice, ColumnMap, CustomerRule, is_email_header, map_columns
from tasks.list_file import ListFormat, csv_dialect, detect_format, open_text
from tasks.list_values import InvalidFlag, clean_text, parse_flag
from tasks.rejects_file import RejectsFile
from tasks.seen_addresses import SeenAddresses
from tasks.suppression import mark_listed_leads

CHUNK_ROWS = 1000
"""Rows merged and written per database round trip; memory per chunk stays small."""

MAX_KEPT_REJECTIONS = 1000
"""Rejected rows kept for the report; every rejection is counted either way, and `--rejects` writes them all."""

_PROFILE_FIELDS = ("first_name", "last_name", "company", "title")
_FLAG_LABELS = {"customer": "customer", "consent": "consent", "do_not_email": "do-not-email"}


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str


@dataclass
class ImportSummary:
    """Counts of one import, by outcome.

    Every row read ends in exactly one of: imported, updated, unchanged,
    duplicates_merged or rejected. `customers` and `suppressed` count the distinct
    addresses that the file flags, whatever their outcome.
    """

    file: str
    dry_run: bool
    format: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    unused_email_columns: list[str] = field(default_factory=list)
    read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_merged: int = 0
    customers: int = 0
    suppressed: int = 0
    blank_lines: int = 0
    rejected: int = 0
    rejections: list[RejectedRow] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_KEPT_REJECTIONS:
            self.rejections.append(RejectedRow(line, reason))

    @property
    def changed(self) -> bool:
        """True when the import created or changed any lead."""
        return bool(self.imported or self.updated)


@dataclass
class ParsedRow:
    """A valid row of the list: its normalised address, cleaned values and flags, and the line it starts on."""

    line: int
    email: str
    profile: dict[str, str]
    is_customer: bool
    consent: bool | None
    do_not_email: bool

    def merge(self, later: ParsedRow) -> None:
        """Fold a later row with the same address into this one: non-empty values win, and so does a "no" to consent."""
        self.profile.update({name: value for name, value in later.profile.items() if value})
        self.is_customer = self.is_customer or later.is_customer
        self.do_not_email = self.do_not_email or later.do_not_email
        if later.consent is False or (later.consent is True and self.consent is None):
            self.consent = later.consent

    @property
    def suppression_reason(self) -> str | None:
        if self.do_not_email:
            return "do-not-email"
        if self.consent is False:
            return "no marketing consent"
        return None


Reject = Callable[[int, str, list[str]], None]


def _read_flags(values: list[str], columns: ColumnMap) -> dict[str, bool | None]:
    flags: dict[str, bool | None] = {}
    for name, label in _FLAG_LABELS.items():
        if name not in columns.positions:
            flags[name] = None
            continue
        try:
            flags[name] = parse_flag(values[columns.positions[name]])
        except InvalidFlag as exc:
            header = columns.headers[columns.positions[name]]
            raise InvalidFlag(f"invalid {label} value in column {header!r}: {exc}") from exc
    return flags


def _parse_row(values: list[str], line: int, columns: ColumnMap, reject: Reject) -> ParsedRow | None:
    width = len(columns.headers)
    if len(values) > width and any(value.strip() for value in values[width:]):
        reject(line, f"has {len(values)} fields but the header has {width}; check for an unquoted delimiter", values)
        return None
    if len(values) < width:
        reject(line, f"has {len(values)} fields but the header has {width}; check for a missing delimiter or quote", values)
        return None

    raw_email = values[columns.positions["email"]]
    if not raw_email.strip():
        reject(line, f"the {columns.email_header!r} column is empty", values)
        return None
    try:
        email = normalize_email(raw_email)
    except InvalidEmailAddress as exc:
        reject(line, f"invalid email address: {exc}", values)
        return None

    profile: dict[str, str] = {}
    for name in _PROFILE_FIELDS:
        if name in columns.positions:
            profile[name] = clean_text(values[columns.positions[name]])
    if "full_name" in columns.positions and not (profile.get("first_name") or profile.get("last_name")):
        first, _, last = clean_text(values[columns.positions["full_name"]]).partition(" ")
        profile["first_name"], profile["last_name"] = first, last
    for name, value in profile.items():
        if len(value) > NAME_MAX_LENGTH:
            reject(line, f"{name.replace('_', ' ')} is longer than {NAME_MAX_LENGTH} characters", values)
            return None

    try:
        flags = _read_flags(values, columns)
    except InvalidFlag as exc:
        reject(line, str(exc), values)
        return None

    matches_rule = bool(columns.customer_rules) and any(
        values[index].strip().casefold() == wanted for index, wanted in columns.customer_rules
    )
    return ParsedRow(
        line=line,
        email=email,
        profile=profile,
        is_customer=matches_rule or flags["customer"] is True,
        consent=flags["consent"],
        do_not_email=flags["do_not_email"] is True,
    )


def _iter_rows(
    text: io.TextIOBase,
    list_format: ListFormat,
    on_columns: Callable[[ColumnMap], None],
    rules: list[CustomerRule],
    choices: list[ColumnChoice],
    summary: ImportSummary,
    reject: Reject,
) -> Iterator[ParsedRow]:
    reader = csv.reader(text, dialect=csv_dialect(list_format.delimiter))

    try:
        headers = next(reader)
    except StopIteration:
        raise ImportFileError(f"{summary.file} is empty; expected a header row such as: email,first_name,last_name") from None
    except csv.Error as exc:
        raise ImportFileError(f"{summary.file}: the header row is not valid CSV ({exc})") from exc
    columns = map_columns([header.strip() for header in headers], rules, choices)
    on_columns(columns)

    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            summary.read += 1
            reject(line, f"not valid CSV ({exc})", [])
            line = reader.line_num + 1
            continue
        # Testing the joined fields once is quicker than testing each field, with the same result.
        if not "".join(values).strip():
            summary.blank_lines += 1
        else:
            summary.read += 1
            parsed = _parse_row(values, line, columns, reject)
            if parsed is not None:
                yield parsed
        line = reader.line_num + 1


def import_leads(
    path: Path,
    *,
    session: Session,
    customer_rules: list[CustomerRule] | None = None,
    column_choices: list[ColumnChoice] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    rejects_path: Path | None = None,
    dry_run: bool = False,
    actor: str = "cli:leads-import",
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import the mailing list at `path` through `session` and return the summary.

    The encoding and delimiter are detected unless given. Rows are streamed and
    written in chunks; each chunk is committed unless `dry_run`, in which case
    everything is rolled back at the end. A bad row is counted and reported with
    its line number (and written to `rejects_path` when given), and the good rows
    still go in. `on_progress(bytes_read, total_bytes)` is called after each chunk.
    """
    summary = ImportSummary(file=path.name, dry_run=dry_run)
    list_format = detect_format(path, is_email_header, encoding=encoding, delimiter=delimiter)
    summary.format = list_format.describe()
    total_bytes = path.stat().st_size
    text, counter = open_text(path, list_format)

    rejects_file = RejectsFile(rejects_path) if rejects_path is not None else nullcontext()
    with text, SeenAddresses() as seen, rejects_file as rejects:

        def reject(line: int, reason: str, values: list[str]) -> None:
            summary.reject(line, reason)
            if rejects is not None:
                rejects.write_row(line, reason, values)

        def use_columns(columns: ColumnMap) -> None:
            summary.columns = columns.describe()
            summary.unused_email_columns = columns.unused_email_columns
            if rejects is not None:
                rejects.write_header(columns.headers)

        chunk: dict[str, ParsedRow] = {}

        def flush_chunk() -> None:
            merge_chunk(chunk, session=session, summary=summary, seen=seen, actor=actor)
            # Addresses on the suppression list (unsubscribed, bounced, erased) stay suppressed when imported again.
            mark_listed_leads(session=session, emails=list(chunk), at=now())
            chunk.clear()
            if not dry_run:
                session.commit()
            if on_progress is not None:
                on_progress(counter.bytes_read, total_bytes)

        rows = _iter_rows(text, list_format, use_columns, customer_rules or [], column_choices or [], summary, reject)
        try:
            for row in rows:
                previous = chunk.get(row.email)
                if previous is not None:
                    summary.duplicates_merged += 1
                    previous.merge(row)
                    continue
                chunk[row.email] = row
                if len(chunk) >= CHUNK_ROWS:
                    flush_chunk()
            if chunk:
                flush_chunk()
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{path.name} cannot be read as {list_format.encoding} (byte {exc.start} of a block is invalid); "
                "pass the right --encoding, or save the file as CSV UTF-8 and import again"
            ) from exc

    if dry_run:
        session.rollback()
    return summary

