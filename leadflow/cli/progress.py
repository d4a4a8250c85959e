"""Progress bars for long commands: shown on a terminal, silent when the output goes to a pipe or a file."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from leadflow.cli.common import error_console
from leadflow.settings import Settings

POLL_SECONDS = 0.3


def bar_enabled() -> bool:
    return error_console.is_terminal


def count_progress(label: str) -> Progress:
    """Build a bar that counts items (done of total), disabled unless standard error is a terminal."""
    return Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=error_console, transient=True, disable=not bar_enabled(),
    )


def share_progress() -> Progress:
    """Build a bar with a changing description and a percentage, disabled unless standard error is a terminal."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
        console=error_console, transient=True, disable=not bar_enabled(),
    )


@contextmanager
def quiet_prefect_console() -> Iterator[None]:
    """Show only warnings and errors of Prefect's console log while a bar is drawn; the Prefect UI keeps every line.

    Prefect's console handler writes straight to standard error, so its lines would
    break the bar. Nothing changes when no bar is drawn.
    """
    if not bar_enabled():
        yield
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [handler for handler in logging.getLogger().handlers if isinstance(handler, PrefectConsoleHandler)]
    levels = [handler.level for handler in handlers]
    for handler in handlers:
        handler.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for handler, level in zip(handlers, levels, strict=True):
            handler.setLevel(level)


def count_invites_to_send(settings: Settings, name: str, limit: int | None) -> int:
    """Count the leads that a launch of trial-invite campaign `name` will try, as the flow selects them."""
    from sqlmodel import select

    from flows.trial_invite import STEP
    from leadflow.clock import now
    from models import Campaign, session_scope
    from tasks.audience import count_invite_audience

    cooldown = settings.invite_cooldown_days
    invited_since = now() - timedelta(days=cooldown) if cooldown else None
    with session_scope() as session:
        campaign = session.exec(select(Campaign).where(Campaign.kind == STEP, Campaign.name == name)).first()
        audience = count_invite_audience(
            session=session, campaign_id=campaign.id if campaign else None, step=STEP, invited_since=invited_since
        )
    return audience.remaining if limit is None else min(limit, audience.remaining)


def _count_sends_done(*, kind: str, name: str, step: str, since: datetime) -> int:
    from sqlalchemy import func
    from sqlmodel import col, select

    from models import Campaign, EmailSend, SendStatus, session_scope

    with session_scope() as session:
        statement = (
            select(func.count())
            .select_from(EmailSend)
            .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
            .where(
                col(Campaign.kind) == kind,
                col(Campaign.name) == name,
                col(EmailSend.step) == step,
                col(EmailSend.claimed_at) >= since,
                col(EmailSend.status).not_in([SendStatus.PENDING.value, SendStatus.SENDING.value]),
            )
        )
        return session.exec(statement).one()


@contextmanager
def ledger_progress(*, kind: str, name: str, step: str, total: int, label: str) -> Iterator[None]:
    """Draw a bar of the sends of one campaign step that got an outcome in the block, polled from the ledger.

    The bar reads the database from a thread while the flow runs in this one, so the
    flow needs no callback.
    """
    if not bar_enabled() or total <= 0:
        yield
        return
    from leadflow.clock import now

    since = now() - timedelta(seconds=1)
    stop = threading.Event()
    with count_progress(label) as progress, quiet_prefect_console():
        bar = progress.add_task(label, total=total)

        def poll() -> None:
            from sqlalchemy.exc import OperationalError

            while not stop.wait(POLL_SECONDS):
                try:
                    done = _count_sends_done(kind=kind, name=name, step=step, since=since)
                except OperationalError:
                    continue  # a locked database only delays the next update
                progress.update(bar, completed=done)

        worker = threading.Thread(target=poll, name="ledger-progress", daemon=True)
        worker.start()
        try:
            yield
        finally:
            stop.set()
            worker.join(timeout=5)
