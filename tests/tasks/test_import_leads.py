"""The mailing-list importer on real SQLite files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import select

from leadflow.errors import ImportFileError
from leadflow.settings import Settings
from models import Lead, Stage, StageChange, session_scope
from tasks.import_leads import ImportSummary, import_leads
from tasks.list_columns import ColumnChoice, CustomerRule


def run_import(
    path: Path,
    *rules: str,
    dry_run: bool = False,
    columns: tuple[str, ...] = (),
    delimiter: str | None = None,
    rejects: Path | None = None,
) -> ImportSummary:
    with session_scope() as session:
        return import_leads(
            path,
            session=session,
            customer_rules=[CustomerRule.parse(rule) for rule in rules],
            column_choices=[ColumnChoice.parse(choice) for choice in columns],
            delimiter=delimiter,
            rejects_path=rejects,
            dry_run=dry_run,
        )


def outcomes(summary: ImportSummary) -> dict[str, int]:
    """The counts of one import; the first six add up to the rows read."""
    counts = {
        "read": summary.read,
        "imported": summary.imported,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "duplicates_merged": summary.duplicates_merged,
        "rejected": summary.rejected,
        "blank_lines": summary.blank_lines,
    }
    assert summary.read == sum(counts[name] for name in ("imported", "updated", "unchanged", "duplicates_merged", "rejected"))
    return counts


def counts(read: int, imported: int, *, updated: int = 0, unchanged: int = 0, duplicates_merged: int = 0, rejected: int = 0, blank_lines: int = 0) -> dict[str, int]:
    return {
        "read": read,
        "imported": imported,
        "updated": updated,
        "unchanged": unchanged,
        "duplicates_merged": duplicates_merged,
        "rejected": rejected,
        "blank_lines": blank_lines,
    }


def all_leads() -> dict[str, Lead]:
    with session_scope() as session:
        return {lead.email: lead for lead in session.exec(select(Lead))}


def write(tmp_path: Path, text: str, *, name: str = "list.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


class TestColumns:
    def test_import_reads_usual_header_spellings(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "E-mail Address,Given Name,Surname,Organisation,Job Title\nann@example.com,Ann,Lee,Acme,CTO\n")

        summary = run_import(path)

        lead = all_leads()["ann@example.com"]
        assert summary.imported == 1
        assert (lead.first_name, lead.last_name, lead.company, lead.title) == ("Ann", "Lee", "Acme", "CTO")

    def test_first_email_column_wins(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Name,Email 1,Email 2\nAnn Lee,ann@example.com,other@example.com\n")

        summary = run_import(path)

        assert summary.columns["email"] == "Email 1"
        assert summary.unused_email_columns == ["Email 2"]
        assert set(all_leads()) == {"ann@example.com"}

    def test_full_name_column_is_split(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, 'email,name\nann@example.com,"Ann Marie Lee"\n')

        run_import(path)

        lead = all_leads()["ann@example.com"]
        assert lead.first_name == "Ann"
        assert lead.last_name == "Marie Lee"

    def test_missing_email_column_names_headers(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Name,Phone\nAnn,123\n")

        with pytest.raises(ImportFileError) as caught:
            run_import(path)

        assert "'Name', 'Phone'" in str(caught.value)

    def test_unknown_customer_column_is_an_error(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,stage\nann@example.com,won\n")

        with pytest.raises(ImportFileError) as caught:
            run_import(path, "Deal Stage=Closed Won")

        assert "'Deal Stage'" in str(caught.value)
        assert all_leads() == {}

    def test_customer_rule_without_equals_is_an_error(self) -> None:
        with pytest.raises(ImportFileError):
            CustomerRule.parse("Deal Stage")

    def test_empty_file_is_an_error(self, settings: Settings, tmp_path: Path) -> None:
        with pytest.raises(ImportFileError):
            run_import(write(tmp_path, ""))


class TestRows:
    def test_bad_rows_are_rejected_with_line_numbers(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "email,first_name\n"
            "ann@example.com,Ann\n"
            "not-an-address,Bob\n"
            ",Carl\n"
            "dee@example.com,Dee\n",
        )

        summary = run_import(path)

        assert summary.read == 4
        assert summary.imported == 2
        assert summary.rejected == 2
        assert [rejection.line for rejection in summary.rejections] == [3, 4]
        assert "not-an-address" in summary.rejections[0].reason
        assert set(all_leads()) == {"ann@example.com", "dee@example.com"}

    def test_line_numbers_count_quoted_newlines(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            'email,company\nann@example.com,"Acme,\nLondon office"\nbroken@,Beta\n',
        )

        summary = run_import(path)

        assert summary.rejections[0].line == 4
        assert all_leads()["ann@example.com"].company == "Acme, London office"

    def test_short_row_is_rejected(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,first_name,last_name\nann@example.com,Ann\nbob@example.com,Bob,Ray\n")

        summary = run_import(path)

        assert summary.rejected == 1
        assert summary.rejections[0].line == 2
        assert "2 fields" in summary.rejections[0].reason
        assert set(all_leads()) == {"bob@example.com"}

    def test_blank_lines_are_skipped(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email\n\nann@example.com\n,\n\nbob@example.com")

        summary = run_import(path)

        assert summary.imported == 2
        assert summary.rejected == 0
        assert summary.blank_lines == 3

    def test_byte_order_mark_and_semicolons(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "\ufeffEmail;Vorname\r\nann@example.com;Änne\r\n", encoding="utf-8")

        summary = run_import(path)

        assert summary.columns["email"] == "Email"
        assert set(all_leads()) == {"ann@example.com"}

    def test_control_characters_removed_from_names(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, 'email,first_name,company\nann@example.com,"Ann\r\nBcc: x@evil.test","A\tB"\n')

        run_import(path)

        lead = all_leads()["ann@example.com"]
        assert lead.first_name == "Ann Bcc: x@evil.test"
        assert lead.company == "A B"

    def test_overlong_name_is_rejected(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, f"email,company\nann@example.com,{'x' * 201}\n")

        summary = run_import(path)

        assert summary.rejected == 1
        assert "200 characters" in summary.rejections[0].reason

    def test_latin1_file_is_read_as_windows_1252(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,first_name\nann@example.com,Jos\xe9\n", encoding="latin-1")

        summary = run_import(path)

        assert summary.imported == 1
        assert "Windows-1252" in summary.format
        assert all_leads()["ann@example.com"].first_name == "José"


class TestMerging:
    def test_duplicates_in_one_file_merge_case_insensitively(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "email,first_name,company\nAnn@Example.com,Ann,\n ann@example.COM ,,Acme\nbob@example.com,Bob,\n",
        )

        summary = run_import(path)

        leads = all_leads()
        assert summary.read == 3
        assert summary.imported == 2
        assert summary.duplicates_merged == 1
        assert (leads["ann@example.com"].first_name, leads["ann@example.com"].company) == ("Ann", "Acme")

    def test_reimport_updates_and_counts(self, settings: Settings, tmp_path: Path) -> None:
        run_import(write(tmp_path, "email,company\nann@example.com,Acme\nbob@example.com,Beta\n"))

        summary = run_import(write(tmp_path, "email,company\nANN@example.com,Acme Corp\nbob@example.com,Beta\n", name="b.csv"))

        assert (summary.imported, summary.updated, summary.unchanged) == (0, 1, 1)
        assert all_leads()["ann@example.com"].company == "Acme Corp"

    def test_empty_value_does_not_erase_stored_one(self, settings: Settings, tmp_path: Path) -> None:
        run_import(write(tmp_path, "email,company\nann@example.com,Acme\n"))

        run_import(write(tmp_path, "email,company\nann@example.com,\n", name="b.csv"))

        assert all_leads()["ann@example.com"].company == "Acme"

    def test_duplicates_across_chunks_merge(self, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("tasks.import_leads.CHUNK_ROWS", 2)
        path = write(tmp_path, "email\na@example.com\nb@example.com\nc@example.com\nA@example.com\n")

        summary = run_import(path)

        assert summary.imported == 3
        assert summary.duplicates_merged == 1
        assert summary.updated == 0


class TestCustomers:
    def test_customer_rule_marks_stage_and_history(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,Deal Stage\nann@example.com,Closed Won\nbob@example.com,closed won \ncid@example.com,Open\n")

        summary = run_import(path, "deal stage=Closed Won")

        leads = all_leads()
        assert summary.customers == 2
        assert leads["ann@example.com"].stage == Stage.CUSTOMER
        assert leads["ann@example.com"].is_customer
        assert leads["cid@example.com"].stage == Stage.SUBSCRIBER
        with session_scope() as session:
            history = session.exec(
                select(StageChange).where(StageChange.lead_id == leads["ann@example.com"].id).order_by(StageChange.id)
            ).all()
        assert [(row.from_stage, row.to_stage) for row in history] == [(None, "subscriber"), ("subscriber", "customer")]
        assert "line 2" in history[1].reason

    def test_repeated_rules_are_any_of(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,stage,plan\na@example.com,won,\nb@example.com,,paid\nc@example.com,,free\n")

        summary = run_import(path, "stage=won", "plan=paid")

        assert summary.customers == 2

    def test_existing_lead_becomes_customer_on_reimport(self, settings: Settings, tmp_path: Path) -> None:
        run_import(write(tmp_path, "email,stage\nann@example.com,open\n"))

        summary = run_import(write(tmp_path, "email,stage\nann@example.com,won\n", name="b.csv"), "stage=won")

        assert summary.updated == 1
        assert all_leads()["ann@example.com"].stage == Stage.CUSTOMER


class TestDryRun:
    def test_dry_run_changes_nothing(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,stage\nann@example.com,won\nbad,won\n")

        summary = run_import(path, "stage=won", dry_run=True)

        assert (summary.imported, summary.customers, summary.rejected) == (1, 1, 1)
        assert all_leads() == {}


class TestEncodings:
    """One small file per encoding that exports use; each has two good rows and one bad one."""

    TEXT = "Email,First Name\r\nann@example.com,Zoë\r\nnot-an-address,Bad\r\nbob@example.com,José\r\n"

    @pytest.mark.parametrize(
        ("encoding", "note"),
        [
            ("utf-8", "UTF-8"),
            ("utf-8-sig", "UTF-8 with byte-order mark"),
            ("utf-16", "UTF-16 with byte-order mark"),
            ("utf-16-le", "UTF-16-LE without byte-order mark"),
            ("cp1252", "Windows-1252"),
            ("latin-1", "Windows-1252"),
        ],
    )
    def test_encoding_imports_with_exact_counts(self, settings: Settings, tmp_path: Path, encoding: str, note: str) -> None:
        path = write(tmp_path, self.TEXT, encoding=encoding)

        summary = run_import(path)

        assert outcomes(summary) == counts(3, 2, rejected=1)
        assert summary.format.startswith(note)
        assert all_leads()["ann@example.com"].first_name == "Zoë"
        assert all_leads()["bob@example.com"].first_name == "José"

    def test_excel_unicode_text_is_utf16_with_tabs(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "\ufeffE-mail\tVorname\r\nann@example.com\tÄnne\r\nbob@example.com\tBob\r\n", encoding="utf-16-le")

        summary = run_import(path)

        assert outcomes(summary) == counts(2, 2)
        assert "tab-delimited" in summary.format
        assert all_leads()["ann@example.com"].first_name == "Änne"

    def test_windows_1252_punctuation_is_decoded(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,company\nann@example.com,\u201cSmart\u201d \u20ac Co\n", encoding="cp1252")

        summary = run_import(path)

        assert outcomes(summary) == counts(1, 1)
        assert all_leads()["ann@example.com"].company == "\u201cSmart\u201d \u20ac Co"

    def test_latin1_with_undefined_windows_bytes(self, settings: Settings, tmp_path: Path) -> None:
        path = tmp_path / "list.csv"
        path.write_bytes(b"email,company\nann@example.com,Caf\xe9\x81\n")

        summary = run_import(path)

        assert outcomes(summary) == counts(1, 1)
        assert summary.format.startswith("Latin-1")
        assert all_leads()["ann@example.com"].company == "Café"


class TestDelimiters:
    @pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
    def test_delimiter_is_detected(self, settings: Settings, tmp_path: Path, delimiter: str) -> None:
        rows = [["Email", "Company"], ["ann@example.com", "Lee, Smith; and | Co"], ["bob@example.com", "Beta"], ["", ""]]
        path = tmp_path / "list.csv"
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, delimiter=delimiter).writerows(rows)

        summary = run_import(path)

        assert outcomes(summary) == counts(2, 2, blank_lines=1)
        assert all_leads()["ann@example.com"].company == "Lee, Smith; and | Co"

    def test_delimiter_option_overrides_detection(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email;Name\nann@example.com;Ann Lee\n")

        summary = run_import(path, delimiter=";")

        assert outcomes(summary) == counts(1, 1)
        assert "set by --delimiter" in summary.format
        with pytest.raises(ImportFileError, match="no email column"):
            run_import(path, delimiter="|")


class TestQuotingAndLineEndings:
    def test_quoted_delimiters_quotes_and_newlines(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            'email,company,title\n'
            'ann@example.com,"Acme, Inc.","The ""Boss"""\n'
            'bob@example.com,"Beta\nLtd",CTO\n'
            'broken,"x",y\n',
        )

        summary = run_import(path)

        leads = all_leads()
        assert outcomes(summary) == counts(3, 2, rejected=1)
        assert summary.rejections[0].line == 5
        assert (leads["ann@example.com"].company, leads["ann@example.com"].title) == ("Acme, Inc.", 'The "Boss"')
        assert leads["bob@example.com"].company == "Beta Ltd"

    @pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"])
    @pytest.mark.parametrize("final_newline", [True, False])
    def test_line_endings(self, settings: Settings, tmp_path: Path, newline: str, final_newline: bool) -> None:
        lines = ["email,name", "ann@example.com,Ann", "bad@,Bad", "bob@example.com,Bob"]
        path = write(tmp_path, newline.join(lines) + (newline if final_newline else ""))

        summary = run_import(path)

        assert outcomes(summary) == counts(3, 2, rejected=1)
        assert summary.rejections[0].line == 3
        assert set(all_leads()) == {"ann@example.com", "bob@example.com"}

    def test_blank_lines_and_empty_fields_are_skipped(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,name\r\n\r\n,\r\nann@example.com,Ann\r\n  ,  \r\n\r\n,,\r\nbob@example.com,Bob\r\n\r\n")

        summary = run_import(path)

        assert outcomes(summary) == counts(2, 2, blank_lines=6)


class TestHeaderSpellings:
    @pytest.mark.parametrize(
        ("header", "field", "value"),
        [
            ("E-mail", "email", "ann@example.com"),
            ("Email Address", "email", "ann@example.com"),
            (" EMAIL ", "email", "ann@example.com"),
            ("Courriel", "email", "ann@example.com"),
            ("E-Mail-Adresse", "email", "ann@example.com"),
            ("Correo electrónico", "email", "ann@example.com"),
            ("Indirizzo email", "email", "ann@example.com"),
            ("Vorname", "first_name", "Ann"),
            ("Prénom", "first_name", "Ann"),
            ("Nombre", "first_name", "Ann"),
            ("Voornaam", "first_name", "Ann"),
            ("Nachname", "last_name", "Ann"),
            ("Nom", "last_name", "Ann"),
            ("Cognome", "last_name", "Ann"),
            ("Apellidos", "last_name", "Ann"),
            ("Société", "company", "Ann"),
            ("Firma", "company", "Ann"),
            ("Empresa", "company", "Ann"),
            ("Bedrijf", "company", "Ann"),
            ("Fonction", "title", "Ann"),
            ("Cargo", "title", "Ann"),
        ],
    )
    def test_header_spelling_is_recognised(self, settings: Settings, tmp_path: Path, header: str, field: str, value: str) -> None:
        other = "Mail" if field != "email" else "Note"
        text = f"{header},{other}\n{value},ann@example.com\n" if field != "email" else f"{header},{other}\n{value},x\n"

        summary = run_import(write(tmp_path, text))

        assert summary.columns[field] == header.strip()
        assert outcomes(summary) == counts(1, 1)

    def test_column_option_maps_any_header(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Kontakt,Work Email,Org\nann@example.com,ann@work.example.com,Acme\n")

        summary = run_import(path, columns=('email=Work Email', "company=org"))

        assert summary.columns["email"] == "Work Email"
        assert summary.columns["company"] == "Org"
        assert all_leads()["ann@work.example.com"].company == "Acme"

    def test_column_option_with_empty_header_ignores_field(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email,Customer\nann@example.com,Gold\n")

        summary = run_import(path, columns=("customer=",))

        assert outcomes(summary) == counts(1, 1)
        assert "customer" not in summary.columns

    def test_column_option_names_missing_header(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email,Name\nann@example.com,Ann\n")

        with pytest.raises(ImportFileError) as caught:
            run_import(path, columns=("email=Work Email",))

        assert "'Work Email'" in str(caught.value)
        assert "'Email', 'Name'" in str(caught.value)

    def test_column_option_rejects_unknown_field(self) -> None:
        with pytest.raises(ImportFileError, match="FIELD=HEADER"):
            ColumnChoice.parse("phone=Mobile")

    def test_flag_header_is_not_an_email_column(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Do Not Email,Email Opt In,Email\nno,yes,ann@example.com\n")

        summary = run_import(path)

        assert summary.columns["email"] == "Email"
        assert summary.columns["do_not_email"] == "Do Not Email"
        assert summary.columns["consent"] == "Email Opt In"
        assert summary.unused_email_columns == []


class TestAddresses:
    def test_addresses_are_trimmed_and_deduplicated(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "email\n ann@example.com \nANN@EXAMPLE.COM\n\u200bann@example.com\n\xa0bob@example.com\nann@example.com\n",
        )

        summary = run_import(path)

        assert outcomes(summary) == counts(5, 2, duplicates_merged=3)
        assert set(all_leads()) == {"ann@example.com", "bob@example.com"}

    @pytest.mark.parametrize(
        "address",
        ["josé@example.com", "ann@bücher.example", "ａｎｎ@example.com", '"ann lee"@example.com', "ann@example"],
    )
    def test_invalid_and_internationalised_addresses_are_rejected(self, settings: Settings, tmp_path: Path, address: str) -> None:
        path = write(tmp_path, f"email\nok@example.com\n{address}\n")

        summary = run_import(path)

        assert outcomes(summary) == counts(2, 1, rejected=1)
        assert summary.rejections[0].line == 3

    def test_punycode_domain_is_accepted(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email\nann@xn--bcher-kva.example\n")

        summary = run_import(path)

        assert outcomes(summary) == counts(1, 1)


class TestFlags:
    def test_boolean_spellings_mark_customers(self, settings: Settings, tmp_path: Path) -> None:
        rows = ["Yes", "TRUE", "1", "x", "no", "", "0", "False"]
        path = write(tmp_path, "Email,Customer\n" + "".join(f"c{index}@example.com,{value}\n" for index, value in enumerate(rows)))

        summary = run_import(path)

        leads = all_leads()
        assert outcomes(summary) == counts(8, 8)
        assert summary.customers == 4
        assert [leads[f"c{index}@example.com"].is_customer for index in range(8)] == [True] * 4 + [False] * 4
        assert leads["c0@example.com"].stage == Stage.CUSTOMER

    def test_do_not_email_suppresses(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email,Do Not Email\nann@example.com,Yes\nbob@example.com,no\ncid@example.com,\n")

        summary = run_import(path)

        leads = all_leads()
        assert outcomes(summary) == counts(3, 3)
        assert summary.suppressed == 1
        assert leads["ann@example.com"].suppressed_at is not None
        assert leads["ann@example.com"].suppression_reason == "do-not-email in list.csv line 2"
        assert leads["bob@example.com"].suppressed_at is None
        assert leads["cid@example.com"].suppressed_at is None

    def test_consent_is_stored_and_no_suppresses(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email,Marketing Consent\nann@example.com,Ja\nbob@example.com,Nein\ncid@example.com,\n")

        summary = run_import(path)

        leads = all_leads()
        assert summary.suppressed == 1
        assert [leads[email].marketing_consent for email in ("ann@example.com", "bob@example.com", "cid@example.com")] == [True, False, None]
        assert leads["bob@example.com"].suppression_reason == "no marketing consent in list.csv line 3"
        assert leads["ann@example.com"].suppressed_at is None

    def test_reimport_suppresses_existing_lead(self, settings: Settings, tmp_path: Path) -> None:
        run_import(write(tmp_path, "Email\nann@example.com\n"))

        summary = run_import(write(tmp_path, "Email,Unsubscribed\nann@example.com,TRUE\n", name="b.csv"))

        assert outcomes(summary) == counts(1, 0, updated=1)
        assert summary.suppressed == 1
        assert all_leads()["ann@example.com"].suppressed_at is not None

    def test_invalid_flag_value_rejects_row(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email,Do Not Email\nann@example.com,maybe\nbob@example.com,no\n")

        summary = run_import(path)

        assert outcomes(summary) == counts(2, 1, rejected=1)
        assert "'Do Not Email'" in summary.rejections[0].reason
        assert "'maybe'" in summary.rejections[0].reason

    def test_duplicate_with_do_not_email_suppresses(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "Email,Do Not Email\nann@example.com,no\nANN@example.com,yes\n")

        summary = run_import(path)

        assert outcomes(summary) == counts(2, 1, duplicates_merged=1)
        assert summary.suppressed == 1
        assert all_leads()["ann@example.com"].suppressed_at is not None


class TestRejectsFile:
    def test_rejects_file_lists_rows_safely(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "Email,Name,Note\n"
            "ann@example.com,Ann,ok\n"
            "=HYPERLINK(\"http://127.0.0.1/\"),+Bob,-5\n"
            "@evil,Eve,x,extra\n"
            ",Nobody,@SUM(1)\n",
        )
        rejects = tmp_path / "rejects.csv"

        summary = run_import(path, rejects=rejects)

        assert outcomes(summary) == counts(4, 1, rejected=3)
        raw = rejects.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")
        rows = list(csv.reader(rejects.open(encoding="utf-8-sig", newline="")))
        assert rows[0] == ["line", "reason", "Email", "Name", "Note"]
        assert [row[0] for row in rows[1:]] == ["3", "4", "5"]
        assert rows[1][2:] == ["'=HYPERLINK(\"http://127.0.0.1/\")", "'+Bob", "'-5"]
        assert rows[2][2:] == ["'@evil", "Eve", "x", "extra"]
        assert rows[3][2:] == ["", "Nobody", "'@SUM(1)"]
        assert "invalid email address" in rows[1][1]
        assert "4 fields" in rows[2][1]
        assert "column is empty" in rows[3][1]

    def test_rejects_file_has_every_rejection(self, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("tasks.import_leads.MAX_KEPT_REJECTIONS", 2)
        path = write(tmp_path, "email\n" + "bad\n" * 5)
        rejects = tmp_path / "rejects.csv"

        summary = run_import(path, rejects=rejects)

        assert summary.rejected == 5
        assert len(summary.rejections) == 2
        assert len(list(csv.reader(rejects.open(encoding="utf-8-sig")))) == 6


def dump_database() -> list[tuple[object, ...]]:
    with session_scope() as session:
        leads = session.exec(text("SELECT * FROM leads ORDER BY id")).all()  # type: ignore[call-overload]
        history = session.exec(text("SELECT * FROM stage_history ORDER BY id")).all()  # type: ignore[call-overload]
    return [tuple(row) for row in leads] + [tuple(row) for row in history]


class TestIdempotence:
    def test_second_import_changes_nothing(self, settings: Settings, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "Email,Name,Company,Customer,Do Not Email,Consent\n"
            "ann@example.com,Ann Lee,Acme,yes,,yes\n"
            "bob@example.com,Bob,Beta,no,yes,\n"
            "BOB@example.com,,Beta Ltd,,,no\n"
            "bad,Bad,,,,\n",
        )
        first = run_import(path)
        before = dump_database()

        second = run_import(path)

        assert outcomes(first) == counts(4, 2, duplicates_merged=1, rejected=1)
        assert outcomes(second) == counts(4, 0, unchanged=2, duplicates_merged=1, rejected=1)
        assert second.changed is False
        assert dump_database() == before


@pytest.mark.shared_data
class TestSharedFiles:
    def test_leads_100_counts(self, settings: Settings, shared_data: Path) -> None:
        summary = run_import(shared_data / "leads-100.csv", "Deal Stage=Closed Won")

        assert outcomes(summary) == counts(100, 100)
        assert summary.customers == 9

    def test_leads_10000_counts(self, settings: Settings, shared_data: Path) -> None:
        summary = run_import(shared_data / "leads-10000.csv", "Deal Stage=Closed Won")

        assert outcomes(summary) == counts(10_000, 10_000)
        assert summary.customers == 1_038
        assert summary.columns["email"] == "Email 1"

    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("listmonk_subs.csv", 100),
            ("listmonk_subs-domain-blocklist.csv", 4),
            ("mautic_contacts.csv", 2),
            ("mautic_import-contact-permissions.csv", 3),
            ("people-1000.csv", 1000),
        ],
    )
    def test_other_exports_import_fully(self, settings: Settings, shared_data: Path, name: str, expected: int) -> None:
        summary = run_import(shared_data / name)

        assert outcomes(summary) == counts(expected, expected)
