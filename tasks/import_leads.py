"""Import a mailing-list CSV: stream the rows, merge duplicates, mark customers, report bad rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, col, select

from leadflow.clock import now
from leadflow.errors import ImportFileError
from models import ALLOWED_TRANSITIONS, Lead, Stage, StageChange
from models.leads import NAME_MAX_LENGTH
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.list_columns import ColumnChoice, ColumnMap, CustomerRule, is_email_header, map_columns
from tasks.list_file import ListFormat, csv_dialect, detect_format, open_text
from tasks.list_values import InvalidFlag, clean_text, parse_flag
from tasks.rejects_file import RejectsFile
from tasks.seen_addresses import SeenAddresses
from tasks.stages import record_stage_change
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
class _ParsedRow:
    line: int
    email: str
    profile: dict[str, str]
    is_customer: bool
    consent: bool | None
    do_not_email: bool

    def merge(self, later: _ParsedRow) -> None:
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


def _parse_row(values: list[str], line: int, columns: ColumnMap, reject: Reject) -> _ParsedRow | None:
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

    matches_rule = any(values[index].strip().casefold() == wanted for index, wanted in columns.customer_rules)
    return _ParsedRow(
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
) -> Iterator[_ParsedRow]:
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
        if not any(value.strip() for value in values):
            summary.blank_lines += 1
        else:
            summary.read += 1
            parsed = _parse_row(values, line, columns, reject)
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


def _apply_flags(lead: Lead, row: _ParsedRow, *, file: str, at: datetime) -> bool:
    """Store the consent value and suppress a do-not-email or no-consent lead; return True when anything changed.

    A suppression is never lifted by an import, so a later "yes" leaves it in place.
    """
    changed = False
    if row.consent is not None and lead.marketing_consent != row.consent:
        lead.marketing_consent = row.consent
        changed = True
    reason = row.suppression_reason
    if reason is not None and lead.suppressed_at is None:
        lead.suppressed_at = at
        lead.suppression_reason = f"{reason} in {file} line {row.line}"[:200]
        changed = True
    return changed


def _write_chunk(
    chunk: dict[str, _ParsedRow], *, session: Session, summary: ImportSummary, seen: SeenAddresses, actor: str
) -> None:
    moment = now()
    emails = list(chunk)
    existing = {lead.email: lead for lead in session.exec(select(Lead).where(col(Lead.email).in_(emails)))}
    read_before = seen.add(emails)
    new_leads: list[tuple[Lead, _ParsedRow]] = []

    for email, row in chunk.items():
        lead = existing.get(email)
        first_in_file = email not in read_before
        summary.duplicates_merged += not first_in_file
        if lead is None:
            lead = Lead(email=email, source=summary.file[-200:], created_at=moment, updated_at=moment)
            _merge_profile(lead, row.profile)
            _apply_flags(lead, row, file=summary.file, at=moment)
            session.add(lead)
            new_leads.append((lead, row))
            summary.imported += 1
            summary.customers += row.is_customer
            summary.suppressed += row.suppression_reason is not None
            continue

        if row.is_customer and (first_in_file or not lead.is_customer):
            summary.customers += 1
        if row.suppression_reason is not None and (first_in_file or lead.suppressed_at is None):
            summary.suppressed += 1
        # NOTE: a repeat of an address in a later chunk is merged here, after the first
        # occurrence was written, so re-importing a file whose repeats differ rewrites that lead.
        changed = _merge_profile(lead, row.profile)
        changed = _apply_flags(lead, row, file=summary.file, at=moment) or changed
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
        reason = f"marked customer in {summary.file} line {row.line}"
        record_stage_change(lead, Stage.CUSTOMER, session=session, reason=reason, actor=actor, at=at)


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

