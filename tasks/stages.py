"""Stage changes: every move of a lead's stage is checked and given its history row here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from leadflow.clock import now
from models import Lead, Stage, StageChange, check_transition


def current_actor() -> str:
    """Return the actor for changes made now: `flow-run:<id>` inside a Prefect flow run, else `cli`."""
    # Imported here because Prefect takes 1 to 2 s to import (`python -X importtime`),
    # and commands that run no flow, such as `leadflow leads import`, need not wait for it.
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return f"flow-run:{run_id}" if run_id else "cli"


def record_stage_change(
    lead: Lead,
    target: Stage,
    *,
    session: Session,
    reason: str,
    actor: str,
    at: datetime | None = None,
) -> StageChange:
    """Move `lead` to `target` and append the history row; raise if the funnel forbids the move."""
    check_transition(lead.stage, target)
    moment = at or now()

    change = StageChange(
        lead_id=lead.id, from_stage=lead.stage, to_stage=target.value, reason=reason, actor=actor, created_at=moment
    )
    lead.stage = target.value
    lead.updated_at = moment
    if target is Stage.CUSTOMER:
        lead.is_customer = True
    session.add(lead)
    session.add(change)
    return change


def stage_change_values(
    *, lead_id: int, current: Stage | str | None, target: Stage, reason: str, actor: str, at: datetime
) -> dict[str, Any]:
    """Check a move and return its history row as column values, for writers that insert many rows at once.

    `current` is None for a lead's first stage. The caller writes the lead's new
    stage itself, in the same transaction as the row.
    """
    if current is not None:
        check_transition(current, target)
    from_stage = None if current is None else Stage(current).value
    return {
        "lead_id": lead_id,
        "from_stage": from_stage,
        "to_stage": target.value,
        "reason": reason,
        "actor": actor,
        "created_at": at,
    }
