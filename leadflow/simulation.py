"""The demo's simulated month: people who start trials and answer surveys, and the flows at the times they would run.

Everything goes through the code that real use calls: `import_leads`, the
trial-invite, survey-followup and bant-review flows, `record_trial_signup`,
`record_survey_response`, and `resume_flow_run` for the borderline reviews, as a
person would answer the form in the Prefect UI. Only the clock is simulated: the
flows get the simulated time through their `now` parameter or through
`leadflow.clock.frozen_at`.
"""

from __future__ import annotations

import contextvars
import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, tags, task
from prefect.runtime import flow_run
from sqlmodel import col, select

from flows.bant_review import bant_review
from flows.survey_followup import CAMPAIGN_KIND as SURVEY_KIND
from flows.survey_followup import CAMPAIGN_NAME as SURVEY_CAMPAIGN
from flows.survey_followup import STEP as SURVEY_STEP
from flows.survey_followup import survey_followup
from flows.trial_invite import STEP as INVITE_STEP
from flows.trial_invite import CampaignSummary, trial_invite
from leadflow.clock import frozen_at
from leadflow.settings import get_settings
from models import Campaign, EmailSend, Lead, SendStatus, session_scope
from tasks.import_leads import ImportSummary, import_leads
from tasks.list_columns import CustomerRule
from tasks.review import score_leads, select_unreviewed_batch
from tasks.scoring import Rules, load_rules
from tasks.surveys import SurveyOutcome, record_survey_response
from tasks.trials import SignupOutcome, record_trial_signup

SIMULATED_DAYS = 30
SIGNUP_SHARE = 0.30
"""Share of the invited who start the free trial."""
SIGNUP_WINDOW_HOURS = 14 * 24
"""Sign-ups spread over the first two weeks after the invite, most of them in the first days."""
ANSWER_SHARE = 0.5
"""Share of the trial users who answer the survey."""
ANSWER_DELAY_HOURS = (1.0, 40.0)
"""A survey answer comes this many hours after the survey email, uniformly spread."""
FOLLOWUP_EVERY_HOURS = 48
"""How often the simulated scheduler runs survey-followup, and only when a survey email is due.

Prefect's scheduler would start one run per 15-minute slot. At about a second per flow
run that would make the demo take minutes, so the demo's slots are two days long.
"""
REVIEW_DAYS = (14, 21, 28)
"""Days of the month on which bant-review runs."""
EXTRA_REVIEW_RUNS = 3
"""Review runs after the last review day while leads still wait, because one form shows at most 20 leads."""
REVIEW_TIMEOUT_MINUTES = 2.0
REVIEWER = "demo reviewer"
PERSONAS = {
    # temperature: (share of the trial users, chance of the best, the middle and the worst answer per question)
    "hot": (0.22, (0.6, 0.4, 0.0)),
    "warm": (0.20, (0.15, 0.6, 0.25)),
    "cold": (0.58, (0.0, 0.3, 0.7)),
}
FIT_BY_PERSONA = {"hot": "great", "warm": "partial", "cold": "poor"}
PAIN_POINTS = (
    "Reports take a day to build by hand",
    "Our data sits in five spreadsheets",
    "Nobody trusts the dashboard numbers",
    "Month-end closing is slow",
    "",
)

ProgressCallback = Callable[[str, float], None]
"""Called with a description of the simulated moment and the share of the month done (0 to 1)."""

_progress: contextvars.ContextVar[ProgressCallback | None] = contextvars.ContextVar("leadflow_demo_progress", default=None)


@contextmanager
def reporting_progress(callback: ProgressCallback) -> Iterator[None]:
    """Send the demo's progress to `callback` inside the block (the command line draws a bar with it)."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def _report(description: str, share: float) -> None:
    callback = _progress.get()
    if callback is not None:
        callback(description, share)


@dataclass(frozen=True)
class SimulatedPerson:
    """The choices of one invited lead for the simulated month, drawn from the seed before anything runs."""

    lead_id: int
    email: str
    signs_up_after: timedelta | None
    """Time from the invite to the trial sign-up; None for a lead who never signs up."""
    answers_after: timedelta | None
    """Time from the survey email to the answer; None for a lead who never answers."""
    answers: dict[str, str]
    fit: str
    pain_points: str


def draw_people(invited: list[tuple[int, str]], *, rules: Rules, seed: int) -> list[SimulatedPerson]:
    """Decide, from `seed` alone, who signs up, who answers the survey, and how.

    Every person takes the same number of draws whatever they decide, so the same
    seed and list always give the same month.
    """
    generator = random.Random(f"leadflow-demo-{seed}")
    people = []
    for lead_id, email in invited:
        signs_up = generator.random() < SIGNUP_SHARE
        signup_hours = generator.triangular(1.0, SIGNUP_WINDOW_HOURS, 1.0)
        answers = generator.random() < ANSWER_SHARE
        answer_hours = generator.uniform(*ANSWER_DELAY_HOURS)
        persona = _draw_persona(generator)
        chances = PERSONAS[persona][1]
        given = {criterion.key: _draw_option(generator, criterion, chances) for criterion in rules.criteria}
        pain = generator.choice(PAIN_POINTS)
        people.append(
            SimulatedPerson(
                lead_id=lead_id,
                email=email,
                signs_up_after=timedelta(minutes=round(signup_hours * 60)) if signs_up else None,
                answers_after=timedelta(minutes=round(answer_hours * 60)) if signs_up and answers else None,
                answers=given,
                fit=FIT_BY_PERSONA[persona],
                pain_points=pain,
            )
        )
    return people


def _draw_persona(generator: random.Random) -> str:
    draw = generator.random()
    total = 0.0
    for name, (share, _) in PERSONAS.items():
        total += share
        if draw < total:
            return name
    return name


def _draw_option(generator: random.Random, criterion: Any, chances: tuple[float, float, float]) -> str:
    ranked = sorted(criterion.options, key=lambda option: option.points, reverse=True)
    draw = generator.random()
    if draw < chances[0]:
        return ranked[0].value
    if draw < chances[0] + chances[1] and len(ranked) > 2:
        return ranked[len(ranked) // 2].value
    return ranked[-1].value


def reviewer_choice(score: float, rules: Rules) -> str:
    """Return the simulated reviewer's choice: qualify from the middle of the borderline range up."""
    middle = (rules.thresholds.qualify + rules.thresholds.disqualify) / 2
    return "qualify" if score >= middle else "disqualify"


class SimulatedReviewer:
    """A thread that submits the review form of each paused flow run tagged `tag` through `resume_flow_run`, as the UI does."""

    def __init__(self, tag: str, rules: Rules, logger: Any) -> None:
        self.tag = tag
        self.rules = rules
        self.logger = logger
        self.decisions = 0
        self._answered: set[Any] = set()
        self._stop = threading.Event()
        # The thread needs this context's Prefect settings (the API URL) to reach the server.
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._watch,), name="demo-reviewer", daemon=True)

    def __enter__(self) -> SimulatedReviewer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
            FlowRunFilterTags,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.exceptions import PrefectHTTPStatusError

        paused_here = FlowRunFilter(
            tags=FlowRunFilterTags(all_=[self.tag]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        )
        while not self._stop.wait(0.5):
            try:
                with get_client(sync_client=True) as client:
                    runs = client.read_flow_runs(flow_run_filter=paused_here)
            except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
                self.logger.warning("the simulated reviewer could not list paused runs, trying again: %s", exc)
                continue
            for run in runs:
                if run.id not in self._answered and self._answer(run.id, run.parameters.get("lead_ids") or []):
                    self._answered.add(run.id)

    def _answer(self, run_id: Any, lead_ids: list[int]) -> bool:
        from prefect.exceptions import NotPausedError
        from prefect.flow_runs import resume_flow_run

        with session_scope() as session:
            candidates = score_leads(session=session, rules=self.rules, lead_ids=lead_ids)
        form: dict[str, str] = {"reviewer": REVIEWER}
        for candidate in candidates:
            form[f"lead_{candidate.lead_id}"] = reviewer_choice(candidate.score.total, self.rules)
            form[f"note_{candidate.lead_id}"] = f"simulated review of a score of {candidate.score.total:g}"
        try:
            resume_flow_run(run_id, run_input=form)
        except NotPausedError:
            return True
        except RuntimeError as exc:
            # The form's schema is saved just after the run pauses; try again at the next poll.
            self.logger.info("review form of flow run %s not ready yet: %s", run_id, exc)
            return False
        self.decisions += len(candidates)
        return True


@dataclass
class MonthSummary:
    """Counts of the simulated month."""

    start: datetime
    end: datetime
    imported: ImportSummary
    invite: CampaignSummary
    signups: int = 0
    followup_runs: int = 0
    surveys_sent: int = 0
    answers: int = 0
    review_runs: int = 0
    reviewer_decisions: int = 0


@task(name="import-sample-list")
def import_sample_list(path: Path, actor: str) -> ImportSummary:
    """Import the sample list, marking the rows with Customer=yes as customers."""
    with session_scope() as session:
        return import_leads(path, session=session, customer_rules=[CustomerRule.parse("Customer=yes")], actor=actor)


def _invited_leads(campaign: str) -> list[tuple[int, str]]:
    with session_scope() as session:
        rows = session.exec(
            select(Lead.id, Lead.email)
            .join(EmailSend, col(EmailSend.lead_id) == Lead.id)
            .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
            .where(
                col(Campaign.kind) == INVITE_STEP, col(Campaign.name) == campaign,
                col(EmailSend.step) == INVITE_STEP, col(EmailSend.status) == SendStatus.SENT.value,
            )
            .order_by(col(Lead.id))
        ).all()
    return [(lead_id, email) for lead_id, email in rows if lead_id is not None]


def _surveys_sent(lead_ids: set[int]) -> dict[int, datetime]:
    """Return the time each of these leads was sent its survey email, for those that were."""
    with session_scope() as session:
        rows = session.exec(
            select(EmailSend.lead_id, EmailSend.sent_at)
            .join(Campaign, col(Campaign.id) == EmailSend.campaign_id)
            .where(
                col(Campaign.kind) == SURVEY_KIND, col(Campaign.name) == SURVEY_CAMPAIGN,
                col(EmailSend.step) == SURVEY_STEP, col(EmailSend.status) == SendStatus.SENT.value,
                col(EmailSend.lead_id).in_(lead_ids),
            )
        ).all()
    return {lead_id: sent_at for lead_id, sent_at in rows if sent_at is not None}


def _leads_waiting_for_review() -> bool:
    with session_scope() as session:
        return bool(select_unreviewed_batch(session=session, after_id=0, size=1))


@flow(name="demo-month", flow_run_name="demo-month/{campaign}")
def demo_month(sample: Path, campaign: str, start: datetime, seed: int) -> MonthSummary:
    """Import the sample list, send the trial invite, and play a month of sign-ups, surveys and reviews.

    Args:
        sample: The sample list to import.
        campaign: Name of the trial-invite campaign.
        start: Simulated time of the import and the invite; the month runs from there.
        seed: Seed of the simulated people's choices.
    """
    logger = get_run_logger()
    settings = get_settings()
    rules = load_rules(settings.rules_file)
    run_id = flow_run.get_id()
    actor = f"flow-run:{run_id}" if run_id else "demo"
    end = start + timedelta(days=SIMULATED_DAYS)

    # Every run of this demo carries the tag, so the reviewer submits no other run's form.
    with tags(f"demo-run-{run_id}"), SimulatedReviewer(f"demo-run-{run_id}", rules, logger) as reviewer:
        _report("importing the sample list", 0.0)
        with frozen_at(start):
            imported = import_sample_list(sample, actor)
        _report("sending the trial invite", 0.0)
        with frozen_at(start):
            invite = trial_invite(name=campaign)
        summary = MonthSummary(start=start, end=end, imported=imported, invite=invite)
        people = draw_people(_invited_leads(campaign), rules=rules, seed=seed)
        _play_month(people, summary, rules=rules, actor=actor, logger=logger)
        summary.reviewer_decisions = reviewer.decisions
    return summary


def _play_month(people: list[SimulatedPerson], summary: MonthSummary, *, rules: Rules, actor: str, logger: Any) -> None:
    settings = get_settings()
    start, end = summary.start, summary.end
    signups = sorted(
        ((start + person.signs_up_after, person) for person in people if person.signs_up_after is not None),
        key=lambda item: (item[0], item[1].lead_id),
    )
    answers: list[tuple[datetime, SimulatedPerson]] = []
    survey_due: dict[int, datetime] = {}
    by_lead = {person.lead_id: person for person in people}

    followups = [start + timedelta(hours=FOLLOWUP_EVERY_HOURS * k) for k in range(1, SIMULATED_DAYS * 24 // FOLLOWUP_EVERY_HOURS + 1)]
    reviews = [start + timedelta(days=day) for day in REVIEW_DAYS]
    # When both fall on one moment, the follow-up runs first and the review after it.
    moments = sorted([(moment, 0) for moment in followups] + [(moment, 1) for moment in reviews])

    for moment, kind in moments:
        with session_scope() as session:
            while signups and signups[0][0] <= moment:
                at, person = signups.pop(0)
                result = record_trial_signup(
                    person.email, session=session, started_at=at, days=settings.trial_days,
                    source="demo: simulated sign-up", actor=actor, offset_hours=settings.survey_offset_hours,
                )
                if result.outcome in (SignupOutcome.STARTED, SignupOutcome.CREATED) and result.survey_due_at:
                    survey_due[person.lead_id] = result.survey_due_at
                    summary.signups += 1
            answers.sort(key=lambda item: (item[0], item[1].lead_id))
            while answers and answers[0][0] <= moment:
                at, person = answers.pop(0)
                answer = record_survey_response(
                    person.lead_id, session=session, rules=rules, answers=person.answers, fit=person.fit,
                    pain_points=person.pain_points or None, source="demo: simulated survey page", actor=actor, at=at,
                )
                if answer.outcome is SurveyOutcome.RECORDED:
                    summary.answers += 1

        day = (moment - start) / timedelta(days=1)
        if kind == 0 and any(due <= moment for due in survey_due.values()):
            _report(f"day {day:.0f} of {SIMULATED_DAYS}: survey follow-up", day / SIMULATED_DAYS)
            survey_followup(now=moment)
            summary.followup_runs += 1
            sent = _surveys_sent(set(survey_due))
            for lead_id, sent_at in sent.items():
                del survey_due[lead_id]
                summary.surveys_sent += 1
                person = by_lead[lead_id]
                if person.answers_after is not None:
                    answers.append((sent_at + person.answers_after, person))
        elif kind == 1:
            _report(f"day {day:.0f} of {SIMULATED_DAYS}: BANT review", day / SIMULATED_DAYS)
            with frozen_at(moment):
                bant_review(review_timeout_minutes=REVIEW_TIMEOUT_MINUTES)
            summary.review_runs += 1

    # A form shows at most 20 leads, so a busy month can leave some for more runs.
    extra = 0
    while extra < EXTRA_REVIEW_RUNS and _leads_waiting_for_review():
        extra += 1
        with frozen_at(reviews[-1] + timedelta(hours=extra)):
            bant_review(review_timeout_minutes=REVIEW_TIMEOUT_MINUTES)
        summary.review_runs += 1
    if answers or signups or survey_due:
        # NOTE: the windows above end by day 22, so this only happens if they are changed.
        logger.warning(
            "%d sign-ups, %d survey emails and %d answers fell after the simulated month and were left out",
            len(signups), len(survey_due), len(answers),
        )
    _report(f"day {SIMULATED_DAYS} of {SIMULATED_DAYS}", 1.0)
    logger.info(
        "simulated %s to %s: %d trial sign-ups, %d survey emails in %d follow-up runs, %d answers, %d review runs",
        start.isoformat(), end.isoformat(), summary.signups, summary.surveys_sent, summary.followup_runs,
        summary.answers, summary.review_runs,
    )
