"""The survey form: one question per criterion of the active rules, plus fit and pain points.

The questions come from the rules file, so pointing LEADFLOW_RULES_FILE at another
framework changes the form without touching a template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tasks.scoring import Rules
from tasks.surveys import FIT_OPTIONS, PAIN_POINTS_MAX_LENGTH

ANSWER_PREFIX = "answer_"
"""Form field names are this prefix and the criterion key, so no key can clash with `fit`."""
FORM_MAX_BYTES = 64 * 1024
FORM_MAX_FIELDS = 100

FIT_QUESTION = "How well did the trial fit your needs?"
FIT_LABELS = {
    "great": "It fits what we need",
    "partial": "It covers part of what we need",
    "poor": "It does not fit",
}


class InvalidForm(ValueError):
    """The request body cannot be read as a form at all (not a missing or wrong answer)."""


@dataclass
class SurveyForm:
    answers: dict[str, str] = field(default_factory=dict)
    """Criterion key to option value, for the answers that are options of the rules."""
    fit: str | None = None
    pain_points: str = ""
    problems: list[str] = field(default_factory=list)
    """What the person must fix before the answers can be stored; empty when the form is complete."""


def parse_survey_form(body: bytes, rules: Rules) -> SurveyForm:
    """Read an `application/x-www-form-urlencoded` body and check every answer; raise `InvalidForm` when it is no form."""
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=FORM_MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise InvalidForm("the form is not UTF-8 text") from exc
    except ValueError as exc:
        raise InvalidForm(f"the form has more than {FORM_MAX_FIELDS} fields") from exc
    values: dict[str, str] = {}
    for name, value in pairs:
        values.setdefault(name, value)

    form = SurveyForm(pain_points=" ".join(values.get("pain_points", "").split()))
    fit = values.get("fit", "")
    if fit in FIT_OPTIONS:
        form.fit = fit
    else:
        form.problems.append(f"Choose an answer to: {FIT_QUESTION}")
    for criterion in rules.criteria:
        value = values.get(ANSWER_PREFIX + criterion.key, "")
        if criterion.option(value) is None:
            form.problems.append(f"Choose an answer to: {criterion.question}")
        else:
            form.answers[criterion.key] = value
    if len(form.pain_points) > PAIN_POINTS_MAX_LENGTH:
        form.problems.append(f"Shorten the pain points to {PAIN_POINTS_MAX_LENGTH:,} characters.")
    return form


def form_context(rules: Rules, form: SurveyForm) -> dict[str, Any]:
    """Return the template variables of the form, with the choices of `form` selected."""
    questions = [
        {
            "field": ANSWER_PREFIX + criterion.key,
            "question": criterion.question,
            "options": [
                {"value": option.value, "label": option.label, "checked": form.answers.get(criterion.key) == option.value}
                for option in criterion.options
            ],
        }
        for criterion in rules.criteria
    ]
    fit_options = [
        {"value": value, "label": FIT_LABELS.get(value, value.capitalize()), "checked": form.fit == value}
        for value in FIT_OPTIONS
    ]
    return {
        "fit_question": FIT_QUESTION,
        "fit_options": fit_options,
        "questions": questions,
        "pain_points": form.pain_points,
        "pain_points_max_length": PAIN_POINTS_MAX_LENGTH,
        "problems": form.problems,
    }


def form_schema(rules: Rules) -> dict[str, Any]:
    """Return the OpenAPI request body of the form, built from `rules` like the page."""
    properties: dict[str, Any] = {
        "fit": {"type": "string", "enum": list(FIT_OPTIONS)},
        "pain_points": {"type": "string", "maxLength": PAIN_POINTS_MAX_LENGTH},
    }
    for criterion in rules.criteria:
        properties[ANSWER_PREFIX + criterion.key] = {
            "type": "string",
            "enum": [option.value for option in criterion.options],
            "description": criterion.question,
        }
    required = ["fit", *(ANSWER_PREFIX + criterion.key for criterion in rules.criteria)]
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }
