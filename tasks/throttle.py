"""Sending limits shared by every worker: messages per second and open SMTP connections.

Both are Prefect global concurrency limits, so they hold across processes and
machines that use one Prefect server. A `rate_limit()` call costs about 10 ms and
its waits are uneven, so a worker takes slots for a group of messages at once
and spaces the messages of the group evenly itself.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from leadflow.settings import Settings

RATE_LIMIT_NAME = "leadflow-send-rate"
CONNECTION_LIMIT_NAME = "leadflow-smtp-connections"
GROUP_SECONDS = 0.5
"""A worker takes the slots for this many seconds of sending per `rate_limit()` call."""
CONNECTION_LEASE_SECONDS = 60.0
"""A connection slot of a worker that died is freed by Prefect after this lease runs out."""


def group_size(rate: float) -> int:
    """Return how many message slots one `rate_limit()` call takes at `rate` messages per second."""
    return max(1, min(100, math.ceil(rate * GROUP_SECONDS)))


def configure_limits(settings: Settings) -> None:
    """Create or update the global concurrency limits that the settings ask for."""
    if settings.send_rate_per_second is None and settings.smtp_max_connections is None:
        return
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        if settings.send_rate_per_second is not None:
            # The decay is the rate. The limit is the burst: two groups, so a worker asking for its
            # next group a moment before the last one has fully decayed gets it without a retry wait.
            client.upsert_global_concurrency_limit_by_name(
                RATE_LIMIT_NAME,
                limit=2 * group_size(settings.send_rate_per_second),
                slot_decay_per_second=settings.send_rate_per_second,
            )
        if settings.smtp_max_connections is not None:
            client.upsert_global_concurrency_limit_by_name(CONNECTION_LIMIT_NAME, limit=settings.smtp_max_connections)


class Pacer:
    """Hold a worker to the shared message rate: slots by the group from Prefect, even spacing within a group.

    The connections of one batch share one pacer from their threads; it lets one message through at a time.
    """

    def __init__(self, rate: float | None, messages: int = 0) -> None:
        self.rate = rate
        self._left = messages
        """Messages of the batch not yet let through, for `wait()` called without `remaining`."""
        self._lock = threading.Lock()
        self._allowance = 0
        self._next_at: float | None = None
        """`time.monotonic()` before which the next message must not go out; set by the first message."""

    def wait(self, remaining: int | None = None) -> None:
        """Block until the next message may go out.

        `remaining` counts the messages left in this batch, this one included;
        without it, the pacer counts down from the `messages` it was made with.
        """
        if self.rate is None:
            return
        with self._lock:
            self._wait(self._left if remaining is None else remaining)
            self._left = max(self._left - 1, 0)

    def _wait(self, remaining: int) -> None:
        assert self.rate is not None
        if self._allowance == 0:
            from prefect.concurrency.sync import rate_limit

            # Take no more slots than the batch can use: unused slots would only decay.
            self._allowance = min(group_size(self.rate), max(remaining, 1))
            rate_limit(RATE_LIMIT_NAME, occupy=self._allowance, strict=True)
        if self._next_at is None:
            self._next_at = time.monotonic()
        delay = self._next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # A worker that fell behind (a slow reply, a pause) may catch up by one group's worth of
        # messages at most. The shared limit still caps the long-run rate.
        self._next_at = max(self._next_at, time.monotonic() - GROUP_SECONDS) + 1.0 / self.rate
        self._allowance -= 1


@contextmanager
def connection_slot(settings: Settings) -> Iterator[None]:
    """Hold one slot of the shared SMTP connection limit while a batch keeps its connection open."""
    if settings.smtp_max_connections is None or settings.smtp_url is None:
        yield
        return
    from prefect.concurrency.sync import concurrency

    with concurrency(CONNECTION_LIMIT_NAME, occupy=1, lease_duration=CONNECTION_LEASE_SECONDS, strict=True):
        yield
