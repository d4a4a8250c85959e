"""`leadflow demo`: the funnel so far on a generated sample list."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from leadflow.cli.campaigns import launch_campaign
from leadflow.cli.common import console, current_settings
from leadflow.cli.leads import print_import_summary, run_import
from leadflow.settings import get_settings


def demo(
    leads: Annotated[int, typer.Option("--leads", min=1, max=100_000, help="Number of people on the sample list.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sample list generator.")] = 7,
) -> None:
    """Run the funnel so far on a generated sample list: import it and send the trial invite.

    The demo rebuilds its own folder (data folder/demo) on every run: a new SQLite
    database and outbox, never your own database or SMTP server.
    """
    import shutil

    from leadflow.sample import write_sample_list
    from models import dispose_engines

    folder = current_settings().data_dir / "demo"
    shutil.rmtree(folder, ignore_errors=True)
    os.environ["LEADFLOW_DATABASE_URL"] = f"sqlite:///{folder / 'leadflow.db'}"
    os.environ["LEADFLOW_OUTBOX_DIR"] = str(folder / "outbox")
    os.environ.pop("LEADFLOW_SMTP_URL", None)
    get_settings.cache_clear()
    dispose_engines()
    settings = current_settings()

    sample = write_sample_list(folder / "sample-leads.csv", leads=leads, seed=seed)
    console.print(f"Demo folder, rebuilt on every run: {folder}")
    console.print(f"Sample list: {sample} ({leads:,} people on example domains, plus two rows with mistakes)")
    print_import_summary(run_import(sample, ["Customer=yes"], dry_run=False))

    launch_campaign(settings, "demo", None, False)
    console.print(f"Open the emails: ls {settings.resolved_outbox_dir}")


