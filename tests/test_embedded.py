"""The embedded executor: timeouts and cancel really stop the work; the Python API."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.workflow.loader import load_data


def wait_for_file(path: Path, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_subprocess(run_workflow, tmp_path):
    pidfile = tmp_path / "pid"
    report = run_workflow({
        "name": "timeout",
        "steps": [{"name": "slow", "module": "bash", "timeout": 1,
                   "params": {"cmd": f"echo $$ > {pidfile}; exec sleep 30"}}],
    }, timeout=20)
    slow = report["steps"]["slow"]
    assert slow["status"] == "failed" and "timed out" in slow["error"]
    assert not alive(int(pidfile.read_text()))


def test_timeout_with_retries_runs_again(run_workflow, tmp_path):
    log = tmp_path / "log"
    report = run_workflow({
        "name": "timeout2",
        "steps": [{"name": "slow", "module": "bash", "timeout": 0.5, "retries": 1,
                   "params": {"cmd": f"echo run >> {log}; sleep 30"}}],
    }, timeout=20)
    assert report["steps"]["slow"]["attempts"] == 2
    assert log.read_text().split() == ["run", "run"]


def test_cancel_stops_running_work_and_records_cancelled(executor, tmp_path):
    pidfile = tmp_path / "pid"
    plan = executor.compile(load_data({
        "name": "cancel",
        "steps": [
            {"name": "slow", "module": "bash",
             "params": {"cmd": f"echo $$ > {pidfile}; exec sleep 30"}},
            {"name": "after", "module": "echo", "depends_on": ["slow"]},
            {"name": "other", "module": "bash", "params": {"cmd": "true"}},
        ],
    }))
    run_id = executor.submit(plan)
    pid = int(wait_for_file(pidfile))
    assert executor.cancel(run_id, "stop please")
    assert executor.wait(run_id, timeout=10) is RunStatus.CANCELLED
    steps = executor.store.get_steps(run_id)
    assert steps["slow"].status is StepStatus.CANCELLED
    assert steps["after"].status is StepStatus.CANCELLED
    assert steps["other"].status in (StepStatus.SUCCEEDED, StepStatus.CANCELLED)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)
    assert executor.store.get_run(run_id).error == "stop please"
    assert not executor.cancel(run_id)  # a finished run cannot be cancelled again


def test_async_python_callables_and_their_timeout(run_workflow, tmp_path):
    marker = tmp_path / "marker"
    report = run_workflow({
        "name": "async",
        "steps": [
            {"name": "double", "module": "python", "params": {
                "function": "tests.helpers.functions:async_double", "args": [21]}},
            {"name": "slow", "module": "python", "timeout": 0.5, "params": {
                "function": "tests.helpers.functions:async_sleep_then_touch",
                "kwargs": {"seconds": 30, "path": str(marker)}}},
        ],
    }, timeout=20)
    assert report["steps"]["double"]["outputs"] == {"result": 42}
    assert report["steps"]["slow"]["status"] == "failed"
    assert "timed out" in report["steps"]["slow"]["error"]
    assert wait_for_file(marker) == "cancelled"  # the coroutine itself was cancelled


def test_exact_dag_on_a_diamond_of_chains(executor):
    """Every step starts after all of its parents finished, in a wider random-ish DAG."""
    steps = [{"name": "root", "module": "echo"}]
    for i in range(30):
        deps = ["root"] + [f"s{j}" for j in range(max(0, i - 3), i) if (i * j) % 3 == 0]
        steps.append({"name": f"s{i}", "module": "echo", "depends_on": deps})
    plan = executor.compile(load_data({"name": "dag", "steps": steps}))
    run_id = executor.run(plan, timeout=20)
    recs = executor.store.get_steps(run_id)
    for name, sp in plan.steps.items():
        for parent in sp.parents:
            assert recs[name].started_at >= recs[parent].finished_at


def test_python_api_runs_many_workflows_concurrently(settings):
    doc = {"name": "api", "variables": {"x": 1},
           "steps": [{"name": "a", "module": "bash",
                      "params": {"cmd": "sleep 0.1; echo ${variables.x}"}}]}
    with EmbeddedExecutor(settings=settings) as ex:
        plan = ex.compile(load_data(doc))
        ids = [ex.submit(plan, {"x": i}) for i in range(5)]
        assert {ex.wait(i, timeout=10) for i in ids} == {RunStatus.SUCCEEDED}
        outs = [run_report(ex.store, i)["steps"]["a"]["outputs"]["stdout"] for i in ids]
        assert outs == [f"{i}\n" for i in range(5)]


def test_close_cancels_unfinished_runs(settings, tmp_path):
    pidfile = tmp_path / "pid"
    ex = EmbeddedExecutor(settings=settings)
    run_id = ex.submit(ex.compile(load_data({
        "name": "closing",
        "steps": [{"name": "slow", "module": "bash",
                   "params": {"cmd": f"echo $$ > {pidfile}; exec sleep 30"}}]})))
    pid = int(wait_for_file(pidfile))
    closer = threading.Thread(target=ex.close)
    closer.start()
    closer.join(timeout=15)
    assert not closer.is_alive()
    assert ex.store.get_run(run_id).status is RunStatus.CANCELLED
    assert not alive(pid)


def test_secrets_are_usable_but_never_recorded(tmp_path):
    from chordflow.config import Settings

    settings = Settings(workdir=tmp_path, secrets={"token": "s3cr3t-value"})
    with EmbeddedExecutor(settings=settings) as ex:
        run_id = ex.run(ex.compile(load_data({
            "name": "secret",
            "steps": [{"name": "use", "module": "bash",
                       "params": {"cmd": "echo got ${secrets.token}"}}]})), timeout=10)
        report = run_report(ex.store, run_id)
    assert report["status"] == "succeeded"
    text = str(report) + str(ex.store.get_steps(run_id)["use"].params)
    assert "s3cr3t-value" not in text and "got ***" in text


def test_secrets_never_reach_outputs_errors_or_events(tmp_path):
    from chordflow.config import Settings

    settings = Settings(workdir=tmp_path, secrets={"token": "s3cr3t-value"})
    with EmbeddedExecutor(settings=settings) as ex:
        run_id = ex.run(ex.compile(load_data({
            "name": "secret2",
            "steps": [
                {"name": "a", "module": "echo", "params": {"x": 1}},
                {"name": "bad", "module": "echo", "continue_on_failure": True,
                 "when": "${secrets.token} > 3"},
                {"name": "fails", "module": "bash", "continue_on_failure": True,
                 "params": {"cmd": "echo ${secrets.token} >&2; exit 1"}},
            ],
            "outputs": {"auth": "Bearer ${secrets.token}"}})), timeout=10)
        report = run_report(ex.store, run_id)
        events = ex.store.events(run_id)
        output = ex.store.logs(run_id)
    text = str(report) + str(events) + str(ex.store.get_steps(run_id)) + str(output)
    assert "s3cr3t-value" not in text
    assert [(ln.step, ln.stream, ln.text) for ln in output if ln.stream == "stderr"] == [
        ("fails", "stderr", "***\n")]
    assert report["outputs"] == {"auth": "Bearer ***"}
    assert "cannot compare str '***'" in report["steps"]["bad"]["error"]
    assert report["steps"]["fails"]["error"] == "command exited with code 1: ***"


def test_retry_delay_is_waited_and_frees_the_max_parallel_slot(run_workflow, tmp_path):
    counter = tmp_path / "count"
    report = run_workflow({
        "name": "retry-slot", "max_parallel": 1,
        "steps": [
            {"name": "flaky", "module": "bash", "retries": 1, "retry_delay": 0.6,
             "params": {"cmd": f"echo x >> {counter}; [ $(wc -l < {counter}) -ge 2 ]"}},
            {"name": "other", "module": "bash", "params": {"cmd": f"echo o >> {counter}"}},
        ],
    })
    assert report["status"] == "succeeded"
    assert report["steps"]["flaky"]["attempts"] == 2
    # `other` ran while flaky waited for its retry: it took the freed slot.
    assert counter.read_text().split() in (["x", "o", "x"], ["o", "x", "x"])


def test_retry_waits_its_delay(executor):
    plan = executor.compile(load_data({"name": "delay", "steps": [
        {"name": "s", "module": "bash", "retries": 1, "retry_delay": 0.5,
         "params": {"cmd": "exit 1"}}]}))
    run_id = executor.run(plan, timeout=10)
    events = executor.store.events(run_id)
    retry = next(e for e in events if e.type == "step_retry")
    second = [e for e in events if e.type == "step_started"][1]
    assert retry.data["delay"] == 0.5 and second.ts - retry.ts >= 0.5


@pytest.mark.parametrize("threads", [1, 4])
def test_small_thread_pools_still_finish(run_workflow, threads):
    steps = [{"name": f"s{i}", "module": "echo"} for i in range(20)]
    steps.append({"name": "join", "module": "echo",
                  "depends_on": [f"s{i}" for i in range(20)]})
    report = run_workflow({"name": "pool", "steps": steps}, threads=threads)
    assert report["status"] == "succeeded"


def test_step_output_is_kept_per_attempt(tmp_path):
    """What a step prints and logs is stored with the run (``chordflow logs`` reads it)."""
    with EmbeddedExecutor(threads=2) as ex:
        run_id = ex.run(ex.compile(load_data({"name": "out", "steps": [
            {"name": "say", "module": "bash", "params": {"cmd": "echo hello; echo oops >&2"}},
            {"name": "quiet", "module": "echo", "params": {"x": 1}}]})), timeout=10)
        lines = ex.store.logs(run_id)
        only = ex.store.logs(run_id, "quiet")
    assert [(ln.step, ln.attempt, ln.stream, ln.text) for ln in lines
            if ln.stream != "log"] == [("say", 1, "stdout", "hello\n"),
                                       ("say", 1, "stderr", "oops\n")]
    assert any(ln.stream == "log" and "exit code 0" in ln.text for ln in lines)
    assert only == []
