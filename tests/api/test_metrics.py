"""``GET /metrics``: the collector on records written straight into a store, then the
real API server on real workers, Redis and the MongoDB-protocol server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from chordflow.api.metrics import BUCKETS, OVERLAP_SECONDS, Histogram, MetricsCollector
from chordflow.engine.mongo_store import MongoStore
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import Api
from tests.api.test_runs import wait_run

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition text, by (name, labels)."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when absent (a counter nothing has counted yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(collector: MetricsCollector) -> Samples:
    return parse(generate_latest(collector.registry).decode())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- the collector on a store ----------------------------------------------------------------


class Clock:
    def __init__(self, start: float):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(mongo_url: str) -> Iterator[MongoStore]:
    """A store whose ``runs`` and ``steps`` are collections of this test's own.

    Not a database of its own: nx-27017 (the tests' MongoDB-protocol server) ignores
    database names, so every database shares the session's collections, and dropping
    any database would drop the API server's keys and runs too.
    """
    store = MongoStore(mongo_url, "chordflow")
    tag = uuid.uuid4().hex[:12]
    store.runs = store.db[f"metrics_test_runs_{tag}"]
    store.steps = store.db[f"metrics_test_steps_{tag}"]
    try:
        yield store
    finally:
        store.runs.drop()
        store.steps.drop()
        store.close()


T0 = 1_700_000_000.0


def run_doc(run_id: str, status: str, created: float, started: float | None = None,
            finished: float | None = None) -> dict[str, Any]:
    return {"_id": run_id, "workflow": "wf", "digest": f"d-{run_id}", "status": status,
            "created_at": created, "started_at": started, "finished_at": finished}


def step_doc(run_id: str, name: str, module: str, status: str, queued: float | None = None,
             started: float | None = None, finished: float | None = None) -> dict[str, Any]:
    return {"_id": f"{run_id}/{name}", "run_id": run_id, "name": name, "module": module,
            "status": status, "queued_at": queued, "started_at": started,
            "finished_at": finished, "attempts": 1 if started else 0}


def test_histogram_buckets_are_upper_bounds() -> None:
    hist = Histogram()
    for seconds in (0.1, 0.11, 3600, 3601, -2):  # -2: clocks apart, counts as 0
        hist.observe(seconds)
    buckets = dict(hist.buckets())
    assert list(buckets) == [*(str(b) for b in BUCKETS), "+Inf"]
    assert buckets["0.1"] == 2 and buckets["0.25"] == 3 and buckets["1800.0"] == 3
    assert buckets["3600.0"] == 4 and buckets["+Inf"] == 5
    assert hist.total == pytest.approx(0.1 + 0.11 + 3600 + 3601)


def test_counts_each_record_once_and_reads_only_what_is_new(store: MongoStore) -> None:
    clock = Clock(T0 + 100)
    collector = MetricsCollector(store, clock=clock)
    store.runs.insert_many([
        run_doc("r1", "succeeded", T0, T0 + 1, T0 + 4),
        run_doc("r2", "failed", T0 + 2, T0 + 3, T0 + 10),
        run_doc("r3", "cancelled", T0 + 5, None, T0 + 6),  # cancelled before it started
        run_doc("r4", "running", T0 + 50, T0 + 51),
        run_doc("r5", "pending", T0 + 60),
    ])
    store.steps.insert_many([
        step_doc("r1", "a", "echo", "succeeded", T0 + 1, T0 + 1.5, T0 + 1.55),
        step_doc("r1", "b", "bash", "succeeded", T0 + 2, T0 + 2, T0 + 4),
        step_doc("r2", "a", "bash", "failed", T0 + 3, T0 + 3, T0 + 10),
        step_doc("r2", "b", "echo", "upstream_failed", None, None, T0 + 10),
        step_doc("r3", "a", "echo", "cancelled", T0 + 5, None, T0 + 6),
        step_doc("r4", "a", "echo", "running", T0 + 51, T0 + 52),
        step_doc("r5", "a", "echo", "pending"),
    ])
    first = scrape(collector)
    assert value(first, "chordflow_metrics_up", source="mongodb") == 1
    assert value(first, "workflows_submitted_total") == 5
    assert value(first, "workflows_completed_total", status="succeeded") == 1
    assert value(first, "workflows_completed_total", status="failed") == 1
    assert value(first, "workflows_completed_total", status="cancelled") == 1
    assert value(first, "active_workflows_count") == 2
    assert value(first, "workflow_execution_duration_seconds_count") == 2  # not r3
    assert value(first, "workflow_execution_duration_seconds_sum") == pytest.approx(3 + 7)
    assert value(first, "workflow_execution_duration_seconds_bucket", le="5.0") == 1
    assert value(first, "steps_submitted_total", module="echo") == 3
    assert value(first, "steps_submitted_total", module="bash") == 2
    assert value(first, "steps_completed_total", module="echo", status="succeeded") == 1
    assert value(first, "steps_completed_total", module="echo", status="upstream_failed") == 1
    assert value(first, "steps_completed_total", module="echo", status="cancelled") == 1
    assert value(first, "steps_completed_total", module="bash", status="succeeded") == 1
    assert value(first, "steps_completed_total", module="bash", status="failed") == 1
    assert value(first, "step_execution_duration_seconds_count", module="echo") == 1
    assert value(first, "step_execution_duration_seconds_bucket", module="echo",
                 le="0.1") == 1
    assert value(first, "step_execution_duration_seconds_count", module="bash") == 2
    assert value(first, "step_execution_duration_seconds_sum", module="bash") == \
        pytest.approx(2 + 7)

    # Nothing new: the records inside the overlap window are read again, counted once.
    assert scrape(collector) == first

    # New records; one stamped before the newest already read but inside the overlap
    # (a late writer), one far older than the overlap (missed: documented).
    store.runs.update_one({"_id": "r4"}, {"$set": {"status": "succeeded",
                                                   "finished_at": T0 + 80}})
    store.steps.update_one({"_id": "r4/a"}, {"$set": {"status": "succeeded",
                                                      "finished_at": T0 + 79}})
    store.runs.insert_one(run_doc("late", "succeeded", T0 + 60 - OVERLAP_SECONDS / 2,
                                  T0 + 20, T0 + 30))
    store.steps.insert_one(step_doc("late", "a", "echo", "succeeded", T0 + 20, T0 + 20,
                                    T0 + 30))
    store.runs.insert_one(run_doc("ancient", "succeeded", T0 - 3 * OVERLAP_SECONDS,
                                  T0 - 3 * OVERLAP_SECONDS, T0 - 2 * OVERLAP_SECONDS))
    # A retry queues a step again: another submission.
    store.steps.update_one({"_id": "r5/a"}, {"$set": {"status": "queued",
                                                      "queued_at": T0 + 61}})
    second = scrape(collector)
    assert value(second, "workflows_submitted_total") == 6  # + late, not ancient
    assert value(second, "workflows_completed_total", status="succeeded") == 3  # r4, late
    assert value(second, "active_workflows_count") == 1
    assert value(second, "workflow_execution_duration_seconds_count") == 4
    assert value(second, "steps_submitted_total", module="echo") == 5  # r5/a, late/a
    assert value(second, "steps_completed_total", module="echo", status="succeeded") == 3
    assert value(second, "step_execution_duration_seconds_count", module="echo") == 3
    assert scrape(collector) == second

    # A re-run finishes the run again: a second completion (and duration).
    store.runs.update_one({"_id": "r2"}, {"$set": {"status": "running", "finished_at": None}})
    mid = scrape(collector)
    assert value(mid, "active_workflows_count") == 2
    store.runs.update_one({"_id": "r2"}, {"$set": {"status": "succeeded",
                                                   "finished_at": T0 + 90}})
    third = scrape(collector)
    assert value(third, "workflows_completed_total", status="succeeded") == 4
    assert value(third, "workflows_completed_total", status="failed") == 1
    assert value(third, "workflows_submitted_total") == 6

    # A fresh process (another API process, or a restart) reads all and agrees, but
    # for the record that was too late for the running one.
    again = scrape(MetricsCollector(store, clock=clock))
    assert value(again, "workflows_submitted_total") == 7
    assert value(again, "workflows_completed_total", status="succeeded") == 5  # + ancient
    assert value(again, "workflows_completed_total", status="failed") == 0  # r2 now succeeded
    assert value(again, "steps_completed_total", module="echo", status="succeeded") == 3


def test_a_clock_running_ahead_does_not_hide_the_others(store: MongoStore) -> None:
    clock = Clock(T0)
    collector = MetricsCollector(store, clock=clock)
    store.runs.insert_one(run_doc("ahead", "succeeded", T0 + 3600, T0 + 3600, T0 + 3601))
    assert value(scrape(collector), "workflows_submitted_total") == 1
    clock.now = T0 + 2 * OVERLAP_SECONDS
    store.runs.insert_one(run_doc("on-time", "succeeded", T0 + 90, T0 + 90, T0 + 91))
    samples = scrape(collector)
    assert value(samples, "workflows_submitted_total") == 2
    assert value(samples, "workflows_completed_total", status="succeeded") == 2
    assert value(scrape(collector), "workflows_submitted_total") == 2


def test_overlapping_scrapes_count_once(store: MongoStore) -> None:
    collector = MetricsCollector(store, clock=Clock(T0 + 1000))
    store.steps.insert_many([
        step_doc(f"r{i}", "a", "echo", "succeeded", T0 + i / 10, T0 + i / 10, T0 + i / 10 + 1)
        for i in range(300)
    ])
    results: list[Samples] = []
    errors: list[BaseException] = []

    def scrape_once() -> None:
        try:
            results.append(scrape(collector))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrape_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and len(results) == 8
    for samples in results:
        assert value(samples, "steps_completed_total", module="echo", status="succeeded") \
            == 300
        assert value(samples, "step_execution_duration_seconds_count", module="echo") == 300


class BrokenRuns:
    def find(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("mongodb is down")

    def create_index(self, *args: Any, **kwargs: Any) -> str:
        raise ConnectionError("mongodb is down")


def test_unreadable_sources_are_reported_not_zeroed(store: MongoStore) -> None:
    lengths = {"chordflow": 4, "gpu": 2}
    broker_down = False

    def queue_lengths(names: list[str]) -> dict[str, int]:
        if broker_down:
            raise ConnectionError("broker is down")
        return {n: lengths[n] for n in names if n in lengths}

    collector = MetricsCollector(store, default_queue="chordflow",
                                 plan_queues=lambda run_id: ["gpu", "chordflow"],
                                 queue_lengths=queue_lengths, clock=Clock(T0 + 100))
    store.runs.insert_one(run_doc("r1", "running", T0, T0))
    samples = scrape(collector)
    assert value(samples, "chordflow_queue_length", queue="chordflow") == 4
    assert value(samples, "chordflow_queue_length", queue="gpu") == 2
    assert value(samples, "chordflow_metrics_up", source="broker") == 1

    broker_down = True
    healthy_runs = store.runs
    store.runs = BrokenRuns()  # type: ignore[assignment]
    try:
        samples = scrape(collector)
    finally:
        store.runs = healthy_runs
    assert value(samples, "chordflow_metrics_up", source="mongodb") == 0
    assert value(samples, "chordflow_metrics_up", source="broker") == 0
    assert value(samples, "workflows_submitted_total") == 1  # the last value, kept
    assert ("active_workflows_count", frozenset()) not in samples
    assert not any(name == "chordflow_queue_length" for name, _ in samples)

    # Down from the start: no counter at all rather than a false 0.
    fresh = MetricsCollector(store, clock=Clock(T0 + 100))
    fresh.records.store = type("Down", (), {"runs": BrokenRuns(), "steps": BrokenRuns()})()
    samples = scrape(fresh)
    assert value(samples, "chordflow_metrics_up", source="mongodb") == 0
    assert not any(name.startswith("workflows_") for name, _ in samples)


# -- the API server ----------------------------------------------------------------------------


def metrics(api: Api) -> Samples:
    with api.client(None) as client:  # no key: scrapers have none
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)




def test_metrics_count_a_run_on_the_workers(api: Api) -> None:
    before = metrics(api)
    workflow = {"name": unique("metrics"), "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "bash", "params": {"cmd": "exit 3"}, "depends_on": ["a"]},
    ]}
    with api.client("author") as client:
        created = client.post("/api/v1/runs", json={"workflow": workflow})
        assert created.status_code == 201, created.text
        run = wait_run(client, created.json()["run_id"])
    assert run["status"] == "failed"
    after = metrics(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("workflows_submitted_total") == 1
    assert delta("workflows_completed_total", status="failed") == 1
    assert delta("workflows_completed_total", status="succeeded") == 0
    assert delta("workflow_execution_duration_seconds_count") == 1
    assert delta("workflow_execution_duration_seconds_sum") > 0
    assert delta("workflow_execution_duration_seconds_bucket", le="+Inf") == 1
    assert delta("steps_submitted_total", module="echo") == 1
    assert delta("steps_submitted_total", module="bash") == 1
    assert delta("steps_completed_total", module="echo", status="succeeded") == 1
    assert delta("steps_completed_total", module="bash", status="failed") == 1
    assert delta("step_execution_duration_seconds_count", module="echo") == 1
    assert delta("step_execution_duration_seconds_count", module="bash") == 1
    assert value(after, "chordflow_metrics_up", source="mongodb") == 1
    assert value(after, "chordflow_metrics_up", source="broker") == 1
    assert ("chordflow_queue_length", frozenset({("queue", "chordflow")})) in after
    again = metrics(api)  # read again, counted once
    for name in ("workflows_submitted_total", "workflow_execution_duration_seconds_count"):
        assert value(again, name) == value(after, name)
    assert value(again, "steps_completed_total", module="bash", status="failed") == \
        value(after, "steps_completed_total", module="bash", status="failed")


def test_queue_length_shows_a_message_no_worker_takes(api: Api) -> None:
    queue = unique("nobody-serves")
    workflow = {"name": unique("metrics-queue"), "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}, "queue": queue}]}
    broker = redis.Redis.from_url(api.env["CHORDFLOW_BROKER_URL"])
    with api.client("author") as client:
        created = client.post("/api/v1/runs", json={"workflow": workflow})
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        try:
            deadline = time.monotonic() + 30
            while True:
                samples = metrics(api)
                if value(samples, "chordflow_queue_length", queue=queue) == 1:
                    break
                assert time.monotonic() < deadline, f"queue {queue} never showed 1"
                time.sleep(0.2)
            assert value(samples, "active_workflows_count") >= 1
            assert client.get(f"/api/v1/runs/{run_id}").json()["steps"][0]["status"] \
                == "queued"
        finally:
            cancelled = client.post(f"/api/v1/runs/{run_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert wait_run(client, run_id)["status"] == "cancelled"
            # A revoked message stays in Redis until a worker takes it; none will.
            broker.delete(queue, *(f"{queue}:{p}" for p in range(1, 10)))
            broker.close()
    samples = metrics(api)
    assert value(samples, "chordflow_queue_length", queue=queue) == 0  # listed a while
    assert value(samples, "workflows_completed_total", status="cancelled") >= 1


def test_broker_queue_lengths_by_passive_declare() -> None:
    """The transport-independent path, on kombu's in-memory transport (the API tests
    above cover Redis)."""
    from celery import Celery
    from chordflow.api.metrics import broker_queue_lengths
    from kombu import Queue

    app = Celery("metrics-test", broker="memory://")
    busy, missing = unique("busy"), unique("missing")
    with app.connection_for_write() as conn:
        queue = Queue(busy, routing_key=busy)
        with conn.Producer() as producer:
            for n in range(3):
                producer.publish({"n": n}, routing_key=busy, declare=[queue])
    assert broker_queue_lengths(app, [busy, missing]) == {busy: 3, missing: 0}
