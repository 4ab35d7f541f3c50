"""The same Python workflows on real Celery workers (Redis, the MongoDB-protocol server,
two worker processes): each function a chordflow step, recorded like a YAML run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chordflow.engine.state import RunStatus
from chordflow.flow import NotImportable, Workflow, WorkflowFailed
from chordflow.workflow.loader import load_data

from tests.flow import flows
from tests.servers import ROOT

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


def _worker_logs(stack: Any) -> str:
    return "".join((stack.logs / f"{name}.log").read_text(errors="replace")
                   for name in ("w1", "w2"))


def test_quickstart_on_workers_named_workflow_dot_function(celery_stack: Any) -> None:
    from examples.flow_quickstart import create_person, workflow

    with workflow.submit({create_person: ["Ann"]}, executor="celery",
                         settings=celery_stack.settings()) as run:
        assert run.result(timeout=90) == [1, 2]
        report = run.report()
    assert report["workflow"] == "quickstart"
    assert report["steps"]["create_hi"]["outputs"] == {"result": "Hi Ann"}
    logs = _worker_logs(celery_stack)
    for name in workflow.steps:  # what Flower and the worker logs show
        assert f"Task quickstart.{name}[{run.run_id}:{name}:1] received" in logs
    # Recorded like any run: the store the API reads, with the step's captured print.
    service = celery_stack.service()
    assert service.engine.store.get_run(run.run_id).status is RunStatus.SUCCEEDED
    printed = [line.text for line in service.engine.store.logs(run.run_id)
               if line.step == "create_hi" and line.stream == "stdout"]
    assert printed == ["Creating hi\n"]


def test_records_are_identical_in_shape_to_a_yaml_run(celery_stack: Any) -> None:
    service = celery_stack.service()
    yaml_run = service.submit(load_data({"name": "yaml-python", "steps": [
        {"name": "numbers", "module": "python",
         "params": {"function": "tests.flow.flows:numbers", "args": [3]}},
        {"name": "total", "module": "python",
         "params": {"function": "builtins:sum",
                    "args": ["${steps.numbers.outputs.result}"]}}]}))
    assert service.wait(yaml_run, timeout=90) is RunStatus.SUCCEEDED

    with flows.mapped.submit({flows.numbers: [3]}, executor="celery",
                             settings=celery_stack.settings()) as run:
        assert run.result(timeout=90) == [14]
    flow_run = run.run_id
    store = service.engine.store
    yaml_report, flow_report = service.report(yaml_run), service.report(flow_run)
    assert set(flow_report) == set(yaml_report)
    for record in flow_report["steps"].values():
        assert set(record) == set(yaml_report["steps"]["numbers"])
    assert set(vars(store.get_run(flow_run))) == set(vars(store.get_run(yaml_run)))
    flow_steps, yaml_steps = store.get_steps(flow_run), store.get_steps(yaml_run)
    assert set(vars(flow_steps["numbers"])) == set(vars(yaml_steps["numbers"]))
    assert {e.type for e in store.events(flow_run) if e.step == "total"} == \
        {e.type for e in store.events(yaml_run) if e.step == "total"}
    assert flow_report["steps"]["total"]["outputs"] == {"result": 14}


def test_serializer_per_step_and_a_result_that_is_not_json(celery_stack: Any) -> None:
    settings = celery_stack.settings()
    with flows.pickled.submit(executor="celery", settings=settings) as run:
        assert run.result(timeout=90) == [2, {"a", "b"}]
    with flows.unserializable.submit(executor="celery", settings=settings) as run, \
            pytest.raises(WorkflowFailed) as caught:
        run.result(timeout=90)
    assert caught.value.states == {"not_json": "failed", "after": "upstream_failed"}
    assert "the result of tests.flow.flows:not_json is not JSON" in str(
        caught.value.first_error)
    # ... which strict=True catches before anything is sent:
    with pytest.raises(WorkflowFailed) as strict:
        flows.unserializable.run_sync(strict=True)
    assert "step 'not_json': its result would not reach a worker" in str(
        strict.value.errors["not_json"])


def test_a_function_not_importable_by_path_is_refused(celery_stack: Any) -> None:
    def nested() -> int:
        return 1

    with pytest.raises(NotImportable, match="step 'nested': .*not importable by path"):
        Workflow(nested, name="refused").submit(executor="celery",
                                                settings=celery_stack.settings())


def test_cli_runs_a_python_workflow_on_celery(celery_stack: Any) -> None:
    env = {**celery_stack.env(), "PYTHONPATH": str(ROOT)}
    env.pop("CHORDFLOW_API_KEY", None)
    done = subprocess.run([CHORDFLOW, "run", "examples.flow_quickstart:workflow",
                           "--executor", "celery", "--json", "-e", 'create_person=["Bo"]'],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "succeeded"
    assert report["steps"]["create_hi"]["outputs"] == {"result": "Hi Bo"}
