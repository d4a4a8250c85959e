"""Stage changes: the only way a lead's stage is written."""

from __future__ import annotations

from datetime import datetime

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
