"""The rules files and the scoring, table-driven against the default BANT rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.errors import ConfigurationError
from leadflow.settings import PROJECT_ROOT
from tasks.scoring import Decision, InvalidAnswers, check_answers, load_rules, score_answers

BANT = PROJECT_ROOT / "rules" / "bant.toml"
CHAMP = PROJECT_ROOT / "rules" / "champ.toml"


@pytest.mark.parametrize(
    ("budget", "authority", "need", "timing", "score", "decision"),
    [
        ("approved", "me", "critical", "quarter", 100, Decision.QUALIFY),
        ("approved", "me", "important", "year", 80, Decision.QUALIFY),
        ("approved", "recommend", "important", "year", 70, Decision.QUALIFY),  # exactly the qualify threshold
        ("approved", "recommend", "important", "later", 55, Decision.REVIEW),
        ("planned", "recommend", "curious", "later", 30, Decision.DISQUALIFY),
        ("approved", "other", "important", "later", 40, Decision.REVIEW),  # exactly the disqualify threshold
        ("planned", "other", "important", "later", 30, Decision.DISQUALIFY),
        ("none", "other", "curious", "later", 0, Decision.DISQUALIFY),
    ],
)
def test_bant_scores_and_decisions(
    budget: str, authority: str, need: str, timing: str, score: float, decision: Decision
) -> None:
    rules = load_rules(BANT)

    result = score_answers(rules, {"budget": budget, "authority": authority, "need": need, "timing": timing})

    assert result.total == score
    assert result.decision is decision
    assert result.max_total == 100


def test_explanation_names_each_criterion() -> None:
    result = score_answers(load_rules(BANT), {"budget": "approved", "authority": "other"})

    passed = {item.key: item.passed for item in result.criteria}
    assert passed == {"budget": True, "authority": False, "need": False, "timing": False}
    assert "Budget: Yes, it is approved (25 points, pass)" in result.explain()
    assert "Need: not answered (0 points, fail)" in result.explain()


def test_champ_file_loads_and_scores() -> None:
    rules = load_rules(CHAMP)

    result = score_answers(rules, {"challenges": "blocking", "authority": "decide", "money": "budgeted", "prioritisation": "top"})

    assert rules.framework == "CHAMP"
    assert result.total == 100
    assert result.decision is Decision.QUALIFY


def test_unknown_answers_are_rejected() -> None:
    rules = load_rules(BANT)

    with pytest.raises(InvalidAnswers, match="use one of: approved, planned, none"):
        check_answers(rules, {"budget": "lots"})
    with pytest.raises(InvalidAnswers, match="unknown question 'colour'"):
        check_answers(rules, {"colour": "blue"})


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    text = BANT.read_text()
    assert old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("disqualify = 40\n", "", "thresholds.disqualify is missing; add it"),
        ('key = "timing"', 'key = "timing"\ncolour = "red"', "criteria[3].colour is not a known key"),
        ("points = 25", 'points = "many"', "criteria[0].options[0].points must be a number, not 'many'"),
        ("qualify = 70", "qualify = 30", "disqualify must not be above qualify"),
        ('key = "need"', 'key = "budget"', "repeated: budget"),
        ("[thresholds]", "[thresholds", "is not valid TOML"),
    ],
)
def test_broken_rules_name_file_and_key(tmp_path: Path, old: str, new: str, expected: str) -> None:
    path = broken_copy(tmp_path, old, new)

    with pytest.raises(ConfigurationError) as caught:
        load_rules(path)

    assert str(path) in str(caught.value)
    assert expected in str(caught.value)
