"""Import a suppression list from a CSV file: one address (or address hash) per row."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlmodel import Session

from leadflow.errors import ImportFileError
from models import SuppressionReason
from tasks.email_address import InvalidEmailAddress, normalize_email
from tasks.list_columns import map_columns
from tasks.suppression import add_hashes, address_hash, mark_listed_leads

CHUNK_ROWS = 1000
_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class SuppressionImportSummary:
    """Counts of one suppression-list import."""

    file: str
    read: int = 0
    added: int = 0
    already_listed: int = 0
    leads_suppressed: int = 0
    rejected: int = 0
    rejections: list[tuple[int, str]] = field(default_factory=list)
    """(line, reason) of the first rejected rows."""


def import_suppressions(
    path: Path, *, session: Session, reason: SuppressionReason, at: datetime
) -> SuppressionImportSummary:
    """Add every address in the email column of `path` to the suppression list and suppress matching leads.

    A value of 64 hexadecimal digits is taken as an address hash already (SHA-256
    of the trimmed, lower-cased address), as exported by other tools. Bad rows are
    reported with their line number and the good rows are imported.
    """
    summary = SuppressionImportSummary(file=path.name)
    try:
        handle = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}; check the path and its permissions") from exc

    emails: list[str] = []
    hashes: list[str] = []

    def flush() -> None:
        summary.added += add_hashes(session=session, hashes=hashes, reason=reason, source=path.name, at=at)
        summary.leads_suppressed += mark_listed_leads(session=session, emails=emails, at=at)
        emails.clear()
        hashes.clear()

    with handle:
        try:
            reader = csv.reader(handle)
            headers = next(reader, None)
            if headers is None:
                raise ImportFileError(f"{path.name} is empty; expected a header row with an email column")
            position = map_columns([header.strip() for header in headers], []).positions["email"]
            for values in reader:
                line = reader.line_num
                if not any(value.strip() for value in values):
                    continue
                summary.read += 1
                raw = values[position].strip() if position < len(values) else ""
                if _HEX_SHA256.match(raw.lower()):
                    hashes.append(raw.lower())
                else:
                    try:
                        email = normalize_email(raw)
                    except InvalidEmailAddress as exc:
                        summary.rejected += 1
                        if len(summary.rejections) < 1000:
                            summary.rejections.append((line, str(exc)))
                        continue
                    emails.append(email)
                    hashes.append(address_hash(email))
                if len(hashes) >= CHUNK_ROWS:
                    flush()
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path.name} is not UTF-8 text; save it as CSV UTF-8 and import again") from exc
        except csv.Error as exc:
            raise ImportFileError(f"{path.name} line {reader.line_num} is not valid CSV ({exc})") from exc
    flush()
    summary.already_listed = summary.read - summary.rejected - summary.added
    return summary
