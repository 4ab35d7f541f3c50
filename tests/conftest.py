"""Shared fixtures: executors that run workflows, and small real servers.

``run_workflow`` is the seam the scenario tests use: it takes a workflow document and
returns the run report. The embedded executor is the only backend in this issue; the
Celery backend plugs in here as a second parameter and the scenarios run on both.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.mongo_store import MongoStore
from chordflow.engine.plan import compile_plan
from chordflow.engine.report import run_report
from chordflow.modules.registry import Registry
from chordflow.workflow.loader import load_data
from chordflow.workflow.models import Workflow

from tests.servers import (
    TEST_SECRETS,
    celery_worker,
    free_port,
    mongo_server,
    redis_server,
    worker_env,
)

Runner = Callable[..., dict[str, Any]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Confined like a worker (local runs are not by default), with the test's own
    directory as the admin's root: a test's files live there, and the scratch
    directories inside it are still refused to every other run."""
    return Settings(workdir=tmp_path / "work", file_roots=[tmp_path], embedded_confined=True)


@pytest.fixture
def executor(settings: Settings) -> Iterator[EmbeddedExecutor]:
    with EmbeddedExecutor(settings=settings, threads=16) as ex:
        yield ex


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """A MongoDB-protocol server for the session (``MONGO_URL`` or nx-27017)."""
    with mongo_server() as url:
        yield url


@dataclass
class CeleryStack:
    """Redis, a MongoDB-protocol server and two workers (prefork and threads)."""

    broker: str
    redis_port: int
    mongo: str
    db: str
    workdir: Path
    logs: Path
    #: The workers' CHORDFLOW_FILE_ROOTS: where the tests' files (their tmp_path) are.
    file_roots: Path | None = None
    _service: Any = None

    def env(self, **extra: str) -> dict[str, str]:
        roots = {"CHORDFLOW_FILE_ROOTS": str(self.file_roots)} if self.file_roots else {}
        return worker_env(self.broker, self.mongo, self.db, self.workdir,
                          **{**roots, **extra})

    def settings(self) -> Settings:
        # The workers' secrets: a submitter checks that those a workflow names exist.
        return Settings(broker_url=self.broker, mongo_url=self.mongo, mongo_db=self.db,
                        workdir=self.workdir, visibility_timeout=30,
                        secrets=dict(TEST_SECRETS))

    def service(self) -> Any:
        """One client for the stack (closed with it)."""
        from chordflow.service import RunService

        if self._service is None:
            self._service = RunService.celery(self.settings())
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None


@contextmanager
def celery_stack_on(mongo_url: str, base: Path, file_roots: Path | None = None,
                    **worker_env: str) -> Iterator[CeleryStack]:
    """A Redis and two workers (prefork and threads, four slots each) on ``mongo_url``;
    ``worker_env`` adds to the workers' environment."""
    with redis_server() as (broker, port, _):
        stack = CeleryStack(broker, port, mongo_url, f"c{uuid.uuid4().hex[:10]}",
                            base / "work", base, file_roots)
        env = stack.env(**worker_env)
        with celery_worker(env, "w1", "--concurrency", "4", log=base / "w1.log"), \
                celery_worker(env, "w2", "--pool", "threads", "--concurrency", "4",
                              log=base / "w2.log"):
            try:
                yield stack
            finally:
                stack.close()


@pytest.fixture(scope="session")
def celery_stack(mongo_url: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[CeleryStack]:
    with celery_stack_on(mongo_url, tmp_path_factory.mktemp("celery"),
                         tmp_path_factory.getbasetemp()) as stack:
        yield stack


@pytest.fixture(params=["embedded", "embedded-mongo", "celery"])
def run_workflow(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Runner]:
    """Run a workflow document to the end on each executor and store; return the report.

    ``embedded`` keeps records in memory; ``embedded-mongo`` runs the same engine on the
    MongoDB store, so every scenario also exercises the store the workers use.
    """
    executors: list[EmbeddedExecutor] = []
    store_factory = None
    if request.param == "celery":
        service = request.getfixturevalue("celery_stack").service()

        def run_celery(doc: dict[str, Any] | Workflow,
                       variables: dict[str, Any] | None = None, timeout: float = 60,
                       registry: Registry | None = None, **_: Any) -> dict[str, Any]:
            workflow = load_data(doc)
            # The workers load the same extra modules (CHORDFLOW_MODULES_PATH).
            plan = compile_plan(workflow, registry) if registry else workflow
            run_id = service.submit(plan, variables)
            status = service.wait(run_id, timeout)
            assert status.finished, f"run did not finish within {timeout}s"
            return service.report(run_id)

        yield run_celery
        return
    if request.param == "embedded-mongo":
        url = request.getfixturevalue("mongo_url")
        store_factory = lambda: MongoStore(url, f"t{uuid.uuid4().hex[:12]}")  # noqa: E731

    def run(doc: dict[str, Any] | Workflow, variables: dict[str, Any] | None = None,
            timeout: float = 60, threads: int = 16,
            registry: Registry | None = None) -> dict[str, Any]:
        store = store_factory() if store_factory else None
        ex = EmbeddedExecutor(registry, settings=settings, threads=threads, store=store)
        executors.append(ex)
        plan = ex.compile(load_data(doc))
        run_id = ex.run(plan, variables, timeout=timeout)
        report = run_report(ex.store, run_id, list(plan.order))
        assert report["status"] in ("succeeded", "failed", "cancelled"), (
            f"run did not finish within {timeout}s: {report}"
        )
        return report

    yield run
    for ex in executors:
        ex.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    """A tiny API: /items (JSON), /echo (echoes the request), /status/N, /slow."""

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        path, _, query = self.path.partition("?")
        if path == "/items":
            self._send(200, {"items": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]})
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), {"error": "as requested"})
        elif path == "/trickle":  # one byte every 0.3 s: each read is quick, the whole slow
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "20")
            self.end_headers()
            try:
                for _ in range(20):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:
                pass  # the client gave up, as it should
        elif path == "/text":
            self._send(200, "plain words", "text/plain")
        else:
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            self._send(200, {"method": self.command, "path": path, "query": query,
                             "headers": dict(self.headers), "body": body})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


@pytest.fixture(scope="session")
def http_server() -> Iterator[str]:
    """A real HTTP server on a free loopback port; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
