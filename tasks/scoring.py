"""Qualification rules (BANT by default) read from a TOML file, and scoring that explains itself."""

from __future__ import annotations

import tomllib
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadflow.errors import ConfigurationError


class Decision(StrEnum):
    QUALIFY = "qualify"
    REVIEW = "review"
    DISQUALIFY = "disqualify"


class AnswerOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")
    label: str = Field(min_length=1, max_length=200)
    points: float


class Criterion(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_]+$")
    name: str = Field(min_length=1, max_length=80)
    question: str = Field(min_length=1, max_length=300)
    weight: float = Field(default=1.0, gt=0)
    pass_points: float = Field(ge=0, description="Weighted points at which this criterion counts as passed.")
    options: list[AnswerOption] = Field(min_length=2)

    @model_validator(mode="after")
    def _unique_values(self) -> Criterion:
        values = [option.value for option in self.options]
        if len(values) != len(set(values)):
            raise ValueError(f"criterion {self.key!r} has two options with the same value")
        return self

    def option(self, value: str) -> AnswerOption | None:
        return next((option for option in self.options if option.value == value), None)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    qualify: float = Field(description="At or above this score a lead qualifies.")
    disqualify: float = Field(description="Below this score a lead is disqualified.")

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.disqualify > self.qualify:
            raise ValueError("disqualify must not be above qualify")
        return self


class Rules(BaseModel):
    """A qualification framework: its criteria, how they combine, and the two thresholds."""

    model_config = ConfigDict(extra="forbid")

    framework: str = Field(min_length=1, max_length=40)
    description: str = ""
    combine: Literal["weighted-sum"] = "weighted-sum"
    thresholds: Thresholds
    criteria: list[Criterion] = Field(min_length=1)
    source: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _unique_keys(self) -> Rules:
        keys = [criterion.key for criterion in self.criteria]
        duplicates = sorted({key for key in keys if keys.count(key) > 1})
        if duplicates:
            raise ValueError(f"criteria keys must be unique; repeated: {', '.join(duplicates)}")
        return self

    @property
    def max_score(self) -> float:
        return sum(max(option.points for option in criterion.options) * criterion.weight for criterion in self.criteria)

    def criterion(self, key: str) -> Criterion | None:
        return next((criterion for criterion in self.criteria if criterion.key == key), None)


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text or "(top level)"


@lru_cache(maxsize=8)
def load_rules(path: Path) -> Rules:
    """Read and check a rules file; raise `ConfigurationError` naming the file, the key and the problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read the rules file {path}: {exc.strerror}; check LEADFLOW_RULES_FILE") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc
    try:
        rules = Rules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"]
            if error["type"] == "missing":
                message = "is missing; add it"
            elif error["type"] == "extra_forbidden":
                message = "is not a known key; remove it or check its spelling"
            elif error["type"].startswith("float"):
                message = f"must be a number, not {error.get('input')!r}"
            problems.append(f"{_location(error['loc'])} {message}")
        raise ConfigurationError(f"{path} has invalid rules: " + "; ".join(problems)) from exc
    rules.source = str(path)
    return rules


class CriterionScore(BaseModel):
    key: str
    name: str
    answer: str | None
    """The option value given, or None when the question was not answered."""
    answer_label: str | None
    points: float
    passed: bool


class ScoreResult(BaseModel):
    """A score with the reason for each point: stored with the decision so it can be shown later."""

    framework: str
    total: float
    max_total: float
    qualify_at: float
    disqualify_below: float
    decision: Decision
    criteria: list[CriterionScore]

    def explain(self) -> str:
        parts = [
            f"{item.name}: {item.answer_label or 'not answered'} ({item.points:g} points, {'pass' if item.passed else 'fail'})"
            for item in self.criteria
        ]
        return (
            f"{self.framework} score {self.total:g} of {self.max_total:g} "
            f"(qualify at {self.qualify_at:g}, disqualify below {self.disqualify_below:g}): " + "; ".join(parts)
        )


class InvalidAnswers(ValueError):
    """Survey answers that do not fit the rules; the message names the question and the allowed values."""


def check_answers(rules: Rules, answers: dict[str, str]) -> dict[str, str]:
    """Return the answers with known keys only, or raise `InvalidAnswers` for an unknown option value."""
    checked: dict[str, str] = {}
    for key, value in answers.items():
        criterion = rules.criterion(key)
        if criterion is None:
            known = ", ".join(item.key for item in rules.criteria)
            raise InvalidAnswers(f"unknown question {key!r}; the {rules.framework} questions are: {known}")
        if criterion.option(value) is None:
            allowed = ", ".join(option.value for option in criterion.options)
            raise InvalidAnswers(f"{value!r} is not an answer to {key!r}; use one of: {allowed}")
        checked[key] = value
    return checked


def score_answers(rules: Rules, answers: dict[str, str]) -> ScoreResult:
    """Score `answers` (criterion key to option value); an unanswered question scores 0 and fails."""
    items: list[CriterionScore] = []
    for criterion in rules.criteria:
        value = answers.get(criterion.key)
        option = criterion.option(value) if value is not None else None
        points = option.points * criterion.weight if option is not None else 0.0
        items.append(
            CriterionScore(
                key=criterion.key,
                name=criterion.name,
                answer=option.value if option else None,
                answer_label=option.label if option else None,
                points=points,
                passed=option is not None and points >= criterion.pass_points,
            )
        )
    total = sum(item.points for item in items)
    if total >= rules.thresholds.qualify:
        decision = Decision.QUALIFY
    elif total < rules.thresholds.disqualify:
        decision = Decision.DISQUALIFY
    else:
        decision = Decision.REVIEW
    return ScoreResult(
        framework=rules.framework,
        total=total,
        max_total=rules.max_score,
        qualify_at=rules.thresholds.qualify,
        disqualify_below=rules.thresholds.disqualify,
        decision=decision,
        criteria=items,
    )
