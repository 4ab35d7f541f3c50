"""The compose file's api and worker commands, run as plain processes (no Docker here)
with the compose file's environment, pointed at a throwaway Redis and MongoDB-protocol
server: the API answers health and ready, a key made as the compose header says works,
and a run submitted over HTTP succeeds on the worker started from the compose command.
The compose healthcheck commands are run against them too."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis
from chordflow.config import Settings

from tests.deploy.files import API_PORT, argv, compose, compose_env
from tests.servers import (
    ROOT,
    free_port,
    mongo_server,
    redis_server,
    stop_group,
    wait_for_port,
    worker_env,
)

BIN = Path(sys.executable).parent
CHORDFLOW = str(BIN / "chordflow")
TIMEOUT = 30.0


def local(args: list[str]) -> list[str]:
    """A container's command with this virtualenv's executables."""
    head = args[0]
    if head in {"chordflow", "celery", "python"}:
        return [str(BIN / head) if head != "python" else sys.executable, *args[1:]]
    return args


def replace_option(args: list[str], option: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(option) + 1] = value
    return args


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc)


def wait_for_log(log: Path, text: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not seen: {log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    base = tmp_path_factory.mktemp("compose")
    services = compose()["services"]
    with ExitStack() as stack:
        broker, _, _ = stack.enter_context(redis_server())
        mongo = stack.enter_context(mongo_server())
        test_env = worker_env(broker, mongo, f"deploy_{uuid.uuid4().hex[:8]}", base / "work")

        def env_of(service: str, **overrides: str) -> dict[str, str]:
            # The compose environment, with the addresses of this machine's servers.
            return {**test_env, **compose_env(services[service]),
                    "CHORDFLOW_BROKER_URL": broker, "CHORDFLOW_MONGO_URL": mongo,
                    "CHORDFLOW_MONGO_DB": test_env["CHORDFLOW_MONGO_DB"],
                    "CHORDFLOW_WORKDIR": str(base / "work" / service),
                    "CHORDFLOW_SECRETS_DIR": str(base / "secrets"), **overrides}

        port = free_port()
        api_env = env_of("api", CHORDFLOW_API_PORT=str(port), CHORDFLOW_API_WORKERS="1")
        api_args = argv(services["api"]["command"])
        api_args = replace_option(replace_option(api_args, "--port", str(port)),
                                  "--host", "127.0.0.1")
        api_log = base / "api.log"
        api = stack.enter_context(process(local(api_args), api_env, api_log))
        wait_for_port(port, api, timeout=TIMEOUT, log=api_log)
        yield {"url": f"http://127.0.0.1:{port}", "port": port, "env_of": env_of,
               "api_env": api_env, "broker": broker, "base": base, "api_log": api_log}


def test_api_health_and_ready(stack: dict[str, object]) -> None:
    url = stack["url"]
    assert httpx.get(f"{url}/api/v1/health", timeout=10).json() == {"status": "ok"}
    ready = httpx.get(f"{url}/api/v1/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"mongodb": "ok", "broker": "ok"}
    # Auth is on, as in production: the API refuses a request without a key.
    assert httpx.get(f"{url}/api/v1/runs", timeout=10).status_code == 401
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 200


def test_compose_healthcheck_command_passes(stack: dict[str, object]) -> None:
    test = argv(compose()["services"]["api"]["healthcheck"]["test"])
    assert test[0] == "CMD"
    args = [a.replace(f":{API_PORT}/", f":{stack['port']}/") for a in test[1:]]
    done = subprocess.run(local(args), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr


def test_a_run_succeeds_on_the_compose_worker(stack: dict[str, object]) -> None:
    env_of = stack["env_of"]
    base = stack["base"]
    assert callable(env_of) and isinstance(base, Path)
    made = subprocess.run([CHORDFLOW, "keys", "create", "--name", "t", "--role", "admin",
                           "--json"], env=stack["api_env"], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=ROOT)
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    client = httpx.Client(base_url=str(stack["url"]), timeout=10,
                          headers={"Authorization": f"Bearer {key}"})
    body = {"workflow": {"name": "d", "steps": [{"name": "a", "module": "echo",
                                                  "params": {"x": 1}}]}}
    with client:
        created = client.post("/api/v1/runs", json=body)
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]

        # No worker yet: the step waits in Redis, in a list the KEDA triggers watch.
        queue = compose_env(compose()["services"]["worker"])["CHORDFLOW_DEFAULT_QUEUE"]
        watched = {queue} | {f"{queue}:{i}" for i in range(1, 10)}
        r = redis.Redis.from_url(str(stack["broker"]))
        deadline = time.monotonic() + TIMEOUT
        waiting: dict[str, int] = {}
        while not waiting and time.monotonic() < deadline:
            waiting = {k.decode(): int(r.llen(k)) for k in r.keys(f"{queue}*")
                       if r.type(k) == b"list" and r.llen(k)}
            time.sleep(0.1)
        r.close()
        assert waiting and set(waiting) <= watched, waiting
        print("steps waiting in", waiting)

        worker_args = local(argv(compose()["services"]["worker"]["command"]))
        worker_args = replace_option(worker_args, "--concurrency", "1")
        log = base / "worker.log"
        metrics_port = free_port()
        env = env_of("worker", CHORDFLOW_WORKER_METRICS_PORT=str(metrics_port))
        with process(worker_args, env, log) as worker:
            wait_for_log(log, " ready.", worker)
            deadline = time.monotonic() + TIMEOUT
            run = client.get(f"/api/v1/runs/{run_id}").json()
            while run["status"] not in {"succeeded", "failed", "cancelled"}:
                assert time.monotonic() < deadline, run
                time.sleep(0.2)
                run = client.get(f"/api/v1/runs/{run_id}").json()
            assert run["status"] == "succeeded", run

            if "worker_metrics_port" in Settings.model_fields:
                # Prometheus's worker target: the port the compose env sets is served.
                scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
                assert scraped.status_code == 200

            # The worker's compose healthcheck (a shell command) answers for it.
            test = argv(compose()["services"]["worker"]["healthcheck"]["test"])
            assert test[0] == "CMD-SHELL"
            check_env = {**env, "HOSTNAME": socket.gethostname(),
                         "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
            done = subprocess.run(["sh", "-c", test[1].replace("$$", "$")], env=check_env,
                                  capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT)
            assert done.returncode == 0, done.stdout + done.stderr
