"""Hostile input against the real API (uvicorn, Redis, the MongoDB-protocol server, two
workers): every limit answers 4xx naming the step, the field and the limit, `/validate`
and submission agree, nothing is recorded, and generated deep and odd-keyed bodies find
no 5xx."""

from __future__ import annotations

import json
import string
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import CHORDFLOW, Api
from tests.servers import ROOT


def nest(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def echo(params: Any, **step: Any) -> dict[str, Any]:
    return {"name": "limits", "steps": [{"name": "s", "module": "echo", "params": params,
                                         **step}]}


HOSTILE = {
    "params nested 300 deep": (echo({"v": nest(300)}), "s", "params", "64 levels"),
    "params nested 900 deep": (echo({"v": nest(900)}), "s", "params", "64 levels"),
    "variables nested 900 deep": (
        {"name": "limits", "variables": {"x": nest(900)},
         "steps": [{"name": "s", "module": "echo", "params": {"v": "${variables.x}"}}]},
        None, "variables", "64 levels"),
    "when with 300 nested parentheses": (
        echo({}, when="(" * 300 + "true" + ")" * 300), "s", "when", "64 levels"),
    "a NUL byte in a params key": (echo({"a\x00b": 1}), "s", "params", "NUL"),
    "a when over its length": (echo({}, when="true or " * 600 + "true"), "s", "when",
                               "CHORDFLOW_MAX_WHEN_LENGTH"),
    "a literal foreach over its limit": (
        echo({"n": "${item}"}, foreach=list(range(200_001))), "s", "foreach",
        "CHORDFLOW_MAX_FOREACH_ITEMS"),
}


def runs_of(api: Api, name: str) -> int:
    with api.client() as http:
        page = http.get("/api/v1/runs", params={"workflow": name, "limit": 200}).json()
    return len(page["runs"])


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_input_gets_a_4xx_naming_step_field_and_limit(api: Api, case: str) -> None:
    doc, step, field, limit = HOSTILE[case]
    before = runs_of(api, "limits")
    with api.client() as http:
        checked = http.post("/api/v1/validate", json=doc)
        submitted = http.post("/api/v1/runs", json={"workflow": doc})
    assert checked.status_code == 200 and checked.json()["valid"] is False, checked.text
    assert submitted.status_code == 422, submitted.text
    # /validate and submission agree, error for error.
    assert submitted.json()["errors"] == checked.json()["errors"]
    error = submitted.json()["errors"][0]
    assert error["step"] == step and (error["field"] or "").startswith(field), error
    assert limit in error["message"], error
    assert runs_of(api, "limits") == before  # nothing half-written


def test_run_variables_nested_too_deep_are_refused_at_submission(api: Api) -> None:
    doc = {"name": "limits-vars", "variables": {"x": 1},
           "steps": [{"name": "s", "module": "echo", "params": {"v": "${variables.x}"}}]}
    with api.client() as http:
        answer = http.post("/api/v1/runs", json={"workflow": doc,
                                                 "variables": {"x": nest(900)}})
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["field"].startswith("variables.x") and "64 levels" in error["message"]
    assert runs_of(api, "limits-vars") == 0


def test_a_workflow_over_the_step_limit_is_refused_by_validate_and_submit(api: Api) -> None:
    doc = {"name": "too-many", "steps": [{"name": f"s{i}", "module": "echo"}
                                         for i in range(50_001)]}
    with api.client() as http:
        checked = http.post("/api/v1/validate", json=doc)
        submitted = http.post("/api/v1/runs", json={"workflow": doc})
    assert checked.json()["valid"] is False
    assert submitted.status_code == 422, submitted.text[:500]
    error = submitted.json()["errors"][0]
    assert error["field"] == "steps" and "CHORDFLOW_MAX_STEPS" in error["message"]
    assert "50,001 steps" in error["message"]
    assert runs_of(api, "too-many") == 0


def test_a_body_over_the_size_limit_is_413(api: Api) -> None:
    doc = echo({"n": "${item}"}, foreach=list(range(1_000_000)))  # ~7 MB of JSON
    with api.client() as http:
        answer = http.post("/api/v1/runs", json={"workflow": doc})
    assert answer.status_code == 413, answer.text[:500]


def test_the_cli_refuses_a_deep_file_in_one_line_with_exit_2(tmp_path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(json.dumps(echo({"v": nest(900)})))
    for command in (["validate", str(path)], ["run", str(path)]):
        done = subprocess.run([CHORDFLOW, *command], capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
        assert "64 levels" in done.stdout + done.stderr


# -- generated bodies -----------------------------------------------------------------

#: Keys a JSON body can carry and MongoDB may choke on: NUL, '$', '.', empty, unicode.
ODD_KEYS = st.one_of(
    st.sampled_from(["", "$", "$set", "a.b", ".", "a\x00b", "\x00", "_id", "é", "💥",
                     "${variables.x}", "$${x}", "__proto__"]),
    st.text(alphabet=string.printable + "\x00$.", max_size=8),
)
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                   st.floats(allow_nan=False), st.text(max_size=20),
                   st.sampled_from(["${variables.x}", "${item}", "${secrets.nope}",
                                    "${steps.s.outputs.x}", "$${", "${", "\ud800"]))


def deep(draw_depth: int) -> st.SearchStrategy[Any]:
    return st.integers(0, draw_depth).map(lambda n: nest(n, "x"))


VALUES = st.one_of(
    st.recursive(LEAVES, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(ODD_KEYS, inner, max_size=3)),
        max_leaves=12),
    deep(200),
)


@st.composite
def bodies(draw: st.DrawFn) -> dict[str, Any]:
    step: dict[str, Any] = {"name": draw(st.sampled_from(["s", "s-1", "_", "a.b", "é"])),
                            "module": draw(st.sampled_from(["echo", "filter", "nope"])),
                            "params": draw(st.dictionaries(ODD_KEYS, VALUES, max_size=4))}
    if draw(st.booleans()):
        step["when"] = draw(st.one_of(
            st.text(alphabet="()[]notandor ${}'\"=<>0123456789truefalse.", max_size=80),
            st.integers(0, 400).map(lambda n: "(" * n + "true" + ")" * n)))
    if draw(st.booleans()):
        step["foreach"] = draw(st.one_of(VALUES, st.just("${variables.x}")))
    return {"workflow": {"name": "fuzz", "variables": {"x": draw(VALUES)}, "steps": [step]},
            "variables": draw(st.one_of(st.none(), st.dictionaries(ODD_KEYS, VALUES,
                                                                    max_size=2)))}


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(body=bodies())
def test_generated_deep_and_odd_keyed_bodies_find_no_5xx(api: Api, body: dict[str, Any]
                                                         ) -> None:
    if body["variables"] is None:
        del body["variables"]
    with api.client() as http:
        for path, payload in (("/api/v1/validate", body["workflow"]), ("/api/v1/runs", body)):
            answer = http.post(path, content=json.dumps(payload),
                               headers={"Content-Type": "application/json"})
            assert answer.status_code < 500, (path, answer.status_code, answer.text[:500])
