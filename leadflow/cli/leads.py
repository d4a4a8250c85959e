"""`leadflow leads`: import mailing lists and show one lead."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from leadflow.cli.common import console, error_console

if TYPE_CHECKING:
    from tasks.import_leads import ImportSummary

leads_app = typer.Typer(help="Import mailing lists and show one lead's timeline.", no_args_is_help=True)


def print_import_summary(summary: ImportSummary, rejects_path: Path | None = None) -> None:
    console.print(f"File: {summary.format}", markup=False, highlight=False)
    columns = ", ".join(f"{field} from {header!r}" for field, header in summary.columns.items())
    console.print(f"Columns: {columns}", markup=False, highlight=False)
    if summary.unused_email_columns:
        unused = ", ".join(repr(header) for header in summary.unused_email_columns)
        console.print(f"Email taken from {summary.columns['email']!r}, the first email column; not used: {unused}")
    for rejection in summary.rejections[:20]:
        console.print(f"  line {rejection.line}: rejected, {rejection.reason}", markup=False, highlight=False)
    if summary.rejected > 20:
        console.print(f"  ... and {summary.rejected - 20:,} more rejected rows")
    if rejects_path is not None:
        console.print(f"Rejected rows, with line number and reason: {rejects_path}")
    prefix = "Dry run, nothing saved: " if summary.dry_run else ""
    console.print(
        f"{prefix}read {summary.read:,} rows: {summary.imported:,} imported, {summary.updated:,} updated, "
        f"{summary.unchanged:,} unchanged, {summary.duplicates_merged:,} duplicates merged, "
        f"{summary.customers:,} customers, {summary.rejected:,} rejected; "
        f"{summary.suppressed:,} suppressed (do not email or no consent); "
        f"{summary.blank_lines:,} blank lines skipped"
    )
    if summary.read and not summary.changed:
        console.print("Nothing changed: every address was already stored with the same values.")


def run_import(
    path: Path,
    customer_if: list[str],
    dry_run: bool,
    *,
    columns: list[str] | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    rejects: Path | None = None,
) -> ImportSummary:
    from models import session_scope
    from tasks.import_leads import import_leads
    from tasks.list_columns import ColumnChoice, CustomerRule
    from tasks.list_file import parse_delimiter, parse_encoding

    rules = [CustomerRule.parse(text) for text in customer_if]
    choices = [ColumnChoice.parse(text) for text in columns or []]
    codec = parse_encoding(encoding) if encoding is not None else None
    separator = parse_delimiter(delimiter) if delimiter is not None else None
    with Progress(
        TextColumn("importing {task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=error_console, transient=True, disable=not error_console.is_terminal,
    ) as progress:
        bar = progress.add_task(path.name, total=None)

        def report(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        with session_scope() as session:
            return import_leads(
                path,
                session=session,
                customer_rules=rules,
                column_choices=choices,
                encoding=codec,
                delimiter=separator,
                rejects_path=rejects,
                dry_run=dry_run,
                on_progress=report,
            )


@leads_app.command("import")
def leads_import(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="CSV file with a header row and an email column.")],
    customer_if: Annotated[
        list[str] | None,
        typer.Option(
            "--customer-if",
            metavar="COLUMN=VALUE",
            help=(
                'Mark rows whose COLUMN equals VALUE (case and surrounding spaces ignored) as customers; '
                'repeat for more, e.g. "Deal Stage=Closed Won". A customer mark is never removed by a later import.'
            ),
        ),
    ] = None,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            metavar="FIELD=HEADER",
            help='Read FIELD from the column HEADER, e.g. email="Work Email"; an empty HEADER ignores FIELD. '
            "FIELD is one of: email, first_name, last_name, full_name, company, title, customer, consent, do_not_email.",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option("--rejects", metavar="FILE", help="Write the rejected rows, with line number and reason, to this CSV file."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option("--delimiter", metavar="DELIMITER", help="Field delimiter: comma, semicolon, tab or pipe; default: detected."),
    ] = None,
    encoding: Annotated[
        str | None,
        typer.Option("--encoding", metavar="ENCODING", help="Text encoding, e.g. utf-8, utf-16, windows-1252, latin-1; default: detected."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check everything, save nothing.")] = False,
) -> None:
    """Import a mailing list: merge duplicates by address, mark customers, report bad rows by line."""
    summary = run_import(
        file, customer_if or [], dry_run, columns=column, encoding=encoding, delimiter=delimiter, rejects=rejects
    )
    print_import_summary(summary, rejects)


@leads_app.command("show")
def leads_show(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="Address of the lead; case and surrounding spaces are ignored.")],
) -> None:
    """Show one lead: stage history with the flow run behind each change, emails, survey answers, BANT explanation."""
    from leadflow.cli.lead_timeline import show_lead

    show_lead(email)
