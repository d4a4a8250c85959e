"""Open a mailing-list file as text: detect its encoding and delimiter, and count the bytes read."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from leadflow.errors import ImportFileError

SAMPLE_BYTES = 64 * 1024
"""Bytes read from the start of the file to detect the delimiter and BOM-less UTF-16."""

SCAN_BLOCK_BYTES = 1024 * 1024
"""Block size of the pass that checks whether the whole file is valid UTF-8."""

SAMPLE_RECORDS = 50
"""Records of the sample parsed with each candidate delimiter."""

DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
_DELIMITER_SPELLINGS = {
    ",": ",", "comma": ",",
    ";": ";", "semicolon": ";",
    "\t": "\t", "\\t": "\t", "tab": "\t",
    "|": "|", "pipe": "|",
}
ENCODINGS = ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "windows-1252", "latin-1")

# Bytes 0x80-0x9f that Windows-1252 leaves undefined; Latin-1 reads them as C1 control characters.
_CP1252_UNDEFINED = frozenset(b"\x81\x8d\x8f\x90\x9d")
_C1_BYTES = frozenset(range(0x80, 0xA0))

HeaderCheck = Callable[[str], bool]
"""Return True for a header that names an email column."""


@dataclass(frozen=True)
class ListFormat:
    """The encoding and delimiter of a list file, each with a note on how it was chosen."""

    encoding: str
    """A Python codec name; `utf-8-sig` and `utf-16` consume the byte-order mark."""
    encoding_note: str
    delimiter: str
    delimiter_note: str

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))

    def describe(self) -> str:
        return f"{self.encoding_note}; {self.delimiter_name}-delimited ({self.delimiter_note})"


class CountingReader(io.RawIOBase):
    """A binary stream wrapper that counts the bytes read, so progress can be shown while csv streams."""

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

    def close(self) -> None:
        self._raw.close()
        super().close()


def parse_delimiter(text: str) -> str:
    """Read a `--delimiter` value: one of `,` `;` `|` or tab, by character or by name."""
    delimiter = _DELIMITER_SPELLINGS.get(text) or _DELIMITER_SPELLINGS.get(text.strip().casefold())
    if delimiter is None:
        raise ImportFileError(
            f"invalid --delimiter {text!r}; use one of: comma, semicolon, tab, pipe (or the character itself)"
        )
    return delimiter


def parse_encoding(text: str) -> str:
    """Read an `--encoding` value and return the codec name to decode with."""
    try:
        name = codecs.lookup(text.strip()).name
    except LookupError:
        name = ""
    codec = {"utf-8": "utf-8-sig", "cp1252": "windows-1252", "iso8859-1": "latin-1"}.get(name, name)
    if codec not in ("utf-8-sig", *ENCODINGS):
        raise ImportFileError(f"invalid --encoding {text!r}; use one of: {', '.join(ENCODINGS)}")
    return codec


def _is_valid_utf8(path: Path) -> bool:
    """Decode the whole file block by block, keeping one block in memory at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as handle:
        while block := handle.read(SCAN_BLOCK_BYTES):
            try:
                decoder.decode(block)
            except UnicodeDecodeError:
                return False
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _single_byte_encoding(path: Path) -> tuple[str, str]:
    """Choose between Windows-1252 and Latin-1 for a file that is not UTF-8."""
    c1_seen = False
    with path.open("rb") as handle:
        while block := handle.read(SCAN_BLOCK_BYTES):
            present = set(block) & _C1_BYTES
            if present & _CP1252_UNDEFINED:
                return "latin-1", "Latin-1 (guessed: not UTF-8, and has bytes that Windows-1252 leaves undefined)"
            c1_seen = c1_seen or bool(present)
    if c1_seen:
        return "windows-1252", "Windows-1252 (guessed: not UTF-8, and has Windows-1252 punctuation such as curly quotes)"
    return "windows-1252", "Windows-1252 (guessed: not UTF-8; Latin-1 would read this file the same)"


def _looks_like_utf16(sample: bytes) -> str | None:
    """Return `utf-16-le` or `utf-16-be` when most odd or even bytes of a BOM-less sample are zero."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even_zeros = sample[0 : pairs * 2 : 2].count(0)
    odd_zeros = sample[1 : pairs * 2 : 2].count(0)
    if odd_zeros > pairs * 0.4 and even_zeros < pairs * 0.05:
        return "utf-16-le"
    if even_zeros > pairs * 0.4 and odd_zeros < pairs * 0.05:
        return "utf-16-be"
    return None


def detect_encoding(path: Path, sample: bytes) -> tuple[str, str]:
    """Return the codec for `path` and a note saying how it was chosen.

    A byte-order mark decides at once. Otherwise the whole file is checked as
    UTF-8, because one accented name near the end is enough to make it another
    encoding. A file that fails is read as Windows-1252, or as Latin-1 when it
    has bytes that Windows-1252 leaves undefined.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "UTF-8 with byte-order mark"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "UTF-16 with byte-order mark"
    utf16 = _looks_like_utf16(sample)
    if utf16 is not None:
        return utf16, f"{utf16.upper()} without byte-order mark (guessed from the zero bytes)"
    if _is_valid_utf8(path):
        return "utf-8-sig", "UTF-8"
    return _single_byte_encoding(path)


def csv_dialect(delimiter: str) -> type[csv.Dialect]:
    """Build the CSV dialect of every list: double quotes, doubled to escape, any line ending."""

    class ListDialect(csv.excel):
        pass

    ListDialect.delimiter = delimiter
    return ListDialect


def _score_delimiter(sample: str, delimiter: str, is_email_header: HeaderCheck) -> tuple[bool, float, int]:
    """Rank `delimiter` by: an email column in the header, rows as wide as the header, header width."""
    reader = csv.reader(io.StringIO(sample, newline=""), dialect=csv_dialect(delimiter))
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
            if len(records) > SAMPLE_RECORDS:
                break
    except csv.Error:
        pass
    if not records:
        return (False, 0.0, 0)

    header, rows = records[0], [record for record in records[1:SAMPLE_RECORDS] if any(record)]
    has_email = any(is_email_header(name) for name in header)
    if len(header) < 2:
        return (has_email, 0.0, len(header))
    consistent = sum(len(row) == len(header) for row in rows) / len(rows) if rows else 1.0
    return (has_email, consistent, len(header))


def detect_delimiter(sample: str, is_email_header: HeaderCheck, *, truncated: bool) -> tuple[str, str]:
    """Choose among comma, semicolon, tab and pipe by parsing the sample with each.

    The winner puts an email column in the header, splits the most rows into as
    many fields as the header, and then has the widest header. Ties go to the
    earlier of comma, semicolon, tab and pipe.
    """
    # A record cut off by the end of the sample would count as inconsistent.
    cut = max(sample.rfind("\n"), sample.rfind("\r"))
    if truncated and cut > 0:
        sample = sample[:cut]
    scores = {delimiter: _score_delimiter(sample, delimiter, is_email_header) for delimiter in DELIMITER_NAMES}
    best = max(DELIMITER_NAMES, key=lambda delimiter: scores[delimiter])
    if scores[best][2] < 2:
        return ",", "detected: the header has a single column"
    return best, "detected"


def detect_format(
    path: Path, is_email_header: HeaderCheck, *, encoding: str | None = None, delimiter: str | None = None
) -> ListFormat:
    """Detect what the caller did not set: the encoding, then the delimiter from the decoded sample."""
    try:
        with path.open("rb") as handle:
            sample = handle.read(SAMPLE_BYTES)
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}; check the path and its permissions") from exc

    if encoding is None:
        encoding, encoding_note = detect_encoding(path, sample)
    else:
        encoding_note = f"{encoding} (set by --encoding)"

    if delimiter is None:
        text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample)
        truncated = len(sample) == SAMPLE_BYTES
        delimiter, delimiter_note = detect_delimiter(text, is_email_header, truncated=truncated)
    else:
        delimiter_note = "set by --delimiter"
    return ListFormat(encoding=encoding, encoding_note=encoding_note, delimiter=delimiter, delimiter_note=delimiter_note)


def open_text(path: Path, list_format: ListFormat) -> tuple[io.TextIOWrapper, CountingReader]:
    """Open `path` for csv in `list_format`'s encoding, with a reader that counts the bytes read."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}; check the path and its permissions") from exc
    counter = CountingReader(raw)
    text = io.TextIOWrapper(io.BufferedReader(counter), encoding=list_format.encoding, newline="")
    return text, counter
