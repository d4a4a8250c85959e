"""Encoding and delimiter detection of list files."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.errors import ImportFileError
from tasks.list_columns import is_email_header
from tasks.list_file import SAMPLE_BYTES, detect_format, parse_delimiter, parse_encoding


def detect(tmp_path: Path, data: bytes, **overrides: str) -> tuple[str, str, str]:
    path = tmp_path / "list.csv"
    path.write_bytes(data)
    found = detect_format(path, is_email_header, **overrides)
    return found.encoding, found.delimiter, found.encoding_note


class TestEncoding:
    @pytest.mark.parametrize(
        ("data", "expected"),
        [
            ("email\nann@example.com\n".encode(), "utf-8-sig"),
            ("\ufeffemail\nann@example.com\n".encode(), "utf-8-sig"),
            ("\ufeffemail\tname\nann@example.com\tZoë\n".encode("utf-16-le"), "utf-16"),
            ("\ufeffemail\tname\nann@example.com\tZoë\n".encode("utf-16-be"), "utf-16"),
            ("email\tname\nann@example.com\tZoë\n".encode("utf-16-le"), "utf-16-le"),
            ("email\tname\nann@example.com\tZoë\n".encode("utf-16-be"), "utf-16-be"),
            ("email,name\nann@example.com,\u201cZoë\u201d\n".encode("cp1252"), "windows-1252"),
            (b"email,name\nann@example.com,Zo\xeb\x81\n", "latin-1"),
        ],
    )
    def test_encoding_is_detected(self, tmp_path: Path, data: bytes, expected: str) -> None:
        encoding, _, _ = detect(tmp_path, data)

        assert encoding == expected

    def test_late_non_utf8_byte_is_found(self, tmp_path: Path) -> None:
        rows = "".join(f"user{number}@example.com,Ann\n" for number in range(SAMPLE_BYTES // 10))
        data = ("email,name\n" + rows).encode() + b"zoe@example.com,Zo\xeb\n"

        encoding, _, note = detect(tmp_path, data)

        assert len(data) > 2 * SAMPLE_BYTES
        assert encoding == "windows-1252"
        assert "guessed" in note

    def test_encoding_override_is_used(self, tmp_path: Path) -> None:
        encoding, _, note = detect(tmp_path, "email\nann@example.com\n".encode(), encoding="latin-1")

        assert encoding == "latin-1"
        assert "--encoding" in note

    @pytest.mark.parametrize(("text", "expected"), [("utf8", "utf-8-sig"), ("UTF-16", "utf-16"), ("cp1252", "windows-1252"), ("iso-8859-1", "latin-1")])
    def test_parse_encoding_accepts_aliases(self, text: str, expected: str) -> None:
        assert parse_encoding(text) == expected

    def test_parse_encoding_rejects_unknown(self) -> None:
        with pytest.raises(ImportFileError, match="invalid --encoding"):
            parse_encoding("ebcdic-nonsense")


class TestDelimiter:
    @pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
    def test_delimiter_is_detected(self, tmp_path: Path, delimiter: str) -> None:
        text = delimiter.join(["Email", "Name", "Company"]) + "\n"
        text += delimiter.join(["ann@example.com", "Ann", '"Lee, Smith; and | Co"']) + "\n"

        _, found, _ = detect(tmp_path, text.encode())

        assert found == delimiter

    def test_quoted_json_does_not_mislead(self, tmp_path: Path) -> None:
        text = 'email,name,attributes\nann@example.com,Ann,"{""a"": 1, ""b"": 2; ""c"": 3}"\n'

        _, found, _ = detect(tmp_path, text.encode())

        assert found == ","

    def test_single_column_defaults_to_comma(self, tmp_path: Path) -> None:
        _, found, _ = detect(tmp_path, b"email\nann@example.com\n")

        assert found == ","

    def test_delimiter_override_is_used(self, tmp_path: Path) -> None:
        _, found, _ = detect(tmp_path, b"email,name\nann@example.com,Ann\n", delimiter=";")

        assert found == ";"

    @pytest.mark.parametrize(("text", "expected"), [("tab", "\t"), ("\\t", "\t"), ("Semicolon", ";"), ("|", "|"), (",", ",")])
    def test_parse_delimiter_accepts_names(self, text: str, expected: str) -> None:
        assert parse_delimiter(text) == expected

    def test_parse_delimiter_rejects_others(self) -> None:
        with pytest.raises(ImportFileError, match="invalid --delimiter"):
            parse_delimiter(":")
