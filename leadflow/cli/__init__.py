"""The `leadflow` command line: one module per command group, registered here."""

from __future__ import annotations

import atexit
import logging
import os
import sys

import typer

from leadflow.cli.campaigns import campaign_app
from leadflow.cli.common import error_console
from leadflow.cli.deliveries import register as register_delivery_commands
from leadflow.cli.demo import demo
from leadflow.cli.funnel import funnel
from leadflow.cli.leads import leads_app
from leadflow.cli.review import review_app, sales_app, surveys_app
from leadflow.cli.server import serve_command, server_app
from leadflow.cli.trials import followups_app, trial_app
from leadflow.cli.web import web_command
from leadflow.errors import LeadflowError
from leadflow.settings import apply_prefect_privacy_defaults

app = typer.Typer(
    name="leadflow",
    help="Run the B2B lead-qualification funnel as Prefect flows. Settings come from LEADFLOW_* variables.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(leads_app, name="leads")
app.add_typer(campaign_app, name="campaign")
app.add_typer(trial_app, name="trial")
app.add_typer(followups_app, name="followups")
app.add_typer(surveys_app, name="surveys")
app.add_typer(review_app, name="review")
app.add_typer(sales_app, name="sales")
app.add_typer(server_app, name="server")
app.command("demo")(demo)
app.command("funnel")(funnel)
app.command("serve")(serve_command)
app.command("web")(web_command)
register_delivery_commands(app)


_exit_code = 1
"""The code `main` exits with; it stays 1 when an exception escapes."""


def _exit_without_teardown() -> None:
    """End the process at once, after every other exit handler has run.

    It is registered first, so it runs last. It skips the interpreter's
    teardown of every module and object, which took about half a second after
    a campaign launch on the development machine.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_code)


def main() -> None:
    """Run the `leadflow` console script; the process ends when it returns, so tests call `app` instead."""
    global _exit_code
    atexit.register(_exit_without_teardown)
    apply_prefect_privacy_defaults()
    try:
        app()
    except LeadflowError as exc:
        error_console.print(f"error: {exc}", markup=False, highlight=False)
        _exit_code = 1
        sys.exit(1)
    except SystemExit as exc:
        if exc.code is None:
            _exit_code = 0
        elif isinstance(exc.code, int):
            _exit_code = exc.code
        else:
            _exit_code = 1
        raise
    _exit_code = 0


if __name__ == "__main__":
    main()

