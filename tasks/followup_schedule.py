"""Scheduled `survey-followup` runs, one per time slot with survey emails due, visible in the Prefect UI.

One flow run per lead would cost about a second and a process each, so survey
emails that fall due within the same slot (`LEADFLOW_FOLLOWUP_SLOT_MINUTES`,
15 by default) share one scheduled run at the end of the slot. 10,000 sign-ups a
day then need at most 96 runs a day. Each run sends every survey that is due at
its start, so a run that starts late, or a run for another slot, also sends what
earlier slots missed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from leadflow.settings import Settings

DEPLOYMENT_NAME = "survey-followup/survey-followup"


def slot_end(moment: datetime, slot_minutes: int) -> datetime:
    """Round `moment` up to the next slot boundary (boundaries count from midnight UTC)."""
    seconds = slot_minutes * 60
    epoch = moment.astimezone(UTC).timestamp()
    return datetime.fromtimestamp(math.ceil(epoch / seconds) * seconds, tz=UTC)


def idempotency_key(slot: datetime) -> str:
    return f"survey-followup/{slot:%Y-%m-%dT%H:%MZ}"


@dataclass
class ScheduleReport:
    scheduled: list[datetime] = field(default_factory=list)
    """Slot times that now have a scheduled run (new or existing)."""
    error: str | None = None
    """Reason scheduling stopped, or None. The due emails still go out at the next run."""


def slots_for(due_times: Iterable[datetime], *, at: datetime, slot_minutes: int) -> list[datetime]:
    """Return the distinct slots the due times fall in; an overdue time gets the next slot after `at`."""
    return sorted({slot_end(max(due, at), slot_minutes) for due in due_times})


def schedule_survey_runs(due_times: Iterable[datetime], *, settings: Settings, at: datetime) -> ScheduleReport:
    """Make sure a `survey-followup` run is scheduled for each slot with emails due.

    Uses the Prefect API in the current settings. The same slot always maps to the
    same idempotency key, so calling this again creates no second run.
    """
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    report = ScheduleReport()
    for slot in slots_for(due_times, at=at, slot_minutes=settings.followup_slot_minutes):
        try:
            run_deployment(
                DEPLOYMENT_NAME,
                scheduled_time=slot,
                timeout=0,
                idempotency_key=idempotency_key(slot),
                flow_run_name=f"survey-followup/{slot:%Y-%m-%d %H:%M} UTC",
                as_subflow=False,
                tags=["leadflow", "survey"],
            )
        except ObjectNotFound:
            report.error = (
                f"the {DEPLOYMENT_NAME} deployment is not on the Prefect server yet; "
                "`leadflow serve` creates it and schedules every pending survey email when it starts"
            )
            return report
        except Exception as exc:  # noqa: BLE001 (any API failure leaves the emails to the next run)
            report.error = f"the Prefect API failed while scheduling the slot {slot.isoformat()}: {exc}"
            return report
        report.scheduled.append(slot)
    return report


def schedule_on_available_server(
    due_times: list[datetime], *, settings: Settings, at: datetime
) -> ScheduleReport | None:
    """Schedule the survey runs on the configured Prefect server, or on leadflow's local one if it runs.

    Returns None, and schedules nothing, when no server is configured or running;
    `leadflow serve` schedules every pending survey email when it starts.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from leadflow.prefect_server import configured_api_url, running_server

    server = running_server(settings)
    api_url = configured_api_url() or (server.url if server else None)
    if api_url is None:
        return None
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return schedule_survey_runs(due_times, settings=settings, at=at)


def schedule_catch_up_run(*, at: datetime) -> str | None:
    """Schedule a `survey-followup` run for `at` (one per minute at most); return an error text or None."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    try:
        run_deployment(
            DEPLOYMENT_NAME,
            scheduled_time=at,
            timeout=0,
            idempotency_key=f"survey-followup/catch-up/{at:%Y-%m-%dT%H:%MZ}",
            flow_run_name=f"survey-followup/catch-up {at:%Y-%m-%d %H:%M} UTC",
            as_subflow=False,
            tags=["leadflow", "survey"],
        )
    except ObjectNotFound:
        return f"the {DEPLOYMENT_NAME} deployment is not on the Prefect server"
    except Exception as exc:  # noqa: BLE001 (the hourly run still sends what is due)
        return f"the Prefect API failed while scheduling a catch-up run: {exc}"
    return None
