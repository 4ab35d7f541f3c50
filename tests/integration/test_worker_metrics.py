"""Worker metrics through real parts: a prefork worker with two pool processes serves
Prometheus metrics summed over its processes, exactly."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chordflow.config import Settings
from chordflow.engine.state import RunStatus
from chordflow.workflow.loader import load_data
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import celery_worker, free_port, mongo_server, redis_server, worker_env

SCRAPE_DEADLINE = 20.0


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample on /metrics: name -> {sorted labels: value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], name: str,
          **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


@pytest.fixture
def metrics_worker(tmp_path: Path) -> Iterator[tuple[Settings, int, Path]]:
    with redis_server() as (broker, _, _), mongo_server() as mongo:
        db = f"m{uuid.uuid4().hex[:10]}"
        workdir = tmp_path / "work"
        queue = f"metrics-{uuid.uuid4().hex[:6]}"
        env = worker_env(broker, mongo, db, workdir, CHORDFLOW_DEFAULT_QUEUE=queue,
                         CHORDFLOW_WORKER_METRICS_DIR=str(tmp_path / "prom"))
        port = free_port()
        log = tmp_path / "worker.log"
        settings = Settings(broker_url=broker, mongo_url=mongo, mongo_db=db, workdir=workdir,
                            visibility_timeout=30, default_queue=queue)
        with celery_worker(env, "mw", "--pool", "prefork", "--concurrency", "2",
                           "--metrics-port", str(port), log=log):
            yield settings, port, log


def test_prefork_worker_counts_every_attempt_once(metrics_worker):
    from chordflow.service import RunService

    settings, port, log = metrics_worker
    service = RunService.celery(settings)
    try:
        run_id = service.submit(load_data({"name": "metrics", "steps": [
            *({"name": f"e{i}", "module": "echo", "params": {"i": i}} for i in range(4)),
            {"name": "bad", "module": "bash", "params": {"cmd": "exit 3"}},
            {"name": "flaky", "module": "bash", "retries": 1, "retry_delay": 0,
             "params": {"cmd": "exit 4"}},
        ]}))
        assert service.wait(run_id, timeout=30) is RunStatus.FAILED
        steps = service.report(run_id)["steps"]
        assert steps["flaky"]["attempts"] == 2
    finally:
        service.close()

    expected = {("echo", "succeeded"): 4, ("bash", "failed"): 2, ("bash", "retried"): 1}
    deadline = time.monotonic() + SCRAPE_DEADLINE
    while True:  # the last task's postrun may come just after the run finished
        samples = scrape(port)
        counts = {(dict(k)["module"], dict(k)["status"]): v
                  for k, v in samples.get("chordflow_worker_steps_total", {}).items()}
        running = sum(samples.get("chordflow_worker_steps_running", {}).values())
        if (counts == expected and running == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts == expected, (counts, log.read_text()[-3000:])
    assert running == 0
    assert value(samples, "chordflow_worker_step_failures_total", module="bash") == 3
    assert value(samples, "chordflow_worker_step_failures_total", module="echo") == 0
    assert value(samples, "chordflow_worker_step_duration_seconds_count", module="echo") == 4
    assert value(samples, "chordflow_worker_step_duration_seconds_count", module="bash") == 3
    assert value(samples, "chordflow_worker_step_duration_seconds_sum", module="echo") > 0

    # Both pool processes ran steps (six ready at once, two processes): the counts above
    # are sums over the files of more than one process.
    pids = {f.stem.rsplit("_", 1)[1] for f in (log.parent / "prom").glob("counter_*.db")}
    assert len(pids) >= 2, pids


def test_a_pool_process_killed_mid_step_stops_counting_as_running(metrics_worker, tmp_path):
    """SIGKILL skips the process's own goodbye (worker_process_shutdown): its live
    gauge must still stop counting, or steps_running reads 1 for as long as the worker
    lives."""
    from chordflow.service import RunService

    settings, port, log = metrics_worker
    marker, pidfile = tmp_path / "ran-once", tmp_path / "pool.pid"
    # The first attempt records its pool process ($PPID: the shell's parent) and
    # hangs; the attempt after the kill finds the marker and succeeds at once.
    cmd = (f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; "
           f"echo $PPID > {pidfile}; sleep 60")
    service = RunService.celery(settings)
    try:
        run_id = service.submit(load_data({"name": "killed", "steps": [
            {"name": "hang", "module": "bash", "params": {"cmd": cmd}}]}))
        deadline = time.monotonic() + SCRAPE_DEADLINE
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        running = scrape(port)["chordflow_worker_steps_running"]
        assert sum(running.values()) == 1, running
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
        assert service.wait(run_id, timeout=60) is RunStatus.SUCCEEDED, log.read_text()[-3000:]
        assert service.report(run_id)["steps"]["hang"]["attempts"] == 2
    finally:
        service.close()

    deadline = time.monotonic() + SCRAPE_DEADLINE
    while True:  # the second attempt's postrun may come just after the run finished
        running = scrape(port).get("chordflow_worker_steps_running", {})
        if sum(running.values()) == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sum(running.values()) == 0, running
