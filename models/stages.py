"""The funnel's stages and the one table of moves between them."""

from __future__ import annotations

from enum import StrEnum

from leadflow.errors import StageTransitionError


class Stage(StrEnum):
    SUBSCRIBER = "subscriber"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    CUSTOMER = "customer"
    DISQUALIFIED = "disqualified"


# Stages move forward only. A lead can buy or be disqualified from any open stage;
# `customer` and `disqualified` are final.
ALLOWED_TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.SUBSCRIBER: frozenset({Stage.MQL, Stage.CUSTOMER, Stage.DISQUALIFIED}),
    Stage.MQL: frozenset({Stage.SAL, Stage.CUSTOMER, Stage.DISQUALIFIED}),
    Stage.SAL: frozenset({Stage.SQL, Stage.CUSTOMER, Stage.DISQUALIFIED}),
    Stage.SQL: frozenset({Stage.CUSTOMER, Stage.DISQUALIFIED}),
    Stage.CUSTOMER: frozenset(),
    Stage.DISQUALIFIED: frozenset(),
}


def check_transition(current: Stage | str, target: Stage | str) -> None:
    """Raise `StageTransitionError` unless the funnel allows moving from `current` to `target`."""
    source = Stage(current)
    destination = Stage(target)
    if destination not in ALLOWED_TRANSITIONS[source]:
        allowed = ", ".join(sorted(ALLOWED_TRANSITIONS[source])) or "none, it is final"
        raise StageTransitionError(
            f"cannot move a lead from {source.value!r} to {destination.value!r}: "
            f"stages move forward only (allowed from {source.value!r}: {allowed})"
        )
