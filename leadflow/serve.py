"""`leadflow serve`: serve the deployments of prefect.yaml from this process, so the scheduler can fire them.

The `campaign-sender` deployment is among them, so a campaign launched with
senders on a machine without workers has each sender run as a process that
`serve` starts.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from leadflow.errors import ConfigurationError
from leadflow.settings import PROJECT_ROOT, Settings


def read_deployment_specs(project_root: Path = PROJECT_ROOT) -> list[dict[str, Any]]:
    """Return the `deployments` entries of prefect.yaml."""
    path = project_root / "prefect.yaml"
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    specs = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(specs, list) or not specs:
        raise ConfigurationError(f"{path} declares no deployments")
    return specs


def _schedules(spec: dict[str, Any]) -> list[Any]:
    from prefect.schedules import Cron, Interval

    schedules: list[Any] = []
    for entry in spec.get("schedules") or []:
        if "cron" in entry:
            schedules.append(Cron(entry["cron"], timezone=entry.get("timezone", "UTC")))
        elif "interval" in entry:
            schedules.append(Interval(timedelta(seconds=float(entry["interval"]))))
        else:
            raise ConfigurationError(f"deployment {spec.get('name')!r}: only cron and interval schedules are supported")
    return schedules


def build_deployments(project_root: Path = PROJECT_ROOT) -> list[Any]:
    """Turn each prefect.yaml deployment into a runner deployment that `prefect.serve` can run."""
    from prefect.flows import load_flow_from_entrypoint

    deployments = []
    for spec in read_deployment_specs(project_root):
        flow = load_flow_from_entrypoint(str(project_root / spec["entrypoint"]))
        deployments.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                version=str(spec.get("version")) if spec.get("version") else None,
                parameters=spec.get("parameters") or {},
                schedules=_schedules(spec),
                enforce_parameter_schema=bool(spec.get("enforce_parameter_schema", True)),
            )
        )
    return deployments


def schedule_pending_surveys(settings: Settings, *, at: datetime) -> tuple[int, int, str | None]:
    """Schedule a run for every slot with survey emails still to send, and one now for overdue ones.

    Returns the number of future slots scheduled, the number of overdue emails,
    and an error text when the Prefect API refused.
    """
    from flows.survey_followup import CAMPAIGN_KIND, CAMPAIGN_NAME, STEP
    from models import session_scope
    from tasks.audience import count_due, pending_survey_ends, survey_conditions
    from tasks.followup_schedule import schedule_catch_up_run, schedule_survey_runs
    from tasks.ledger import get_or_create_campaign

    offset = timedelta(hours=settings.survey_offset_hours)
    with session_scope() as session:
        campaign, _ = get_or_create_campaign(session=session, kind=CAMPAIGN_KIND, name=CAMPAIGN_NAME)
        ends = pending_survey_ends(session=session, campaign_id=campaign.id, step=STEP, after=at + offset)
        due, handled = count_due(
            session=session,
            conditions=survey_conditions(at=at, offset_hours=settings.survey_offset_hours),
            campaign_id=campaign.id,
            step=STEP,
        )

    report = schedule_survey_runs([end - offset for end in ends], settings=settings, at=at)
    overdue = due - handled
    error = report.error
    if overdue and error is None:
        error = schedule_catch_up_run(at=at)
    return len(report.scheduled), overdue, error


def serve_deployments(settings: Settings, api_url: str, *, on_ready: Any = None) -> None:
    """Register the deployments, schedule pending survey runs, and serve until interrupted."""
    from prefect import serve

    from leadflow.clock import now

    # Flow runs start as child processes that read their settings from the environment.
    os.environ["PREFECT_API_URL"] = api_url
    os.chdir(PROJECT_ROOT)
    deployments = build_deployments()
    for deployment in deployments:
        deployment.apply()
    scheduled, overdue, error = schedule_pending_surveys(settings, at=now())
    if on_ready is not None:
        on_ready([deployment.name for deployment in deployments], scheduled, overdue, error)
    serve(*deployments, print_starting_message=False)
