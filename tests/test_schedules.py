"""Schedules: next times (cron in a time zone, intervals keeping their phase, missed
windows run once) and the claim that keeps concurrent ticks from submitting an
occurrence twice, against a real MongoDB-protocol server."""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from chordflow.api.library import WorkflowLibrary
from chordflow.engine.mongo_store import MongoStore
from chordflow.schedules import (
    InvalidSchedule,
    ScheduleMissing,
    Schedules,
    next_cron,
    next_interval,
    tick,
    validate_trigger,
)

from tests.servers import mongo_server


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       tz: str = "UTC") -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(tz)).timestamp()


# -- next times ---------------------------------------------------------------------------

def test_next_cron_in_utc() -> None:
    start = ts(2024, 1, 1, 0, 2)
    assert next_cron("*/5 * * * *", start) == ts(2024, 1, 1, 0, 5)
    # Strictly after: an exact match gives the following occurrence.
    assert next_cron("*/5 * * * *", ts(2024, 1, 1, 0, 5)) == ts(2024, 1, 1, 0, 10)
    # 2024-01-01 is a Monday: 09:00 that day, then the next Monday.
    assert next_cron("0 9 * * 1", start) == ts(2024, 1, 1, 9)
    assert next_cron("0 9 * * 1", ts(2024, 1, 1, 10)) == ts(2024, 1, 8, 9)
    assert next_cron("@hourly", start) == ts(2024, 1, 1, 1)


def test_next_cron_in_a_time_zone_across_daylight_saving() -> None:
    # 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer (DST from 2024-03-31).
    assert next_cron("0 9 * * *", ts(2024, 3, 29, 12), "Europe/Paris") == \
        ts(2024, 3, 30, 8)
    assert next_cron("0 9 * * *", ts(2024, 3, 30, 12), "Europe/Paris") == \
        ts(2024, 3, 31, 7)
    assert datetime.fromtimestamp(ts(2024, 3, 31, 7), UTC).hour == 7


def test_next_interval_keeps_the_phase_and_skips_missed_occurrences() -> None:
    assert next_interval(60, after=1000.0) == 1060.0  # no anchor: one interval on
    assert next_interval(60, after=1000.0, anchor=1000.0) == 1060.0
    assert next_interval(60, after=1030.0, anchor=1000.0) == 1060.0
    # Beat was down for an hour: the next is the first occurrence after now, once.
    assert next_interval(60, after=1000.0 + 3600 + 5, anchor=1000.0) == 1000.0 + 3660


@pytest.mark.parametrize("cron,interval,zone,message", [
    (None, None, "UTC", "exactly one"),
    ("* * * * *", 60, "UTC", "exactly one"),
    ("61 * * * *", None, "UTC", "invalid cron expression '61 * * * *'"),
    ("every monday", None, "UTC", "invalid cron expression"),
    ("", None, "UTC", "empty"),
    ("0 0 30 2 *", None, "UTC", "invalid cron expression"),  # February 30th: never
    (None, 0.5, "UTC", "at least 1"),
    (None, -5, "UTC", "at least 1"),
    (None, 5.98e16, "UTC", "at most"),  # schemathesis's: its times passed the year 9999
    ("* * * * *", None, "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
])
def test_invalid_triggers(cron: str | None, interval: float | None, zone: str,
                          message: str) -> None:
    with pytest.raises(InvalidSchedule, match=re.escape(message)):
        validate_trigger(cron, interval, zone)


# -- the store and the tick ---------------------------------------------------------------

@pytest.fixture(scope="module")
def own_mongo() -> Iterator[str]:
    """A MongoDB-protocol server of this file's own: its tests need an empty schedules
    collection each (a tick fires whatever is due), and nx-27017 ignores database names,
    so dropping a database on the session's server would drop every other test's
    collections too (the API's keys, while another test process uses them)."""
    with mongo_server() as url:
        yield url


@pytest.fixture
def store(own_mongo: str) -> Iterator[MongoStore]:
    store = MongoStore(own_mongo, f"sched{uuid.uuid4().hex[:10]}")
    try:
        yield store
    finally:
        store.client.drop_database(store.db.name)
        store.close()


class FakeEngine:
    def __init__(self, store: MongoStore):
        self.store = store


class RecordingService:
    """Records submissions instead of starting runs; slow, to widen any race."""

    def __init__(self, store: MongoStore, delay: float = 0.05):
        self.engine = FakeEngine(store)
        self.delay = delay
        self.lock = threading.Lock()
        self.submitted: list[tuple[str, str, dict[str, Any]]] = []

    def submit(self, workflow: Any, variables: Any = None, *, trigger: str = "manual",
               run_id: str | None = None) -> str:
        time.sleep(self.delay)
        run_id = f"run-{uuid.uuid4().hex[:8]}"
        with self.lock:
            self.submitted.append((trigger, workflow.name, dict(variables or {})))
        return run_id


def stored(store: MongoStore, name: str) -> None:
    WorkflowLibrary(store.db).create(name, {
        "name": name, "variables": {"x": 1},
        "steps": [{"name": "a", "module": "echo", "params": {"x": "${variables.x}"}}]})


def test_create_update_delete(store: MongoStore) -> None:
    schedules = Schedules(store.db)
    s = schedules.create("wf", interval_seconds=60, variables={"x": 2}, by="me", now=1000.0)
    assert (s.next_run_at, s.enabled, s.cron, s.created_by) == (1060.0, True, None, "me")
    assert schedules.get(s.id) == s and schedules.find("wf") == [s]
    paused = schedules.update(s.id, {"enabled": False}, now=2000.0)
    assert not paused.enabled and paused.next_run_at == 1060.0
    assert schedules.due(5000.0) == []
    resumed = schedules.update(s.id, {"enabled": True}, now=5000.0)
    assert resumed.enabled and resumed.next_run_at == 5060.0  # from now, not at once
    cron = schedules.update(s.id, {"cron": "0 * * * *"}, now=ts(2024, 1, 1, 0, 30))
    assert (cron.cron, cron.interval_seconds, cron.next_run_at) == \
        ("0 * * * *", None, ts(2024, 1, 1, 1))
    with pytest.raises(InvalidSchedule):
        schedules.update(s.id, {"cron": "nope"})
    with pytest.raises(InvalidSchedule, match="cannot change"):
        schedules.update(s.id, {"workflow": "other"})
    schedules.delete(s.id)
    with pytest.raises(ScheduleMissing):
        schedules.get(s.id)


def test_tick_submits_due_schedules_once_and_skips_missed_windows(store: MongoStore) -> None:
    stored(store, "nightly")
    service = RecordingService(store, delay=0)
    schedules = Schedules(store.db)
    s = schedules.create("nightly", interval_seconds=60, variables={"x": 5}, now=1000.0)
    assert tick(service, 1059.0) == []  # not due yet
    # Due long ago (beat was down for an hour): one run, then the next regular time.
    fired = tick(service, 1000.0 + 3600 + 10)
    assert [f.schedule_id for f in fired] == [s.id] and fired[0].run_id
    assert service.submitted == [(f"schedule:{s.id}", "nightly", {"x": 5})]
    after = schedules.get(s.id)
    assert after.next_run_at == 1000.0 + 3660
    assert (after.last_run_at, after.last_run_id, after.last_error) == \
        (1000.0 + 3610, fired[0].run_id, None)
    assert tick(service, 1000.0 + 3620) == []  # already done for this window
    assert len(service.submitted) == 1


def test_tick_records_a_run_that_cannot_start(store: MongoStore) -> None:
    service = RecordingService(store, delay=0)
    schedules = Schedules(store.db)
    s = schedules.create("gone", interval_seconds=10, now=0.0)
    fired = tick(service, 100.0)
    assert fired[0].run_id is None and "no stored workflow 'gone'" in str(fired[0].error)
    after = schedules.get(s.id)
    assert after.enabled and after.next_run_at == 110.0
    assert "no stored workflow 'gone'" in str(after.last_error)
    assert service.submitted == []


def test_concurrent_ticks_never_double_submit(store: MongoStore) -> None:
    """Eight ticks at once (as overlapping ticks or several beats would) over twenty due
    schedules: every schedule runs exactly once."""
    stored(store, "busy")
    service = RecordingService(store, delay=0.02)
    schedules = Schedules(store.db)
    ids = {schedules.create("busy", interval_seconds=30, now=0.0).id for _ in range(20)}
    barrier = threading.Barrier(8)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=10)
            done = tick(service, 100.0)
            with service.lock:
                results.append([f.schedule_id for f in done])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    fired = [sid for part in results for sid in part]
    assert sorted(fired) == sorted(ids)  # each schedule fired by exactly one tick
    triggers = [trigger for trigger, _, _ in service.submitted]
    assert sorted(triggers) == sorted(f"schedule:{sid}" for sid in ids)
    assert all(s.next_run_at == 120.0 for s in schedules.find("busy"))
