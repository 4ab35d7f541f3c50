"""The built-in step modules, each run as a step by the embedded executor."""

from __future__ import annotations

import json

import pytest
from chordflow.modules.registry import StepModule, default_registry, load_registry


def one(run_workflow, module: str, method_: str | None = None, **params):
    step = {"name": "s", "module": module, "params": params}
    if method_:
        step["method"] = method_
    return run_workflow({"name": "m", "steps": [step]})["steps"]["s"]


# -- bash -----------------------------------------------------------------------------

def test_bash_string_list_env_cwd_stdin(run_workflow, tmp_path):
    s = one(run_workflow, "bash", cmd="echo $GREETING from $(pwd); echo err >&2",
            env={"GREETING": "hello"}, cwd=str(tmp_path))
    assert s["outputs"] == {"exit_code": 0, "stdout": f"hello from {tmp_path}\n",
                            "stderr": "err\n"}
    s = one(run_workflow, "bash", cmd=["printf", "%s|", "a b", "$HOME"])
    assert s["outputs"]["stdout"] == "a b|$HOME|"  # a list is not run through a shell
    s = one(run_workflow, "bash", cmd="tr a-z A-Z", stdin="shout")
    assert s["outputs"]["stdout"] == "SHOUT"


def test_bash_exit_codes(run_workflow):
    s = one(run_workflow, "bash", cmd="echo bad >&2; exit 4")
    assert s["status"] == "failed" and s["error"] == "command exited with code 4: bad"
    s = one(run_workflow, "bash", cmd="exit 4", check=False)
    assert s["status"] == "succeeded" and s["outputs"]["exit_code"] == 4


def test_bash_timeout_messages_name_the_limit_that_fired(run_workflow):
    s = one(run_workflow, "bash", cmd="sleep 20", timeout=0.3)
    assert s["status"] == "failed" and s["error"] == \
        "command timed out after 0.3s and was killed"
    report = run_workflow({"name": "t", "steps": [
        {"name": "s", "module": "bash", "timeout": 1.5,  # the process starts well before
         "params": {"cmd": "sleep 20", "timeout": 10}}]})
    assert report["steps"]["s"]["error"] == \
        "command timed out after the step's timeout and was killed"


def test_bash_default_cwd_is_the_step_scratch_directory(run_workflow):
    report = run_workflow({"name": "m", "steps": [
        {"name": "s", "module": "bash", "params": {"cmd": "pwd"}}]})
    # $CHORDFLOW_WORKDIR/<run>/<step>
    assert report["steps"]["s"]["outputs"]["stdout"].endswith(f"/{report['run_id']}/s\n")


# -- http -----------------------------------------------------------------------------

def test_http_get_json_and_nested_reference(run_workflow, http_server):
    report = run_workflow({"name": "h", "steps": [
        {"name": "fetch", "module": "http", "method": "get",
         "params": {"url": f"{http_server}/items"}},
        {"name": "use", "module": "echo",
         "params": {"id": "${steps.fetch.outputs.json.items[0].id}"}},
    ]})
    fetch = report["steps"]["fetch"]["outputs"]
    assert fetch["status_code"] == 200 and fetch["json"]["items"][1]["name"] == "b"
    assert fetch["data"] == fetch["json"]
    assert report["steps"]["use"]["outputs"] == {"id": 1}


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_http_methods_send_json_headers_and_query(run_workflow, http_server, method):
    s = one(run_workflow, "http", method, url=f"{http_server}/echo",
            json={"a": [1, 2]}, headers={"X-Token": "t"}, params={"q": "1"})
    body = s["outputs"]["json"]
    assert body["method"] == method.upper() and body["body"] == {"a": [1, 2]}
    assert body["headers"]["X-Token"] == "t" and body["query"] == "q=1"


def test_http_request_form_data_and_text(run_workflow, http_server):
    s = one(run_workflow, "http", "request", url=f"{http_server}/echo", method="PATCH",
            data={"k": "v"})
    assert s["outputs"]["json"]["body"] == "k=v"
    s = one(run_workflow, "http", "get", url=f"{http_server}/text")
    assert s["outputs"]["json"] is None and s["outputs"]["text"] == "plain words"
    assert s["outputs"]["data"] == "plain words"


def test_http_errors_fail_unless_told_otherwise(run_workflow, http_server):
    s = one(run_workflow, "http", "get", url=f"{http_server}/status/404")
    assert s["status"] == "failed" and "answered 404" in s["error"]
    s = one(run_workflow, "http", "get", url=f"{http_server}/status/503",
            raise_for_status=False)
    assert s["status"] == "succeeded" and s["outputs"]["status_code"] == 503
    s = one(run_workflow, "http", "get", url="http://127.0.0.1:9/", timeout=2)
    assert s["status"] == "failed" and "ConnectError" in s["error"]


def test_http_timeout_limits_the_whole_exchange(run_workflow, http_server):
    s = one(run_workflow, "http", "get", url=f"{http_server}/trickle", timeout=1)
    assert s["status"] == "failed"
    assert s["error"].endswith("/trickle: no complete answer within 1s")


def test_http_step_timeout_stops_the_request(run_workflow, http_server):
    report = run_workflow({"name": "t", "steps": [
        {"name": "s", "module": "http", "timeout": 1,
         "params": {"url": f"{http_server}/trickle"}}]})
    s = report["steps"]["s"]
    assert s["status"] == "failed" and "timed out" in s["error"]


# -- file -----------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["json", "yaml", "csv", "txt"])
def test_file_round_trip(run_workflow, tmp_path, ext):
    rows = [{"a": "1", "b": "x"}, {"a": "2", "c": "y"}]
    data = "line1\nline2" if ext == "txt" else rows
    report = run_workflow({"name": "f", "steps": [
        {"name": "w", "module": "file", "method": "write",
         "params": {"path": str(tmp_path / f"sub/out.{ext}"), "data": data}},
        {"name": "r", "module": "file", "method": "read",
         "params": {"path": "${steps.w.outputs.path}"}},
    ]})
    got = report["steps"]["r"]["outputs"]["data"]
    if ext == "csv":
        assert got == [{"a": "1", "b": "x", "c": ""}, {"a": "2", "b": "", "c": "y"}]
    else:
        assert got == data


def test_file_format_override_and_errors(run_workflow, tmp_path):
    (tmp_path / "data.bin").write_text(json.dumps({"k": 1}))
    s = one(run_workflow, "file", "read", path=str(tmp_path / "data.bin"), format="json")
    assert s["outputs"]["data"] == {"k": 1}
    s = one(run_workflow, "file", "read", path=str(tmp_path / "data.bin"))
    assert s["status"] == "failed" and "set 'format'" in s["error"]
    s = one(run_workflow, "file", "read", path=str(tmp_path / "missing.json"))
    assert s["status"] == "failed" and "cannot read" in s["error"]
    s = one(run_workflow, "file", "write", path=str(tmp_path / "x.csv"), data=[1, 2])
    assert s["status"] == "failed" and "list of objects" in s["error"]


# -- filter ---------------------------------------------------------------------------

ROWS = [
    {"host": "a", "region": "eu", "status": "active", "score": 90, "name": "z"},
    {"host": "b", "region": "us", "status": "down", "score": 95, "name": "y"},
    {"host": "c", "region": "eu", "status": "active", "score": 80, "name": "x"},
    {"host": "a", "region": "eu", "status": "active", "score": 85, "name": "w"},
    {"host": "d", "region": "ap", "status": "active", "score": None, "name": "v"},
]


def test_filter_conditions(run_workflow):
    s = one(run_workflow, "filter", "filter", data=ROWS, conditions=[
        {"col": "status", "op": "eq", "value": "active"},
        {"col": "region", "op": "in", "value": ["eu", "us"]},
        {"col": "name", "op": "not_contains", "value": "w"},
    ])
    assert [r["host"] for r in s["outputs"]["data"]] == ["a", "c"]
    assert s["outputs"]["count"] == 2
    s = one(run_workflow, "filter", "filter", data=ROWS,
            conditions=[{"col": "score", "op": "gte", "value": 90}])
    assert s["status"] == "failed" and "row 4: cannot compare" in s["error"]
    # A literal bad operator is refused at validation; one only known when the step
    # runs (a reference) fails the step.
    from chordflow.engine.plan import compile_plan
    from chordflow.errors import ValidationFailed
    from chordflow.workflow.loader import load_data

    with pytest.raises(ValidationFailed) as invalid:
        compile_plan(load_data({"name": "m", "steps": [
            {"name": "s", "module": "filter", "method": "filter",
             "params": {"data": ROWS, "conditions": [{"col": "x", "op": "like"}]}}]}),
            default_registry())
    assert [(e.step, e.field) for e in invalid.value.errors] == [
        ("s", "params.conditions.0.op")]
    report = run_workflow({"name": "m", "variables": {"op": "like"}, "steps": [
        {"name": "s", "module": "filter", "method": "filter",
         "params": {"data": ROWS, "conditions": [
             {"col": "x", "op": "${variables.op}", "value": 1}]}}]})
    s = report["steps"]["s"]
    assert s["status"] == "failed" and "params.conditions" in s["error"]


def test_filter_select_sort_dedup_limit(run_workflow):
    s = one(run_workflow, "filter", "select", data=ROWS[:2], cols=["host", "score"],
            rename={"host": "h"})
    assert s["outputs"]["data"] == [{"h": "a", "score": 90}, {"h": "b", "score": 95}]
    s = one(run_workflow, "filter", "select", data=ROWS[:1], drop=["name", "score"])
    assert s["outputs"]["data"] == [{"host": "a", "region": "eu", "status": "active"}]
    s = one(run_workflow, "filter", "sort", data=ROWS, by=["region", "score"],
            ascending=[True, False])
    assert [r["name"] for r in s["outputs"]["data"]] == ["v", "z", "w", "x", "y"]
    s = one(run_workflow, "filter", "sort", data=ROWS, by="score")
    assert [r["score"] for r in s["outputs"]["data"]] == [80, 85, 90, 95, None]
    s = one(run_workflow, "filter", "dedup", data=ROWS, cols=["host"])
    assert [r["host"] for r in s["outputs"]["data"]] == ["a", "b", "c", "d"]
    s = one(run_workflow, "filter", "dedup", data=ROWS + ROWS[:1])
    assert s["outputs"]["count"] == 5
    s = one(run_workflow, "filter", "limit", data=ROWS, count=2, offset=1)
    assert [r["host"] for r in s["outputs"]["data"]] == ["b", "c"]
    s = one(run_workflow, "filter", "limit", data=[], count=3)
    assert s["outputs"] == {"data": [], "count": 0}


# -- python, echo ---------------------------------------------------------------------

def test_python_call(run_workflow):
    s = one(run_workflow, "python", function="tests.helpers.functions:add", args=[2],
            kwargs={"b": 3})
    assert s["outputs"] == {"result": 5}
    s = one(run_workflow, "python", function="tests.helpers.functions.describe",
            kwargs={"label": "x"})
    assert s["outputs"]["result"] == {"label": "x", "step": "s", "attempt": 1}
    s = one(run_workflow, "python", function="tests.helpers.functions:boom")
    assert s["status"] == "failed" and s["error"] == "ValueError: no good"
    s = one(run_workflow, "python", function="tests.helpers.nothing:fn")
    assert s["status"] == "failed" and "cannot import 'tests.helpers.nothing'" in s["error"]


def test_echo_returns_params(run_workflow):
    assert one(run_workflow, "echo", a=1, b=[2])["outputs"] == {"a": 1, "b": [2]}


# -- registry ---------------------------------------------------------------------------

def test_registry_lists_modules_methods_and_params():
    listing = {m["name"]: m for m in default_registry().describe()}
    assert {"echo", "bash", "http", "file", "filter", "python"} <= set(listing)
    bash = {m["name"]: m for m in listing["bash"]["methods"]}["run"]
    cmd = next(p for p in bash["params"] if p["name"] == "cmd")
    assert cmd["required"] and "string" in cmd["description"]
    http = {m["name"] for m in listing["http"]["methods"]}
    assert {"get", "post", "put", "delete", "request"} <= http


def test_modules_load_from_a_directory(tmp_path):
    (tmp_path / "greet.py").write_text(
        "from chordflow.modules.registry import StepModule\n"
        "module = StepModule('greet', 'Say hello.', default_method='run')\n"
        "@module.method\n"
        "def run(ctx, who: str = 'world') -> dict:\n"
        "    return {'text': f'hello {who}'}\n"
    )
    registry = load_registry([tmp_path])
    assert registry.method("greet", None).fn(None, who="x") == {"text": "hello x"}
    assert isinstance(registry.module("greet"), StepModule)
