"""Recovery isolates runs: a run that cannot be recovered is skipped (logged, counted),
every other run is still recovered in the same pass; a step whose module the worker
lacks fails at once, naming both; a queue nobody serves is not flooded."""

from __future__ import annotations

import json
import textwrap
import uuid

import httpx
import pytest
import redis
from chordflow.api.metrics import render_metrics
from chordflow.engine.plan import compile_plan
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.modules.registry import load_registry
from chordflow.service import RunService
from chordflow.workflow.loader import load_data

from tests.api.conftest import start_api
from tests.faults.stack import wait_until
from tests.faults.workload import check
from tests.servers import stop_group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def lossy_service(fresh) -> RunService:
    """A client whose first messages of each run never reach the broker."""
    svc = RunService.celery(fresh.settings())
    svc.engine.dispatcher.dispatch_many = lambda messages: None  # type: ignore[method-assign]
    return svc


def test_one_broken_run_does_not_stop_the_others_being_recovered(
        fresh, service, workload, tmp_path):
    fresh.start_worker("w1")
    # A run whose step needs a module only the submitter has.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extra.py").write_text(textwrap.dedent('''
        from chordflow.modules.registry import StepModule
        module = StepModule("extra", "only the submitter has it")

        @module.method
        def run(ctx):
            return {}
    '''))
    plan = compile_plan(load_data({"name": "needs-extra", "steps": [
        {"name": "x", "module": "extra"},
        {"name": "after", "module": "echo", "depends_on": ["x"]}]}), load_registry([extra]))
    missing = service.submit(plan)
    # A run whose records are broken (its workflow's document is gone): resuming it raises.
    broken = service.submit(load_data({"name": "broken", "steps": [
        {"name": "q", "module": "echo", "queue": "nobody-serves-this"}]}))
    service.engine.store.workflows.delete_one({"_id": service.engine.store.get_run(broken).digest})
    # Runs whose first messages were lost.
    lossy = lossy_service(fresh)
    try:
        workload.submit(lossy)
    finally:
        lossy.close()

    # The step needing the module fails at once, naming the module and the worker.
    assert service.wait(missing, timeout=60) is RunStatus.FAILED
    x = service.engine.store.get_steps(missing)["x"]
    assert x.status is StepStatus.FAILED and x.attempts == 1
    assert "module 'extra' is not installed on worker w1@" in x.error

    before = service.engine.store.reconcile_state().get("errors_total", 0)
    done = fresh.chordflow("reconcile", CHORDFLOW_RECONCILE_GRACE="0")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert "error" in report[broken] and "missing" in report[broken]["error"]
    roots = {s["name"] for s in workload.document()["steps"] if not s["depends_on"]}
    for run_id in workload.run_ids:  # recovered by the very same pass
        assert set(report[run_id]["resent"]) == roots
    assert service.engine.store.reconcile_state()["errors_total"] == before + 1
    text = render_metrics(service)[0].decode()  # what the API's /metrics serves
    assert f"chordflow_reconcile_errors_total {before + 1:.1f}" in text
    workload.wait(service, timeout=120)
    check(workload, service)


def test_a_step_on_a_queue_nobody_serves_is_resent_with_growing_delays(
        fresh, service, tmp_path):
    fresh.start_worker("w1")
    queue = f"nobody-{uuid.uuid4().hex[:6]}"
    run_id = service.submit(load_data({"name": "unserved", "steps": [
        {"name": "q", "module": "echo", "queue": queue}]}))
    broker = redis.Redis.from_url(fresh.redis.url)

    def waiting() -> int:
        return sum(int(broker.llen(key)) for key in broker.keys(f"{queue}*"))

    assert waiting() == 1
    passes = 5
    wait_until(lambda: False, timeout=2.1)  # past the grace
    for _ in range(passes):
        assert fresh.chordflow("reconcile", CHORDFLOW_RECONCILE_GRACE="2").returncode == 0
    rec = service.engine.store.get_steps(run_id)["q"]
    # Resent 2 s after it was queued, then 4 s later, 8 s after that...: not every pass.
    assert 1 <= rec.resends < passes and waiting() == 1 + rec.resends
    assert service.engine.store.reconcile_state()["unserved_queues"] == {queue: 1}
    text = render_metrics(service)[0].decode()  # what the API's /metrics serves
    assert f'chordflow_queue_unserved{{queue="{queue}"}} 1.0' in text
    assert "chordflow_reconcile_errors_total" in text
    proc, url = start_api(fresh.env(), tmp_path / "api.log")
    try:
        ready = httpx.get(f"{url}/api/v1/ready", timeout=30)
    finally:
        stop_group(proc)
    assert ready.status_code == 200 and ready.json()["unserved_queues"] == {queue: 1}
    service.cancel(run_id)
