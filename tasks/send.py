"""Send one batch of one email step: claim the ledger keys, render, deliver, record each outcome.

Every flow that emails leads calls `send_email_batch` from its own Prefect task,
so all of them share the ledger protocol of tasks.ledger and docs/delivery.md.
A batch's keys are claimed as `queued` in one commit before any message goes out.
Each message is marked `sending` in a commit of its own just before the SMTP
transaction, and its outcome is committed just after it. So a worker killed at
any moment leaves at most one send whose outcome is unknown.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import Connection
from sqlmodel import Session, col, select

from leadflow.clock import now, wall_clock
from leadflow.errors import CampaignError, DeliveryError, TemplateRenderError
from leadflow.settings import Settings
from models import Campaign, Lead, SendStatus, SuppressionReason, get_engine, session_scope
from tasks.deliver import MailServerUnavailable, Mailer, open_mailer
from tasks.emails import unsubscribe_url
from tasks.ledger import Claim, HandOverWriter, Outcome, claim_sends, release_queued
from tasks.liveness import current_owner
from tasks.render_email import OutgoingMessage, RenderedEmail, compose_message
from tasks.suppression import listed_reasons, mark_listed_leads, suppress_leads
from tasks.throttle import Pacer, connection_slot

MAX_BACKOFF = timedelta(hours=1)
_SQLITE_WRITE_LOCK = threading.Lock()
DRY_RUN_MESSAGE_ID = "<dry-run@localhost>"


class BatchResult(BaseModel):
    """Counts of one batch, by ledger outcome."""

    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    """Deferral replies (4xx, or no server) in this batch; a later retry in the same run may still send them."""
    bounced: int = 0
    failed: int = 0
    """Sends that failed for a reason waiting will not fix (a template error, a rejected message)."""
    ambiguous: int = 0
    suppressed: int = 0
    """Leads found on the suppression list at send time and left out."""
    not_claimed: int = 0
    """Leads already handled by another run, or no longer eligible, by the time the batch ran."""
    rendered: int = 0
    """Dry runs only: emails rendered and built without sending."""

    def add(self, other: BatchResult) -> None:
        for name in type(self).model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class EmailStep:
    """One kind of email and the rules for sending it."""

    campaign_kind: str
    step: str
    """Third part of the ledger key, such as `trial-invite` or `survey`."""
    render: Callable[[Lead], RenderedEmail]
    is_eligible: Callable[[Lead], bool]
    """Checked again at send time, because a lead can change between selection and sending."""
    recipient: Callable[[Lead], str] | None = None
    """For internal notices about a lead (the sales hand-off): the colleague's address to send to.

    Such an email carries no unsubscribe headers, ignores the suppression list,
    and a bounce does not suppress the lead, because the lead never receives it.
    """

    def address_for(self, lead: Lead) -> str:
        return self.recipient(lead) if self.recipient is not None else lead.email


def display_name(lead: Lead) -> str:
    return " ".join(part for part in (lead.first_name, lead.last_name) if part)


def _compose(step: EmailStep, lead: Lead, *, settings: Settings, message_id: str, at: datetime) -> OutgoingMessage:
    internal = step.recipient is not None
    return compose_message(
        step.render(lead),
        sender_name=settings.sender_name,
        sender_address=settings.sender_address,
        recipient_name="" if internal else display_name(lead),
        recipient_address=step.address_for(lead),
        message_id=message_id,
        unsubscribe_url=None if internal else unsubscribe_url(lead.id or 0, settings),
        date=at,
    )


def retry_delay(attempts: int, settings: Settings) -> timedelta:
    """Return the backoff before the next try of a send deferred on its `attempts`-th try: doubling, at most an hour."""
    return min(timedelta(seconds=settings.retry_backoff_seconds * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def _leave_out_suppressed(leads: dict[int, Lead], lead_ids: list[int], *, session: Session, at: datetime) -> list[int]:
    """Return `lead_ids` without the leads whose address is on the suppression list, marking those leads suppressed."""
    listed = listed_reasons(session=session, emails=[leads[lead_id].email for lead_id in lead_ids])
    if not listed:
        return lead_ids
    mark_listed_leads(session=session, emails=list(listed), at=at)
    return [lead_id for lead_id in lead_ids if leads[lead_id].email not in listed]


def send_email_batch(
    step: EmailStep,
    *,
    campaign_name: str,
    lead_ids: list[int],
    settings: Settings,
    actor: str,
    logger: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    dry_run: bool = False,
) -> BatchResult:
    """Claim, render and deliver `step` for one batch of leads, recording each outcome as it comes.

    A lead whose ledger key is taken, or whose address is on the suppression list,
    is skipped. One lead's failure (a template error, a deferral, a rejected
    recipient, a dropped connection) is recorded and the batch goes on. An
    unreachable mail server releases the rest of the batch and raises
    `MailServerUnavailable`, so the caller's task can be retried.
    """
    result = BatchResult()
    started = now()
    owner = current_owner()

    with session_scope() as session:
        leads = {lead.id: lead for lead in session.exec(select(Lead).where(col(Lead.id).in_(lead_ids)))}
        eligible_ids = [lead_id for lead_id in lead_ids if lead_id in leads and step.is_eligible(leads[lead_id])]
        if dry_run:
            claims = []
        else:
            allowed_ids = (
                eligible_ids
                if step.recipient is not None
                else _leave_out_suppressed(leads, eligible_ids, session=session, at=started)  # type: ignore[arg-type]
            )
            result.suppressed = len(eligible_ids) - len(allowed_ids)
            campaign = session.exec(
                select(Campaign).where(Campaign.kind == step.campaign_kind, Campaign.name == campaign_name)
            ).first()
            if campaign is None:
                raise CampaignError(f"campaign {step.campaign_kind}/{campaign_name} does not exist; launch it again")
            claims = claim_sends(
                session=session, campaign=campaign, lead_ids=allowed_ids, step=step.step, actor=actor, owner=owner,
                at=started, wall_time=wall_clock(), domain=settings.sender_domain, max_attempts=settings.max_send_attempts,
            )
    # The claims are committed as `queued` before any message goes out: no other
    # worker can claim them now, and if this process dies they are released again.

    if dry_run:
        for lead_id in eligible_ids:
            try:
                _compose(step, leads[lead_id], settings=settings, message_id=DRY_RUN_MESSAGE_ID, at=started)
                result.rendered += 1
            except TemplateRenderError as exc:
                result.failed += 1
                logger.error("lead %s: %s", lead_id, exc)
        result.not_claimed = len(lead_ids) - len(eligible_ids)
        return result

    result.claimed = len(claims)
    result.not_claimed = len(lead_ids) - len(claims) - result.suppressed
    deliver_claims(step, claims, leads, settings=settings, owner=owner, logger=logger, result=result)  # type: ignore[arg-type]
    return result


def deliver_claims(
    step: EmailStep,
    claims: list[Claim],
    leads: dict[int, Lead],
    *,
    settings: Settings,
    owner: str,
    logger: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    result: BatchResult,
) -> None:
    """Render and hand over each claimed send, recording its outcome in the ledger and counting it in `result`.

    `leads` maps each claim's lead id to its lead. The claims are shared out
    among up to `LEADFLOW_SMTP_CONNECTIONS` lanes, each a thread with its own
    connection to the mail server and its own database session, so one
    connection's wait for a reply does not hold up the others. Raises
    `MailServerUnavailable` after releasing the claims not yet handed over.
    """
    if not claims:
        return
    lane_count = min(len(claims), settings.smtp_connections)
    if settings.smtp_max_connections is not None:
        lane_count = min(lane_count, settings.smtp_max_connections)
    stop = threading.Event()
    lanes = [
        _Lane(step, claims[number::lane_count], leads, settings=settings, owner=owner, logger=logger, stop=stop)
        for number in range(lane_count)
    ]
    pacer = Pacer(settings.send_rate_per_second, messages=len(claims))
    if lane_count == 1:
        lanes[0].run(pacer)
    else:
        with ThreadPoolExecutor(max_workers=lane_count, thread_name_prefix="leadflow-lane") as pool:
            # Each thread runs in a copy of this context, so the flow's clock (leadflow.clock) holds there too.
            for future in [pool.submit(contextvars.copy_context().run, lane.run, pacer) for lane in lanes]:
                future.exception()
    for lane in lanes:
        result.add(lane.result)
    if result.deferred:
        logger.warning("%d emails of this batch deferred by the server; they are retried after a backoff", result.deferred)
    errors = [lane.error for lane in lanes if lane.error is not None]
    if errors:
        # A server that cannot be reached is the error the caller retries on; report it before any other.
        raise next((error for error in errors if isinstance(error, MailServerUnavailable)), errors[0])


class _Lane:
    """One connection's share of a batch: build, mark `sending`, hand over and record, message by message.

    Each message costs one commit: the outcome of the message before and the
    `sending` mark of this one go into the same transaction. So the lane has at
    most one row whose outcome is unknown at any moment, as the ledger protocol
    requires, at half the commits.
    """

    def __init__(
        self,
        step: EmailStep,
        claims: list[Claim],
        leads: dict[int, Lead],
        *,
        settings: Settings,
        owner: str,
        logger: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
        stop: threading.Event,
    ) -> None:
        self.step = step
        self.stop = stop
        """Set by the first lane that fails, so the others release what they have not sent and end."""
        self.claims = claims
        self.leads = leads
        self.settings = settings
        self.owner = owner
        self.logger = logger
        self.result = BatchResult()
        self.error: BaseException | None = None
        self._writer: HandOverWriter
        self._unrecorded: list[tuple[Outcome, Lead]] = []

    def run(self, pacer: Pacer) -> None:
        # A plain connection, not an ORM session: the session's bookkeeping doubled the cost of each commit.
        connection = get_engine().connect()
        self._writer = HandOverWriter(connection)
        try:
            with connection_slot(self.settings), open_mailer(self.settings) as mailer:
                self._send_all(mailer, pacer, connection)
        except BaseException as exc:  # noqa: BLE001 - kept and raised again by deliver_claims in the caller's thread
            self.error = exc
            self.stop.set()
        finally:
            try:
                self._commit(connection)
            except BaseException as exc:  # noqa: BLE001
                self.error = self.error or exc
            self._writer.close()
            connection.close()

    def _send_all(self, mailer: Mailer, pacer: Pacer, connection: Connection) -> None:
        step, settings = self.step, self.settings
        for index, claim in enumerate(self.claims):
            if self.stop.is_set():
                rest = [later.ledger_id for later in self.claims[index:]]
                self._commit(connection, release=rest, reason="not sent: another connection of this batch failed")
                return
            lead = self.leads[claim.lead_id]
            try:
                message = _compose(step, lead, settings=settings, message_id=claim.message_id, at=now())
            except (TemplateRenderError, ValueError) as exc:
                self.logger.error("lead %s: the %s email could not be built: %s", lead.id, step.step, exc)
                self._unrecorded.append((Outcome(claim.ledger_id, SendStatus.FAILED, now(), str(exc)), lead))
                continue

            pacer.wait()
            if not self._commit(connection, hand_over=claim.ledger_id):
                self.logger.warning("lead %s: the ledger row is no longer queued for this worker; not sent", lead.id)
                self.result.not_claimed += 1
                continue

            try:
                outcome = _hand_over(mailer, message, step.address_for(lead), claim, settings=settings)
            except MailServerUnavailable as exc:
                deferred = Outcome(
                    claim.ledger_id, SendStatus.DEFERRED, now(), str(exc),
                    next_attempt_at=wall_clock() + retry_delay(claim.attempts, settings),
                )
                self._unrecorded.append((deferred, lead))
                rest = [later.ledger_id for later in self.claims[index + 1 :]]
                self._commit(connection, release=rest, reason=f"not sent: {exc}")
                self.logger.warning("%s; 1 email deferred, %d released for a retry", exc, len(rest))
                raise
            if outcome.status not in (SendStatus.SENT, SendStatus.DEFERRED):
                self.logger.warning("lead %s: %s (%s)", lead.id, outcome.error, outcome.status.value)
            self._unrecorded.append((outcome, lead))
        # Record the last outcome before the connection closes: QUIT can wait for a slow server.
        self._commit(connection)

    def _commit(
        self, connection: Connection, *, hand_over: int | None = None, release: list[int] | None = None, reason: str = ""
    ) -> bool:
        """Record the outcomes not yet written and, in the same commit, mark `hand_over` as `sending`.

        Returns False when `hand_over` is no longer this worker's to send.
        A bounce suppresses its lead in the same transaction as its outcome.
        """
        if connection.dialect.name != "sqlite":
            return self._write(connection, hand_over=hand_over, release=release, reason=reason)
        # SQLite has one writer at a time, and a connection that finds the file locked sleeps for
        # milliseconds before it tries again. The lanes of this process take turns on a lock instead.
        with _SQLITE_WRITE_LOCK:
            return self._write(connection, hand_over=hand_over, release=release, reason=reason)

    def _write(self, connection: Connection, *, hand_over: int | None, release: list[int] | None, reason: str) -> bool:
        handed_over = True
        try:
            if self._unrecorded:
                self._writer.record([outcome for outcome, _lead in self._unrecorded])
                bounced = [
                    (outcome, lead) for outcome, lead in self._unrecorded
                    if outcome.status is SendStatus.BOUNCED and self.step.recipient is None
                ]
                if bounced:
                    # The session joins the connection's transaction; the commit below covers both.
                    with Session(bind=connection) as session:
                        for outcome, lead in bounced:
                            _suppress_bounced(session, lead, step=self.step, at=outcome.at)
                        session.flush()
            if release:
                release_queued(session=connection, ledger_ids=release, reason=reason)
            if hand_over is not None:
                handed_over = self._writer.hand_over(ledger_id=hand_over, owner=self.owner, wall_time=wall_clock())
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        for outcome, _lead in self._unrecorded:
            setattr(self.result, outcome.status.value, getattr(self.result, outcome.status.value) + 1)
        self._unrecorded.clear()
        return handed_over


def _hand_over(mailer: Mailer, message: OutgoingMessage, recipient: str, claim: Claim, *, settings: Settings) -> Outcome:
    """Send one message and return its outcome; `MailServerUnavailable` propagates."""
    try:
        mailer.send(message, sender=settings.sender_address, recipient=recipient)
    except MailServerUnavailable:
        raise
    except DeliveryError as exc:
        status = SendStatus(exc.outcome)
        retry_at = wall_clock() + retry_delay(claim.attempts, settings) if status is SendStatus.DEFERRED else None
        return Outcome(claim.ledger_id, status, now(), str(exc), exc.smtp_code, next_attempt_at=retry_at)
    return Outcome(claim.ledger_id, SendStatus.SENT, now())


def _suppress_bounced(session: Session, lead: Lead, *, step: EmailStep, at: datetime) -> None:
    stored = session.get(Lead, lead.id)
    if stored is not None:
        suppress_leads(
            session=session, leads=[stored], reason=SuppressionReason.HARD_BOUNCE,
            note=f"hard bounce on the {step.step} email", at=at,
        )


def retry_when_server_unavailable(task: object, task_run: object, state: object) -> bool:
    """Retry a batch only when the mail server could not be reached; other errors will not heal by waiting."""
    try:
        state.result()  # type: ignore[attr-defined]
    except MailServerUnavailable:
        return True
    except Exception:
        return False
    return False
