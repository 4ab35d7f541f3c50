"""A CWL step's inputs (app/cwl/inputs.py): linkMerge, pickValue, the three scatter
methods and the shape of their results, valueFrom and when with JavaScript (Node.js)."""

from __future__ import annotations

import pytest
from chordflow.cwl.inputs import StepInputError, is_true, merge, nest, pick, scatter, value_from

JS = [{"class": "InlineJavascriptRequirement"}]


def test_link_merge_and_pick_value() -> None:
    assert merge([[1, 2], 3], "merge_flattened", True) == [1, 2, 3]
    assert merge([[1, 2], 3], None, True) == [[1, 2], 3]  # merge_nested by default
    assert merge([5], None, False) == 5
    assert merge([5], None, True) == 5  # source: [a] alone is a's value, as cwltool has it
    assert merge([5], "merge_nested", True) == [5]
    assert pick(None, "first_non_null", "s/i") is None  # one source's value: no picking
    assert pick([None, 2, 3], "first_non_null", "s/i") == 2
    assert pick([None, 2, None], "the_only_non_null", "s/i") == 2
    assert pick([None, 2, 3], "all_non_null", "s/i") == [2, 3]
    with pytest.raises(StepInputError, match="s/i: pickValue the_only_non_null found 2"):
        pick([1, None, 2], "the_only_non_null", "s/i")
    with pytest.raises(StepInputError, match="first_non_null found only nulls"):
        pick([None], "first_non_null", "s/i")


def test_scatter_methods_and_shapes() -> None:
    job = {"a": [1, 2], "b": ["x", "y", "z"], "c": 0}
    jobs, shape = scatter(job, ["a"], None, "s")
    assert [j["a"] for j in jobs] == [1, 2] and shape == [2] and jobs[0]["c"] == 0
    jobs, shape = scatter(job, ["a", "b"], "nested_crossproduct", "s")
    assert len(jobs) == 6 and shape == [2, 3]
    assert nest([f"{j['a']}{j['b']}" for j in jobs], shape) == [["1x", "1y", "1z"],
                                                                ["2x", "2y", "2z"]]
    jobs, shape = scatter(job, ["a", "b"], "flat_crossproduct", "s")
    assert shape == [6] and nest(list(range(6)), shape) == list(range(6))
    with pytest.raises(StepInputError, match="dotproduct scatter over arrays of different"):
        scatter(job, ["a", "b"], "dotproduct", "s")
    assert scatter({"a": []}, ["a"], None, "s") == ([], [0])


def test_value_from_and_when_in_javascript() -> None:
    job = {"n": 2, "name": "ada"}
    spec = {"n": {"valueFrom": "$(self * 10)"}, "name": {"valueFrom": "$(inputs.n + 1)"}}
    # Each valueFrom sees the inputs as they were before any (n is still 2).
    assert value_from(job, spec, JS) == {"n": 20, "name": 3}
    assert is_true("$(inputs.n > 1)", job, JS, "s") is True
    with pytest.raises(StepInputError, match="'when' must be true or false"):
        is_true("$(inputs.n)", job, JS, "s")
