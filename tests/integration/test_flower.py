"""``chordflow flower`` through real parts: Redis, a MongoDB-protocol server, a worker
and Flower, whose HTTP API must show the worker and each step by its workflow name."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from chordflow.config import Settings
from chordflow.engine.state import RunStatus
from chordflow.workflow.loader import load_data

from tests.servers import (
    ROOT,
    START_TIMEOUT,
    celery_worker,
    free_port,
    mongo_server,
    redis_server,
    stop_group,
    wait_for_port,
    worker_env,
)

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
AUTH = ("ops", "flower-test-pw")
EVENTS_DEADLINE = 30.0


@contextmanager
def flower_server(env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """``chordflow flower`` in its own process group; yields its base URL."""
    with log.open("wb") as out:
        proc = subprocess.Popen([CHORDFLOW, "flower", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        wait_for_port(port, proc, timeout=START_TIMEOUT, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


def poll(url: str, found: Any, what: str, log: Path) -> Any:
    """GET ``url`` until ``found(json)`` returns something, within a deadline."""
    deadline = time.monotonic() + EVENTS_DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        response = httpx.get(url, auth=AUTH, timeout=5)
        if response.status_code == 200:
            last = response.json()
            result = found(last)
            if result:
                return result
        else:
            last = f"{response.status_code}: {response.text[:300]}"
        time.sleep(0.5)
    pytest.fail(f"flower never showed {what}: {last!r}\n{log.read_text()[-2000:]}")


def test_flower_shows_the_worker_and_the_steps_by_name(tmp_path):
    from chordflow.service import RunService

    with redis_server() as (broker, _, _), mongo_server() as mongo:
        db = f"f{uuid.uuid4().hex[:10]}"
        queue = f"flower-{uuid.uuid4().hex[:6]}"
        env = worker_env(broker, mongo, db, tmp_path / "work", CHORDFLOW_DEFAULT_QUEUE=queue,
                         FLOWER_BASIC_AUTH=":".join(AUTH))
        settings = Settings(broker_url=broker, mongo_url=mongo, mongo_db=db,
                            workdir=tmp_path / "work", visibility_timeout=30,
                            default_queue=queue)
        flower_log = tmp_path / "flower.log"
        with celery_worker(env, "fw", "--concurrency", "1", log=tmp_path / "fw.log"), \
                flower_server(env, free_port(), flower_log) as url:
            assert httpx.get(f"{url}/api/workers", timeout=5).status_code == 401
            # Flower sees a worker by its heartbeats and task events (workers run -E).
            worker = poll(f"{url}/api/workers?refresh=1",
                          lambda ws: next((n for n in ws if n.startswith("fw@")), None),
                          "the worker", flower_log)

            service = RunService.celery(settings)
            try:
                run_id = service.submit(load_data({"name": "flowertest", "steps": [
                    {"name": "hello", "module": "echo", "params": {"greeting": "hi"}}]}))
                assert service.wait(run_id, timeout=30) is RunStatus.SUCCEEDED
            finally:
                service.close()

            def hello(tasks: dict[str, Any]) -> Any:
                return next((t for t in tasks.values() if t.get("name") == "flowertest.hello"
                             and t.get("state") == "SUCCESS"), None)

            task = poll(f"{url}/api/tasks", hello, "flowertest.hello", flower_log)
            assert task["worker"] == worker
            assert task["uuid"].startswith(f"{run_id}:hello:")


def test_flower_shows_failed_steps_as_failed_and_retries_as_retries_not_the_ticks(tmp_path):
    from chordflow.service import RunService

    with redis_server() as (broker, _, _), mongo_server() as mongo:
        db = f"f{uuid.uuid4().hex[:10]}"
        queue = f"flower-{uuid.uuid4().hex[:6]}"
        env = worker_env(broker, mongo, db, tmp_path / "work", CHORDFLOW_DEFAULT_QUEUE=queue,
                         FLOWER_BASIC_AUTH=":".join(AUTH),
                         CHORDFLOW_SCHEDULE_TICK_SECONDS="0.5",
                         CHORDFLOW_RECONCILE_INTERVAL="0.5")
        settings = Settings(broker_url=broker, mongo_url=mongo, mongo_db=db,
                            workdir=tmp_path / "work", visibility_timeout=30,
                            default_queue=queue)
        flower_log, worker_log = tmp_path / "flower.log", tmp_path / "fw.log"
        with celery_worker(env, "fw", "--concurrency", "1", "--beat", log=worker_log), \
                flower_server(env, free_port(), flower_log) as url:
            poll(f"{url}/api/workers?refresh=1",
                 lambda ws: next((n for n in ws if n.startswith("fw@")), None),
                 "the worker", flower_log)
            service = RunService.celery(settings)
            try:
                run_id = service.submit(load_data({"name": "truth", "steps": [
                    {"name": "broken", "module": "bash", "retries": 1, "retry_delay": 3,
                     "params": {"cmd": "echo nope >&2; exit 3"}},
                    {"name": "fine", "module": "echo", "params": {"x": 1}}]}))

                def state_of(name: str, state: str) -> Any:
                    return lambda tasks: next(
                        (t for t in tasks.values()
                         if t.get("name") == name and t.get("state") == state), None)

                assert service.wait(run_id, timeout=30) is RunStatus.FAILED
            finally:
                service.close()
            failed = poll(f"{url}/api/tasks", state_of("truth.broken", "FAILURE"),
                          "truth.broken failed", flower_log)
            # One task (Celery's retry keeps the id): a retry, then a failure, with the
            # step's error.
            assert failed["retries"] == 1 and failed["retried"] is not None
            assert failed["uuid"] == f"{run_id}:broken:1"
            assert "command exited with code 3" in (failed.get("exception") or "")
            poll(f"{url}/api/tasks", state_of("truth.fine", "SUCCESS"), "truth.fine",
                 flower_log)
            # The beat ticked many times meanwhile; Flower lists none of its ticks.
            deadline = time.monotonic() + EVENTS_DEADLINE
            while worker_log.read_text().count("chordflow.schedules.tick") < 3:
                assert time.monotonic() < deadline, worker_log.read_text()[-2000:]
                time.sleep(0.2)
            tasks = httpx.get(f"{url}/api/tasks", auth=AUTH, timeout=5).json()
            names = {t.get("name") for t in tasks.values()}
            assert names == {"truth.broken", "truth.fine"}, names
