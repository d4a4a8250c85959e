"""An SMTP server on loopback that misbehaves on purpose, and counts what it accepted per Message-ID.

It defers a random share of messages: 421 at RCPT followed by closing the
connection, 450, 451 or 452 at RCPT, or 451 after the data. It rejects chosen
recipients with a hard bounce and drops the connection at MAIL every few dozen
transactions. It can also play scripted replies to chosen recipients. A hook runs when a message's data
has arrived and before the server replies, which is where a test can kill the
client to make its outcome unknown to it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from typing import Any

DEFERRAL_REPLIES = (
    "450 4.2.1 mailbox busy, try again later",
    "451 4.3.0 local error, try again later",
    "452 4.2.2 mailbox full, try again later",
)
CLOSING_REPLY = "421 4.3.2 service not available, closing the connection"


@dataclass
class FaultPlan:
    """Faults the server injects, and their frequency."""

    defer_share: float = 0.0
    """Share of transactions deferred at random, between 0 and 1."""
    bounces: dict[str, str] = field(default_factory=dict)
    """Recipient address to its permanent rejection, such as "550 5.1.1 no such user"."""
    scripted: dict[str, list[str]] = field(default_factory=dict)
    """Recipient address to the replies its next RCPT commands get, one per try; then it is accepted."""
    drop_every: tuple[int, int] | None = None
    """Drop the connection at MAIL once every so many transactions, drawn anew in this range each time."""
    seed: int = 0


class FaultHandler:
    """The aiosmtpd handler: applies a `FaultPlan` and records what happened, safely across threads."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._random = random.Random(plan.seed)
        self._lock = threading.Lock()
        self._scripted = {address: list(replies) for address, replies in plan.scripted.items()}
        self._until_drop = self._next_drop()
        self.accepted: Counter[str] = Counter()
        """Message-ID to the number of times the server accepted it."""
        self.recipient_attempts: Counter[str] = Counter()
        """Recipient address to the number of RCPT commands naming it."""
        self.accepted_at: list[float] = []
        """`time.monotonic()` of each accepted message, in order."""
        self.replies: Counter[str] = Counter()
        """Reply code, or "drop", to how often the server gave it."""
        self.on_data: Callable[[str], None] | None = None
        """Called with the Message-ID when the data has arrived, before the reply goes out."""

    def _next_drop(self) -> int | None:
        if self.plan.drop_every is None:
            return None
        return self._random.randint(*self.plan.drop_every)

    @staticmethod
    def _close_soon(server: Any) -> None:
        # The reply is written before the event loop runs this, so the client reads it, then the closed socket.
        server.loop.call_soon(server.transport.close)

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201, N802
        # Advertise PIPELINING as postfix does, so the fast path of tasks.deliver meets the faults.
        session.host_name = hostname
        responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, ANN201, N802
        with self._lock:
            drop = False
            if self._until_drop is not None:
                self._until_drop -= 1
                if self._until_drop <= 0:
                    drop = True
                    self._until_drop = self._next_drop()
            if drop:
                self.replies["drop"] += 1
        if drop:
            server.transport.close()
            return "421 4.3.2 dropped"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201, N802
        recipient = address.lower()
        with self._lock:
            self.recipient_attempts[recipient] += 1
            scripted = self._scripted.get(recipient)
            if scripted:
                reply = scripted.pop(0)
            elif recipient in self.plan.bounces:
                reply = self.plan.bounces[recipient]
            elif self._random.random() < self.plan.defer_share * 0.7:
                reply = self._random.choice((CLOSING_REPLY, *DEFERRAL_REPLIES))
            else:
                reply = "250 OK"
            self.replies[reply[:3]] += 1
        if reply.startswith("421"):
            self._close_soon(server)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201, N802
        content = envelope.original_content or envelope.content
        message_id = str(BytesHeaderParser().parsebytes(content).get("Message-ID", "")).strip()
        with self._lock:
            # The rest of the deferral share is given after the data, when the client has sent everything.
            defer = self._random.random() < self.plan.defer_share * 0.3
            if defer:
                self.replies["451"] += 1
            else:
                self.accepted[message_id] += 1
                self.accepted_at.append(time.monotonic())
                self.replies["250"] += 1
        if not defer and self.on_data is not None:
            self.on_data(message_id)
        return "451 4.3.0 queue full, try again later" if defer else "250 2.0.0 accepted"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def fault_server(plan: FaultPlan) -> Iterator[tuple[str, FaultHandler]]:
    """Run a `FaultHandler` SMTP server on a free 127.0.0.1 port; yield its smtp:// URL and the handler."""
    from aiosmtpd.controller import Controller

    handler = FaultHandler(plan)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", handler
    finally:
        controller.stop()
