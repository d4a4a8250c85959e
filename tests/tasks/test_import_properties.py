"""Property-based tests of the importer: generated lists with random export quirks."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, select

from leadflow.errors import ImportFileError
from models import Lead, session_scope
from tasks.import_leads import ImportSummary, import_leads

ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "cp1252")
DELIMITERS = (",", ";", "\t", "|")
NEWLINES = ("\r\n", "\n", "\r")
EMAIL_HEADERS = ("Email", "E-mail", " EMAIL ADDRESS ", "Courriel", "E-Mail-Adresse", "Work Email")
NAME_HEADERS = ("Name", "Full Name", "Nom complet")
FLAG_HEADERS = ("Do Not Email", "Unsubscribed", "Email Opt Out")
NAMES = ("Ann", "Zoë", "José", "O'Brien", "Lee, Ann", 'The "Boss"', "Two\nLines", "Semi;colon", "Pi|pe", "Tab\tbed", "€uro")
TRUE_VALUES = ("Yes", "TRUE", "1", "x", "ja")
FALSE_VALUES = ("No", "false", "0", "", "non")
INVALID_ADDRESSES = ("not-an-address", "two@@example.com", "ann@example", "@example.com", "josé@example.com", "ann@exa mple.com")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass
class GeneratedList:
    """A list file and what importing it must report."""

    data: bytes
    description: str
    valid_addresses: list[str] = field(default_factory=list)
    invalid_lines: list[int] = field(default_factory=list)
    blank_lines: int = 0
    do_not_email: set[str] = field(default_factory=set)


@st.composite
def addresses(draw: st.DrawFn) -> tuple[str, str]:
    """Draw a valid address as written in the file and its normalized form."""
    local = draw(st.text(alphabet="abcdefgh0123.", min_size=1, max_size=4).filter(lambda s: s[0] != "." and s[-1] != "." and ".." not in s))
    domain = draw(st.sampled_from(("example.com", "example.org")))
    normalized = f"{local}@{domain}"
    written = normalized.upper() if draw(st.booleans()) else normalized
    padding = draw(st.sampled_from(("", " ", "  ", "\xa0")))
    return padding + written + padding.replace("\xa0", " "), normalized


@st.composite
def generated_lists(draw: st.DrawFn) -> GeneratedList:
    encoding = draw(st.sampled_from(ENCODINGS))
    delimiter = draw(st.sampled_from(DELIMITERS))
    newline = draw(st.sampled_from(NEWLINES))
    quoting = draw(st.sampled_from((csv.QUOTE_MINIMAL, csv.QUOTE_ALL)))
    final_newline = draw(st.booleans())
    with_name = draw(st.booleans())
    with_flag = draw(st.booleans())

    headers = [draw(st.sampled_from(EMAIL_HEADERS))]
    if with_name:
        headers.append(draw(st.sampled_from(NAME_HEADERS)))
    if with_flag:
        headers.append(draw(st.sampled_from(FLAG_HEADERS)))

    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, quoting=quoting, lineterminator=newline)
    # csv.writer quotes a field with a line break only when the break is in its lineterminator,
    # so with "\r" endings an LF inside a name would be written unquoted, which is invalid CSV.
    quoting_writer = csv.writer(buffer, delimiter=delimiter, quoting=csv.QUOTE_ALL, lineterminator=newline)
    writer.writerow(headers)
    expected = GeneratedList(data=b"", description="")
    pool: list[tuple[str, str]] = []
    kind_of_last = "header"

    for _ in range(draw(st.integers(min_value=0, max_value=25))):
        kind = draw(st.sampled_from(("valid", "valid", "valid", "repeat", "invalid", "empty", "blank", "empty-fields")))
        line = len(_LINE_BREAK.findall(buffer.getvalue())) + 1
        kind_of_last = kind
        if kind == "blank":
            buffer.write(newline)
            expected.blank_lines += 1
            continue
        if kind == "empty-fields":
            writer.writerow([""] * len(headers))
            expected.blank_lines += 1
            continue

        name = draw(st.sampled_from(NAMES))
        is_flagged = draw(st.booleans())
        flag = draw(st.sampled_from(TRUE_VALUES if is_flagged else FALSE_VALUES))
        if kind == "repeat" and pool:
            written, normalized = draw(st.sampled_from(pool))
        elif kind in ("valid", "repeat"):
            written, normalized = draw(addresses())
            pool.append((written, normalized))
        else:
            written = draw(st.sampled_from(INVALID_ADDRESSES)) if kind == "invalid" else ""
            normalized = ""

        row = [written]
        if with_name:
            row.append(name)
        if with_flag:
            row.append(flag)
        if not normalized and not any(value.strip() for value in row):
            row[0] = "missing-at-sign"
        if any("\n" in value or "\r" in value for value in row):
            quoting_writer.writerow(row)
        else:
            writer.writerow(row)
        if normalized:
            expected.valid_addresses.append(normalized)
            if with_flag and is_flagged:
                expected.do_not_email.add(normalized)
        else:
            expected.invalid_lines.append(line)

    text = buffer.getvalue()
    if not final_newline:
        text = text[: -len(newline)]
        if kind_of_last == "blank":
            # Without its line break, a blank last line is no line at all.
            expected.blank_lines -= 1
    expected.data = text.encode(encoding)
    expected.description = f"{encoding}, {delimiter!r}, {newline!r}, quoting {quoting}, final newline {final_newline}"
    return expected


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """The test's database, emptied after each example, because hypothesis runs many examples in one test.

    Emptying the tables is much faster than making a new PostgreSQL database per example.
    """
    try:
        yield url
    finally:
        with session_scope(url) as session:
            for table in reversed(SQLModel.metadata.sorted_tables):
                session.execute(table.delete())


def import_file(data: bytes, url: str) -> tuple[ImportSummary, dict[str, Lead]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "list.csv"
        path.write_bytes(data)
        with session_scope(url) as session:
            summary = import_leads(path, session=session)
    with session_scope(url) as session:
        leads = {lead.email: lead for lead in session.exec(select(Lead))}
    return summary, leads


# Hypothesis fails a health check when examples share a function-scoped fixture. Sharing
# database_url is safe because fresh_database empties it after each example.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(generated=generated_lists())
def test_every_row_is_imported_or_reported_once(database_url: str, generated: GeneratedList) -> None:
    distinct = set(generated.valid_addresses)

    with fresh_database(database_url) as url:
        summary, leads = import_file(generated.data, url)

    assert set(leads) == distinct, generated.description
    assert summary.imported == len(distinct)
    assert summary.duplicates_merged == len(generated.valid_addresses) - len(distinct)
    assert summary.rejected == len(generated.invalid_lines)
    assert [rejection.line for rejection in summary.rejections] == generated.invalid_lines
    assert summary.read == len(generated.valid_addresses) + len(generated.invalid_lines)
    assert summary.blank_lines == generated.blank_lines
    assert summary.suppressed == len(generated.do_not_email)
    assert {email for email, lead in leads.items() if lead.suppressed_at is not None} == generated.do_not_email


@pytest.mark.parametrize("header", [b"", b"email,name\n", b"\xff\xfee\x00m\x00a\x00i\x00l\x00\n\x00"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(database_url: str, header: bytes, body: bytes) -> None:
    with fresh_database(database_url) as url:
        try:
            summary, _ = import_file(header + body, url)
        except ImportFileError:
            return

    assert summary.read == summary.imported + summary.updated + summary.unchanged + summary.duplicates_merged + summary.rejected
