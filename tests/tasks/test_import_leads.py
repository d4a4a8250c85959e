"""The mailing-list importer on real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from leadflow.errors import ImportFileError
from leadflow.settings import Settings
from models import Lead, Stage, StageChange, session_scope
from tasks.import_leads import ImportSummary, import_leads
from tasks.list_columns import CustomerRule


def run_import(path: Path, *rules: str, dry_run: bool = False) -> ImportSummary:
    with session_scope() as session:
        return import_leads(
            path, session=session, customer_rules=[CustomerRule.parse(rule) for rule in rules], dry_run=dry_run
        )


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

    def test_non_utf8_file_is_an_error(self, settings: Settings, tmp_path: Path) -> None:
        path = write(tmp_path, "email,first_name\nann@example.com,Jos\xe9\n", encoding="latin-1")

        with pytest.raises(ImportFileError) as caught:
            run_import(path)

        assert "UTF-8" in str(caught.value)


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


@pytest.mark.shared_data
class TestSharedFiles:
    def test_leads_10000_counts(self, settings: Settings, shared_data: Path) -> None:
        summary = run_import(shared_data / "leads-10000.csv", "Deal Stage=Closed Won")

        assert summary.read == 10_000
        assert summary.imported == 10_000
        assert summary.customers == 1_038
        assert summary.rejected == 0
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

        assert summary.imported == expected
        assert summary.rejected == 0
