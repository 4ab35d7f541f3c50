"""A Python workflow as the canonical document: ``to_document``, the command line
(``chordflow validate/graph/run pkg.mod:workflow``), refusals, typed builders, and a
recorded run through the engine (``submit(executor="embedded")``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chordflow.flow import Depends, FlowError, NotImportable, Workflow, WorkflowFailed, step
from chordflow.flow.builders import Flow, Task, item, var
from chordflow.workflow.loader import load_file

from tests.flow import flows
from tests.servers import ROOT

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
QUICKSTART = "examples.flow_quickstart:workflow"


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORDFLOW_")}
    return subprocess.run([CHORDFLOW, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_to_document_is_one_python_step_per_function() -> None:
    from examples.flow_quickstart import workflow

    doc = workflow.to_document().model_dump(exclude_defaults=True)
    call = "chordflow.flow.on_worker:call"
    assert doc["name"] == "quickstart"
    assert doc["variables"] == {"create_person": ["Joe Mama"]}
    assert doc["outputs"] == {"say_hi": "${steps.say_hi.outputs.result}",
                              "say_hi_twice": "${steps.say_hi_twice.outputs.result}"}
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == ["create_person", "create_hi", "say_hi", "say_hi_twice"]
    assert steps["create_person"]["params"] == {"function": call, "kwargs": {
        "target": "examples.flow_quickstart:create_person",
        "args": "${variables.create_person}"}}
    assert steps["say_hi"]["params"]["kwargs"]["kwargs"] == {
        "p": "${steps.create_person.outputs.result}",
        "blessing": "${steps.create_hi.outputs.result}"}
    assert all(s["module"] == "python" for s in steps.values())


def test_map_options_and_serializers_in_the_document() -> None:
    doc = flows.mapped.to_document({flows.numbers: [3]}).model_dump(exclude_defaults=True)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["square"]["foreach"] == "${steps.numbers.outputs.result}"
    assert steps["square"]["params"]["kwargs"]["args"] == ["${item}"]
    assert steps["total"]["params"]["kwargs"]["gather"] == ["squares"]
    assert doc["variables"] == {"numbers": [3]}

    doc = flows.optioned.to_document().model_dump(exclude_defaults=True)
    report = {s["name"]: s for s in doc["steps"]}["report-count"]
    assert {k: v for k, v in report.items() if k not in ("params", "module")} == {
        "name": "report-count", "description": "Count the values (a step with every option).",
        "retries": 2, "retry_delay": 1.5, "timeout": 30, "queue": "reports", "priority": 7,
        "when": "${steps.make_set.outputs.result} != null"}
    assert report["params"]["kwargs"]["target"] == "tests.flow.flows:report"

    def twin(values: set[str] = Depends(flows.make_set)) -> int:
        return len(values)

    twin.__module__, twin.__qualname__ = flows.__name__, "count"  # another's path
    with pytest.raises(NotImportable, match="'tests.flow.flows:count' is not this function"):
        Workflow(twin).to_document()
    doc = Workflow(flows.count).to_document().model_dump(exclude_defaults=True)
    count = {s["name"]: s for s in doc["steps"]}["count"]
    assert count["params"]["kwargs"]["decode"] == {"values": "pickle"}
    made = {s["name"]: s for s in doc["steps"]}["make_set"]
    assert made["params"]["kwargs"]["serializer"] == "pickle"


def test_what_a_document_cannot_hold_is_refused_naming_the_step() -> None:
    def local() -> int:
        return 1

    with pytest.raises(NotImportable, match=r"step 'local': .*<locals>.local is not "
                                            "importable by path"):
        Workflow(local).to_document()

    @step(when=lambda x: x > 1)
    def gated(x: int = Depends(flows.square)) -> int:
        return x

    with pytest.raises(FlowError, match="step 'gated': when= is a Python function"):
        Workflow(gated, name="gated").to_document()


def test_a_function_of_the_script_being_run_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        "from chordflow.flow import Workflow, NotImportable\n"
        "def hello() -> str:\n    return 'hi'\n"
        "w = Workflow(hello)\n"
        "assert w.run_sync() == ['hi']\n"
        "try:\n    w.submit(executor='embedded')\n"
        "except NotImportable as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("step 'hello': hello is defined in the script being run "
                           "(__main__), which workers cannot import: move it into a module "
                           "(or run the script with python -m package.module)\n")


def test_cli_validate_graph_and_run_a_python_workflow() -> None:
    validated = cli("validate", QUICKSTART)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.strip() == "valid: quickstart v1, 4 steps"
    graph = cli("graph", QUICKSTART)
    assert graph.returncode == 0, graph.stderr
    assert "create_person" in graph.stdout and "s1 --> s2" in graph.stdout
    mapped = cli("run", "tests.flow.flows:mapped", "--json", "-e", "numbers=[4]")
    assert mapped.returncode == 0, mapped.stderr
    report = json.loads(mapped.stdout)
    assert report["outputs"] == {"total": 30}
    assert report["steps"]["square"]["outputs"]["items"][3] == {"result": 16}


def test_cli_refuses_what_is_not_a_python_workflow() -> None:
    not_one = cli("validate", "tests.flow.flows:square")
    assert not_one.returncode == 2
    assert "'tests.flow.flows:square' is a function, not a chordflow.flow.Workflow" \
        in not_one.stderr
    from chordflow.flow.loading import is_reference, load_reference

    with pytest.raises(FlowError, match="cannot import 'no_such_module'"):
        load_reference("no_such_module:workflow")
    with pytest.raises(FlowError, match="'tests.flow.flows' has no attribute 'nothing'"):
        load_reference("tests.flow.flows:nothing")
    assert is_reference("pkg.mod:workflow") and not is_reference("etl.yaml")
    assert not is_reference("C:/flows/etl.yaml")


def test_submit_embedded_records_the_run_and_returns_the_results() -> None:
    with flows.mapped.submit({flows.numbers: [3]}, executor="embedded") as run:
        assert run.result(timeout=60) == [14]
        report = run.report()
    assert report["steps"]["square"]["outputs"]["items"] == [
        {"result": 1}, {"result": 4}, {"result": 9}]
    with flows.pickled.submit(executor="embedded") as run:
        assert run.result(timeout=60) == [2, {"a", "b"}]
        recorded = run.report()["steps"]["make_set"]["outputs"]["result"]
    assert recorded["serializer"] == "pickle" and isinstance(recorded["data"], str)


def test_submit_embedded_fails_a_result_that_is_not_json_naming_it() -> None:
    with flows.unserializable.submit(executor="embedded") as run, \
            pytest.raises(WorkflowFailed) as caught:
        run.result(timeout=60)
    assert caught.value.states == {"not_json": "failed", "after": "upstream_failed"}
    assert "the result of tests.flow.flows:not_json is not JSON" in str(
        caught.value.errors["not_json"])
    assert run.report()["steps"]["not_json"]["attempts"] == 1


def test_builders_make_the_document_a_yaml_file_loads() -> None:
    flow = Flow("when-branches", description="Reorder an item when its stock is low; "
                "say so when it is not.",
                variables={"out": "/tmp/chordflow-when", "item": "coffee", "stock": 3,
                           "reorder_at": 10})
    check = flow.step("check", "echo", params={"item": var("item"), "stock": var("stock")})
    reorder = flow.step(
        "reorder", "file", "write",
        when=f'{check.output("stock")} < {var("reorder_at")} and {var("item")} != ""',
        params={"path": f"{var('out')}/order-{var('item')}.json",
                "data": {"item": var("item"), "quantity": 20}})
    flow.step("confirm", "bash", params={
        "cmd": f"echo ordered 20 {var('item')}, saved in {reorder.output('path')}"})
    enough = flow.step("enough", "bash",
                       when=f"not ({check.output('stock')} < {var('reorder_at')})",
                       params={"cmd": f"echo {var('stock')} {var('item')} in stock, "
                                      "no order"})
    flow.outputs(reorder=reorder.status, enough=enough.status)
    assert flow.build() == load_file(ROOT / "examples" / "when-branches.yaml")


def test_builders_cover_foreach_options_and_report_errors() -> None:
    flow = Flow("each", max_parallel=2)
    src = flow.step("src", "echo", params={"xs": [1, 2]})
    each: Task = flow.step("each", "echo", foreach=src.output("xs"),
                           params={"v": item()}, retries=2, timeout=5.0, queue="q",
                           priority=3, continue_on_failure=True, depends_on=[src])
    flow.outputs(items=each.output("items"))
    built = flow.build()
    step_each = built.steps[1]
    assert (step_each.foreach, step_each.retries, step_each.timeout, step_each.queue,
            step_each.priority, step_each.continue_on_failure, step_each.depends_on) == (
        "${steps.src.outputs.xs}", 2, 5.0, "q", 3, True, ["src"])
    assert built.max_parallel == 2
    from chordflow.errors import ValidationFailed

    bad = Flow("bad")
    bad.step("x", "echo", priority=12)
    with pytest.raises(ValidationFailed, match="step 'x'.*priority"):
        bad.build()

