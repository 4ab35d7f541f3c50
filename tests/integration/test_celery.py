"""Distributed execution through real parts: Redis, a MongoDB-protocol server and
``chordflow worker`` subprocesses. Workers are killed, brokers restarted, messages
duplicated; every run must still finish exactly right."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from chordflow.engine.eventlog import LINGER_SECONDS
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.workflow.loader import load_data

from tests.servers import ROOT, celery_worker, redis_server
from tests.test_embedded import alive, wait_for_file

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def test_worker_killed_mid_step_is_taken_over_by_another(celery_stack, tmp_path):
    queue = f"kill-{uuid.uuid4().hex[:6]}"
    pidfile = tmp_path / "pid"
    service = celery_stack.service()
    # A short visibility timeout, so the killed worker's message comes back in seconds.
    env = celery_stack.env(CHORDFLOW_VISIBILITY_TIMEOUT="8")
    with celery_worker(env, "doomed", "--queues", queue,
                       "--concurrency", "1", log=tmp_path / "doomed.log") as doomed:
        run_id = service.submit(load_data({"name": "kill", "steps": [
            {"name": "slow", "module": "bash", "queue": queue,
             "params": {"cmd": f"echo $$ >> {pidfile}; sleep 2; echo done"}},
            {"name": "after", "module": "echo", "params": {"x": "${steps.slow.outputs.stdout}"}},
        ]}))
        wait_for_file(pidfile, timeout=30)
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool, mid-step
        doomed.wait(10)
    with celery_worker(env, "rescuer", "--queues", queue, "--concurrency", "1",
                       log=tmp_path / "rescuer.log"):
        assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
    report = service.report(run_id)
    slow = report["steps"]["slow"]
    assert slow["attempts"] == 2 and slow["outputs"]["stdout"] == "done\n"
    assert report["steps"]["after"]["outputs"] == {"x": "done\n"}
    events = [e.type for e in service.engine.store.events(run_id)]
    assert "step_taken_over" in events
    rec = service.engine.store.get_steps(run_id)["slow"]
    assert rec.worker.startswith("rescuer@")


def _one_step_worker(celery_stack, tmp_path, name: str, concurrency: int):
    """A worker of its own on its own queue, so the test knows which node runs what."""
    queue = f"{name}-{uuid.uuid4().hex[:6]}"
    worker = celery_worker(celery_stack.env(), name, "--queues", queue, "--pool", "prefork",
                           "--concurrency", str(concurrency), log=tmp_path / f"{name}.log")
    return queue, worker


def test_pool_process_killed_mid_step_runs_again_on_the_same_worker(celery_stack, tmp_path):
    """The OOM killer's case: one pool process dies, its worker lives. Celery gives the
    message back with the same task id and the same node takes it again; the node lists
    that task as active (the new delivery), which must not pass for the dead holder."""
    marker, pidfile = tmp_path / "ran-once", tmp_path / "pool.pid"
    queue, worker = _one_step_worker(celery_stack, tmp_path, "oom", concurrency=1)
    service = celery_stack.service()
    with worker:
        run_id = service.submit(load_data({"name": "oom", "steps": [
            {"name": "big", "module": "bash", "queue": queue, "params": {"cmd": (
                f"if [ -e {marker} ]; then echo again; exit 0; fi; touch {marker}; "
                f"echo $PPID > {pidfile}; sleep 60")}}]}))
        os.kill(int(wait_for_file(pidfile, timeout=30)), signal.SIGKILL)
        assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED, \
            (tmp_path / "oom.log").read_text()[-3000:]
    big = service.report(run_id)["steps"]["big"]
    assert big["attempts"] == 2 and big["outputs"]["stdout"] == "again\n"
    events = [e.type for e in service.engine.store.events(run_id)]
    assert "step_taken_over" in events


def test_duplicate_of_a_running_step_on_the_same_worker_is_dropped(celery_stack, tmp_path):
    """The other side of the rule above: a second delivery of a message whose step
    another pool process of the same node is still running changes nothing."""
    from chordflow.tasks.dispatch import STEP_TASK
    from chordflow.workers.celery_app import make_celery

    count = tmp_path / "count"
    queue, worker = _one_step_worker(celery_stack, tmp_path, "twin", concurrency=2)
    service = celery_stack.service()
    with worker:
        run_id = service.submit(load_data({"name": "twin", "steps": [
            {"name": "slow", "module": "bash", "queue": queue,
             "params": {"cmd": f"echo x >> {count}; sleep 4"}}]}))
        wait_for_file(count, timeout=30)
        rec = service.engine.store.get_steps(run_id)["slow"]
        assert rec.status is StepStatus.RUNNING and rec.task_id
        app = make_celery(celery_stack.settings())
        try:
            app.signature(STEP_TASK, args=[run_id, "slow", None, 1],
                          kwargs={"workflow": "twin"}).apply_async(
                queue=queue, task_id=rec.task_id, ignore_result=True)
            assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
        finally:
            app.close()
        log = (tmp_path / "twin.log").read_text()
    assert log.count(f"[{rec.task_id}] received") == 2, log[-3000:]  # both were delivered
    assert count.read_text() == "x\n"  # and the step ran once
    assert service.report(run_id)["steps"]["slow"]["attempts"] == 1


def test_a_waiter_is_woken_by_the_runs_end_not_by_polling(celery_stack, monkeypatch):
    """The last worker announces the end through the result backend, and a waiter is
    woken by it rather than by its next look at the store."""
    import chordflow.service

    monkeypatch.setattr(chordflow.service, "STORE_CHECK_SECONDS", 600.0)
    service = celery_stack.service()
    wakes: list[bool] = []
    real_wait = service.finished.wait

    def recording_wait(run_id: str, timeout: float) -> bool:
        woken = real_wait(run_id, timeout)
        wakes.append(woken)
        return woken

    monkeypatch.setattr(service.finished, "wait", recording_wait)
    run_id = service.submit(load_data({"name": "wake", "steps": [
        {"name": "a", "module": "bash", "params": {"cmd": "sleep 1"}},
        {"name": "b", "module": "echo", "depends_on": ["a"]},
    ]}))
    assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
    assert wakes == [True]  # one wait, ended by the announcement (not its timeout)
    assert real_wait(run_id, 5)  # kept for later waiters
    assert not real_wait(uuid.uuid4().hex, 0.2)


def test_duplicate_messages_change_nothing(celery_stack):
    from chordflow.tasks.dispatch import STEP_TASK
    from chordflow.workers.celery_app import make_celery

    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "dup", "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "echo", "params": {"y": "${steps.a.outputs.x}"}},
        {"name": "m", "module": "echo", "foreach": [1, 2], "params": {"v": "${item}"}},
    ]}))
    assert service.wait(run_id, timeout=30) is RunStatus.SUCCEEDED
    time.sleep(2 * LINGER_SECONDS + 0.5)  # the other pool process's events are in too
    before = service.engine.store.events(run_id)
    app = make_celery(celery_stack.settings())
    close_client = app.close
    for args in ([run_id, "a", None, 1], [run_id, "b", None, 1], [run_id, "m", 0, 1]):
        for _ in range(2):
            app.signature(STEP_TASK, args=args, kwargs={"workflow": "dup"}).apply_async(
                queue=celery_stack.settings().default_queue, ignore_result=True)
    app.signature("chordflow.gather", args=[run_id, "m"]).apply_async(
        queue=celery_stack.settings().default_queue, ignore_result=True)
    time.sleep(3)
    after = service.engine.store.events(run_id)
    assert len(after) == len(before)
    steps = service.engine.store.get_steps(run_id)
    assert all(s.attempts == 1 for s in steps.values())
    assert service.engine.store.get_run(run_id).status is RunStatus.SUCCEEDED
    close_client()


def test_cancel_stops_running_steps_on_workers(celery_stack, tmp_path):
    pidfile = tmp_path / "pid"
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "cancel", "steps": [
        {"name": "slow", "module": "bash",
         "params": {"cmd": f"echo $$ > {pidfile}; exec sleep 30"}},
        {"name": "next", "module": "echo", "depends_on": ["slow"]}]}))
    pid = int(wait_for_file(pidfile, timeout=30))
    assert service.cancel(run_id, "stop")
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)
    report = service.report(run_id)
    assert report["status"] == "cancelled"
    assert {s["status"] for s in report["steps"].values()} == {"cancelled"}


def test_rerun_on_workers_keeps_what_succeeded(celery_stack, tmp_path):
    flag = tmp_path / "ok"
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "rerun", "steps": [
        {"name": "a", "module": "bash", "params": {"cmd": f"echo a >> {tmp_path / 'a'}"}},
        {"name": "b", "module": "bash", "depends_on": ["a"],
         "params": {"cmd": f"test -f {flag}"}},
        {"name": "c", "module": "echo", "depends_on": ["b"]}]}))
    assert service.wait(run_id, timeout=30) is RunStatus.FAILED
    flag.write_text("")
    done = subprocess.run([CHORDFLOW, "rerun", run_id, "--wait", "--json"],
                          env=celery_stack.env(), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "succeeded" and report["steps"]["b"]["attempts"] == 2
    assert (tmp_path / "a").read_text() == "a\n"


def test_random_dag_of_1000_steps_respects_every_edge(celery_stack):
    rng = random.Random(7)
    steps = []
    for i in range(1000):
        parents = sorted({f"s{rng.randrange(i)}" for _ in range(rng.randint(0, 3))}) if i else []
        steps.append({"name": f"s{i}", "module": "echo", "depends_on": parents,
                      "params": {"i": i}})
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "random", "steps": steps}))
    assert service.wait(run_id, timeout=600) is RunStatus.SUCCEEDED
    recs = service.engine.store.get_steps(run_id)
    for step in steps:
        for parent in step["depends_on"]:
            assert recs[step["name"]].started_at >= recs[parent].finished_at
    assert all(r.status is StepStatus.SUCCEEDED and r.attempts == 1 for r in recs.values())


def test_cli_run_on_celery_prints_the_same_report(celery_stack, tmp_path):
    done = subprocess.run(
        [CHORDFLOW, "run", str(ROOT / "examples" / "sales-report.yaml"), "--executor",
         "celery", "--json", "--var", f"out={tmp_path}"],
        env=celery_stack.env(), capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "succeeded"
    assert report["outputs"]["top_customer"] == "cyd"
    assert set(report["steps"]["per_region"]) == {"status", "attempts", "outputs", "error",
                                                  "started_at", "finished_at"}
    assert len(report["steps"]["per_region"]["outputs"]["items"]) == 3


def test_broker_restart_then_resume(mongo_url, tmp_path):
    from tests.conftest import CeleryStack

    with redis_server() as (broker, port, redis_proc):
        stack = CeleryStack(broker, port, mongo_url, f"b{uuid.uuid4().hex[:8]}",
                            tmp_path / "work", tmp_path)
        service = stack.service()
        close_client = service.close
        # "later" has no worker yet: its message waits in Redis, then the broker dies.
        run_id = service.submit(load_data({"name": "restart", "steps": [
            {"name": "a", "module": "echo", "params": {"x": 1}},
            {"name": "b", "module": "echo", "queue": "later",
             "params": {"y": "${steps.a.outputs.x}"}},
            {"name": "c", "module": "echo", "depends_on": ["b"]}]}))
        with celery_worker(stack.env(), "first", log=tmp_path / "first.log"):
            deadline = time.monotonic() + 30
            while service.engine.store.get_steps(run_id)["b"].status is not StepStatus.QUEUED:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        redis_proc.kill()
        redis_proc.wait(10)
    with redis_server(port) as _:  # the same address, empty
        with celery_worker(stack.env(), "second", "--queues", "chordflow,later",
                           log=tmp_path / "second.log"):
            time.sleep(2)
            assert service.engine.store.get_run(run_id).status is RunStatus.RUNNING
            done = subprocess.run([CHORDFLOW, "resume", run_id], env=stack.env(),
                                  capture_output=True, text=True, timeout=60, cwd=ROOT)
            assert done.returncode == 0, done.stderr
            assert "resent ['b']" in done.stdout
            assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
            assert service.report(run_id)["steps"]["c"]["status"] == "succeeded"
            close_client()


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_rabbitmq_as_broker(celery_stack, tmp_path):
    from tests.conftest import CeleryStack

    queue = f"cf-{uuid.uuid4().hex[:8]}"
    stack = CeleryStack("amqp://guest:guest@127.0.0.1:5672//", celery_stack.redis_port,
                        celery_stack.mongo, celery_stack.db, tmp_path / "work", tmp_path)
    env = stack.env(CHORDFLOW_DEFAULT_QUEUE=queue,
                    CHORDFLOW_RESULT_BACKEND=celery_stack.broker)
    settings = stack.settings().model_copy(update={"default_queue": queue,
                                                   "result_backend": celery_stack.broker})
    from chordflow.service import RunService

    service = RunService.celery(settings)
    close_client = service.close
    with celery_worker(env, "rabbit", log=tmp_path / "rabbit.log"):
        run_id = service.submit(load_data({"name": "amqp", "steps": [
            {"name": "a", "module": "echo", "params": {"xs": [1, 2, 3]}},
            {"name": "each", "module": "echo", "foreach": "${steps.a.outputs.xs}",
             "params": {"v": "${item}"}, "priority": 5},
            {"name": "join", "module": "echo", "depends_on": ["each", "a"]}]}))
        assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
    report = service.report(run_id)
    assert report["steps"]["each"]["outputs"]["items"] == [{"v": 1}, {"v": 2}, {"v": 3}]
    close_client()



def test_priority_orders_waiting_steps_and_tasks_carry_step_names(celery_stack, tmp_path):
    """Steps waiting for a busy worker start highest priority first (unset: last), and
    the worker shows each task as ``<workflow>.<step>`` (Celery's shadow name)."""
    service = celery_stack.service()
    started = tmp_path / "started"
    log = tmp_path / "prio.log"
    with celery_worker(celery_stack.env(), "prio", "--queues", "prio", "--concurrency", "1",
                       log=log):
        blocker = service.submit(load_data({"name": "block", "steps": [
            {"name": "hold", "module": "bash", "queue": "prio",
             "params": {"cmd": f"echo go > {started}; sleep 2"}}]}))
        wait_for_file(started, timeout=30)
        steps = [{"name": "unset", "module": "echo", "queue": "prio"}]
        steps += [{"name": f"p{p}", "module": "echo", "queue": "prio", "priority": p}
                  for p in (1, 9, 5)]
        run_id = service.submit(load_data({"name": "prio", "steps": steps}))
        assert service.wait(blocker, timeout=30) is RunStatus.SUCCEEDED
        assert service.wait(run_id, timeout=30) is RunStatus.SUCCEEDED
        records = service.engine.store.get_steps(run_id)
        order = sorted(records, key=lambda name: records[name].started_at or 0)
        assert order == ["p9", "p5", "p1", "unset"]
        text = log.read_text()
        assert f"Task prio.p9[{run_id}:p9:1] received" in text
        assert f"Task block.hold[{blocker}:hold:1] received" in text


def test_periodic_reconciler_resends_lost_messages(mongo_url, tmp_path):
    """``chordflow worker --beat`` runs the reconciler, which finds a run whose queued
    message the broker lost and sends it again, without anyone asking."""
    import redis

    from tests.conftest import CeleryStack

    with redis_server() as (broker, port, _):
        stack = CeleryStack(broker, port, mongo_url, f"r{uuid.uuid4().hex[:8]}",
                            tmp_path / "work", tmp_path)
        service = stack.service()
        run_id = service.submit(load_data({"name": "lost", "steps": [
            {"name": "a", "module": "echo", "queue": "later", "params": {"x": 1}},
            {"name": "b", "module": "echo", "params": {"y": "${steps.a.outputs.x}"}}]}))
        assert service.engine.store.get_steps(run_id)["a"].status is StepStatus.QUEUED
        client = redis.Redis.from_url(broker)
        client.flushall()  # the broker loses every message
        client.close()
        env = stack.env(CHORDFLOW_RECONCILE_INTERVAL="1", CHORDFLOW_RECONCILE_GRACE="1")
        with celery_worker(env, "beat", "--queues", "chordflow,later", "--beat",
                           log=tmp_path / "beat.log"):
            assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED
        events = service.engine.store.events(run_id)
        resumed = [e for e in events if e.type == "run_resumed"]
        assert resumed and resumed[0].data["resent"] == ["a"]
        assert service.report(run_id)["steps"]["b"]["outputs"] == {"y": 1}
        service.close()
