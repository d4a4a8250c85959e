"""Import a mailing-list CSV: stream the rows, merge duplicates, mark customers, report bad rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from sqlmodel import Session, col, select

from leadflow.clock import now
from leadflow.errors import ImportFileError
from models import ALLOWED_TRANSITIONS, Lead, Stage, StageChange
from models.leads import NAME_MAX_LENGTH
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.list_columns import ColumnMap, CustomerRule, map_columns
from tasks.stages import record_stage_change
from tasks.suppression import mark_listed_leads

CHUNK_ROWS = 1000
"""Rows merged and written per database round trip; memory per chunk stays small."""

MAX_KEPT_REJECTIONS = 1000
"""Rejected rows kept for the report; every rejection is counted either way."""

_PROFILE_FIELDS = ("first_name", "last_name", "company", "title")
_CONTROL_CHARACTERS = {code: " " for code in [*range(32), 127]}


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str


@dataclass
class ImportSummary:
    """Counts of one import, by outcome."""

    file: str
    dry_run: bool
    columns: dict[str, str] = field(default_factory=dict)
    unused_email_columns: list[str] = field(default_factory=list)
    read: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_merged: int = 0
    customers: int = 0
    blank_lines: int = 0
    rejected: int = 0
    rejections: list[RejectedRow] = field(default_factory=list)

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_KEPT_REJECTIONS:
            self.rejections.append(RejectedRow(line, reason))


@dataclass
class _ParsedRow:
    line: int
    email: str
    profile: dict[str, str]
    is_customer: bool


class _CountingReader(io.RawIOBase):
    """Counts the bytes read so far, so progress can be shown while the csv module streams."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)


def _clean_text(value: str) -> str:
    """Replace control characters (CR and LF included) with spaces and collapse runs of spaces."""
    return " ".join(value.translate(_CONTROL_CHARACTERS).split())


def _detect_dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _parse_row(values: list[str], line: int, columns: ColumnMap, summary: ImportSummary) -> _ParsedRow | None:
    width = len(columns.headers)
    if len(values) > width and any(value.strip() for value in values[width:]):
        summary.reject(line, f"has {len(values)} fields but the header has {width}; check for an unquoted delimiter")
        return None
    if len(values) < width:
        summary.reject(line, f"has {len(values)} fields but the header has {width}; check for a missing delimiter or quote")
        return None

    raw_email = values[columns.positions["email"]]
    if not raw_email.strip():
        summary.reject(line, f"the {columns.email_header!r} column is empty")
        return None
    try:
        email = normalize_email(raw_email)
    except InvalidEmailAddress as exc:
        summary.reject(line, f"invalid email address: {exc}")
        return None

    profile: dict[str, str] = {}
    for name in _PROFILE_FIELDS:
        if name in columns.positions:
            profile[name] = _clean_text(values[columns.positions[name]])
    if "full_name" in columns.positions and not (profile.get("first_name") or profile.get("last_name")):
        first, _, last = _clean_text(values[columns.positions["full_name"]]).partition(" ")
        profile["first_name"], profile["last_name"] = first, last
    for name, value in profile.items():
        if len(value) > NAME_MAX_LENGTH:
            summary.reject(line, f"{name.replace('_', ' ')} is longer than {NAME_MAX_LENGTH} characters")
            return None

    is_customer = any(values[index].strip().casefold() == wanted for index, wanted in columns.customer_rules)
    return _ParsedRow(line=line, email=email, profile=profile, is_customer=is_customer)


def _iter_rows(
    text: io.TextIOBase,
    dialect: type[csv.Dialect] | csv.Dialect,
    columns_out: list[ColumnMap],
    rules: list[CustomerRule],
    summary: ImportSummary,
) -> Iterator[_ParsedRow]:
    reader = csv.reader(text, dialect=dialect)

    try:
        headers = next(reader)
    except StopIteration:
        raise ImportFileError(f"{summary.file} is empty; expected a header row such as: email,first_name,last_name") from None
    except csv.Error as exc:
        raise ImportFileError(f"{summary.file}: the header row is not valid CSV ({exc})") from exc
    columns = map_columns([header.strip() for header in headers], rules)
    columns_out.append(columns)
    summary.columns = columns.describe()
    summary.unused_email_columns = columns.unused_email_columns

    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            summary.read += 1
            summary.reject(line, f"not valid CSV ({exc})")
            line = reader.line_num + 1
            continue
        if not any(value.strip() for value in values):
            summary.blank_lines += 1
        else:
            summary.read += 1
            parsed = _parse_row(values, line, columns, summary)
            if parsed is not None:
                yield parsed
        line = reader.line_num + 1


def _merge_profile(lead: Lead, profile: dict[str, str]) -> bool:
    """Copy the non-empty values of `profile` onto `lead`; return True when anything changed."""
    changed = False
    for name, value in profile.items():
        if value and getattr(lead, name) != value:
            setattr(lead, name, value)
            changed = True
    return changed


def _write_chunk(
    chunk: dict[str, _ParsedRow], *, session: Session, summary: ImportSummary, seen: set[str], actor: str
) -> None:
    moment = now()
    emails = list(chunk)
    existing = {lead.email: lead for lead in session.exec(select(Lead).where(col(Lead.email).in_(emails)))}
    new_leads: list[tuple[Lead, _ParsedRow]] = []

    for email, row in chunk.items():
        lead = existing.get(email)
        first_in_file = email not in seen
        seen.add(email)
        if lead is None:
            lead = Lead(email=email, source=summary.file[-200:], created_at=moment, updated_at=moment)
            _merge_profile(lead, row.profile)
            session.add(lead)
            new_leads.append((lead, row))
            summary.imported += 1
            summary.customers += row.is_customer
            continue

        changed = _merge_profile(lead, row.profile)
        if row.is_customer and (first_in_file or not lead.is_customer):
            summary.customers += 1
        if row.is_customer and not lead.is_customer:
            changed = True
            _mark_customer(lead, row, session=session, summary=summary, actor=actor, at=moment)
        if changed:
            lead.updated_at = moment
            session.add(lead)
        if first_in_file:
            summary.updated += changed
            summary.unchanged += not changed

    # New leads need their ids before history rows can point at them.
    session.flush()
    for lead, row in new_leads:
        session.add(
            StageChange(
                lead_id=lead.id,
                from_stage=None,
                to_stage=Stage.SUBSCRIBER.value,
                reason=f"imported from {summary.file} line {row.line}",
                actor=actor,
                created_at=moment,
            )
        )
        if row.is_customer:
            _mark_customer(lead, row, session=session, summary=summary, actor=actor, at=moment)
    session.flush()


def _mark_customer(
    lead: Lead, row: _ParsedRow, *, session: Session, summary: ImportSummary, actor: str, at: datetime
) -> None:
    """Flag `lead` as a customer and, where the funnel allows it, move its stage to `customer`."""
    lead.is_customer = True
    if Stage.CUSTOMER in ALLOWED_TRANSITIONS[Stage(lead.stage)]:
        reason = f"marked customer by --customer-if in {summary.file} line {row.line}"
        record_stage_change(lead, Stage.CUSTOMER, session=session, reason=reason, actor=actor, at=at)


def import_leads(
    path: Path,
    *,
    session: Session,
    customer_rules: list[CustomerRule] | None = None,
    dry_run: bool = False,
    actor: str = "cli:leads-import",
    on_progress: Callable[[int, int], None] | None = None,
) -> ImportSummary:
    """Import the mailing list at `path` through `session` and return the summary.

    Rows are streamed and written in chunks; each chunk is committed unless
    `dry_run`, in which case everything is rolled back at the end. A bad row is
    counted and reported with its line number, and the good rows still go in.
    `on_progress(bytes_read, total_bytes)` is called after each chunk.
    """
    summary = ImportSummary(file=path.name, dry_run=dry_run)
    try:
        total_bytes = path.stat().st_size
        with path.open("rb") as head:
            sample = head.read(64 * 1024).decode("utf-8-sig", errors="ignore")
        raw = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}; check the path and its permissions") from exc

    dialect = _detect_dialect(sample)
    counter = _CountingReader(raw)
    text = io.TextIOWrapper(io.BufferedReader(counter), encoding="utf-8-sig", newline="")
    columns: list[ColumnMap] = []
    seen: set[str] = set()
    chunk: dict[str, _ParsedRow] = {}

    def flush_chunk() -> None:
        _write_chunk(chunk, session=session, summary=summary, seen=seen, actor=actor)
        # Addresses on the suppression list (unsubscribed, bounced, erased) stay suppressed when imported again.
        mark_listed_leads(session=session, emails=list(chunk), at=now())
        chunk.clear()
        if not dry_run:
            session.commit()
        if on_progress is not None:
            on_progress(counter.bytes_read, total_bytes)

    try:
        for row in _iter_rows(text, dialect, columns, customer_rules or [], summary):
            previous = chunk.get(row.email)
            if previous is not None or row.email in seen:
                summary.duplicates_merged += 1
            if previous is not None:
                previous.profile.update({name: value for name, value in row.profile.items() if value})
                previous.is_customer = previous.is_customer or row.is_customer
                continue
            chunk[row.email] = row
            if len(chunk) >= CHUNK_ROWS:
                flush_chunk()
        if chunk:
            flush_chunk()
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path.name} is not UTF-8 text (byte {exc.start} cannot be decoded); save it as CSV UTF-8 and import again"
        ) from exc
    finally:
        text.close()

    if dry_run:
        session.rollback()
    return summary
