"""The funnel's allowed stage moves."""

from __future__ import annotations

import pytest

from leadflow.errors import StageTransitionError
from models import Stage, check_transition


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Stage.SUBSCRIBER, Stage.MQL),
        (Stage.MQL, Stage.SAL),
        (Stage.SAL, Stage.SQL),
        (Stage.SQL, Stage.CUSTOMER),
        (Stage.SUBSCRIBER, Stage.CUSTOMER),
        (Stage.SAL, Stage.DISQUALIFIED),
    ],
)
def test_forward_moves_are_allowed(source: Stage, target: Stage) -> None:
    check_transition(source, target)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        (Stage.MQL, Stage.SUBSCRIBER),
        (Stage.SQL, Stage.SAL),
        (Stage.CUSTOMER, Stage.MQL),
        (Stage.DISQUALIFIED, Stage.SQL),
        (Stage.SUBSCRIBER, Stage.SQL),
        (Stage.MQL, Stage.MQL),
    ],
)
def test_other_moves_name_both_stages(source: Stage, target: Stage) -> None:
    with pytest.raises(StageTransitionError) as caught:
        check_transition(source, target)

    assert repr(source.value) in str(caught.value)
    assert repr(target.value) in str(caught.value)
