"""The ``when`` expression language: parsing and evaluation, never Python eval."""

from __future__ import annotations

import pytest
from chordflow.errors import ConditionError
from chordflow.workflow.conditions import parse_condition
from chordflow.workflow.templating import resolve_in

SCOPE = {
    "variables": {"mode": "full", "n": 5, "tags": ["x", "y"], "none": None},
    "steps": {"count": {"outputs": {"n": 4, "ok": True, "name": "it's"}}},
}


def ev(text: str) -> bool:
    return parse_condition(text).evaluate(resolve_in(SCOPE))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${steps.count.outputs.n} > 3 and ${variables.mode} == 'full'", True),
        ("${steps.count.outputs.n} > 4", False),
        ("${steps.count.outputs.n} >= 4", True),
        ("${steps.count.outputs.n} <= 3 or ${variables.n} != 5", False),
        ("not ${steps.count.outputs.ok}", False),
        ("'x' in ${variables.tags}", True),
        ("'z' not in ${variables.tags}", True),
        ("${variables.mode} in ['full', 'quick']", True),
        ("${variables.none} == null", True),
        ("${steps.count.outputs.ok} == true and not false", True),
        ("(${variables.n} > 1 or false) and ${variables.n} < 10", True),
        ("${variables.n} == 5.0", True),
        ('${steps.count.outputs.name} == "it\'s"', True),
        ("${variables.tags}", True),
        ("1 < 2 < 3", None),
    ],
)
def test_evaluate(text, expected):
    if expected is None:
        with pytest.raises(ConditionError):
            parse_condition(text)
    else:
        assert ev(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "", "${a} >", "__import__('os').system('true')", "${variables.n} = 3",
        "(${variables.n} > 1", "variables.n > 1", "1 +", "[1, 2",
    ],
)
def test_rejects_bad_syntax(text):
    with pytest.raises(ConditionError):
        parse_condition(text)


def test_references_are_listed():
    cond = parse_condition("${steps.a.outputs.x} > 1 and ${variables.y} in [${steps.b.status}]")
    assert [r.text for r in cond.references()] == [
        "steps.a.outputs.x", "variables.y", "steps.b.status"
    ]


def test_cannot_compare_is_an_error_not_false():
    with pytest.raises(ConditionError, match="cannot compare"):
        ev("${variables.none} < 3")


def test_missing_key_is_an_error():
    with pytest.raises(ConditionError, match="no key 'nope'"):
        ev("${steps.count.outputs.nope} > 1")
