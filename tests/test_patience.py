"""Waiting out an unreachable store: unit tests of Patience (a fake clock and sleep),
then the MongoDB store through a real nx-27017 server stopped and started again."""

from __future__ import annotations

import logging
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest
from chordflow.engine.mongo_store import MongoStore
from chordflow.engine.patience import LONGEST_PAUSE, Patience
from chordflow.engine.records import RunRecord, StepRecord
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.errors import StoreUnavailable
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

from tests.servers import free_port, nx_command, stop, wait_for_port


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def failing(times: int, result: str = "ok"):
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise AutoReconnect("connection refused")
        return result

    return fn, calls


def test_retries_with_growing_jittered_pauses_until_the_store_answers():
    t = FakeTime()
    patience = Patience(60, sleep=t.sleep, clock=t.clock)
    fn, calls = failing(6)
    assert patience.call(fn) == "ok" and calls["n"] == 7
    assert all(0 < p <= LONGEST_PAUSE for p in t.pauses)
    assert t.pauses[3] > t.pauses[0]  # growing (jitter is at most half)


def test_gives_up_after_the_tolerance_with_store_unavailable():
    t = FakeTime()
    patience = Patience(5, what="MongoDB (h:1)", sleep=t.sleep, clock=t.clock)
    fn, _ = failing(10_000)
    with pytest.raises(StoreUnavailable, match=r"MongoDB \(h:1\) is unreachable"):
        patience.call(fn)
    assert 5 <= t.now <= 5 + LONGEST_PAUSE


def test_zero_tolerance_tries_once():
    patience = Patience(0)
    fn, calls = failing(1)
    with pytest.raises(StoreUnavailable):
        patience.call(fn)
    assert calls["n"] == 1


def test_a_call_knows_it_is_a_repeat_and_keeps_its_token():
    t = FakeTime()
    patience = Patience(60, sleep=t.sleep, clock=t.clock)
    seen: list[tuple[bool, str]] = []

    def fn() -> None:
        seen.append((patience.retrying, patience.token))
        if len(seen) < 3:
            raise ServerSelectionTimeoutError("no server")

    patience.call(fn)
    assert [r for r, _ in seen] == [False, True, True]
    assert len({tok for _, tok in seen}) == 1
    patience.call(lambda: seen.append((patience.retrying, patience.token)))
    assert seen[-1][1] != seen[0][1]  # a new call, a new token


def test_says_once_that_the_store_is_down_and_once_that_it_is_back(caplog):
    t = FakeTime()
    patience = Patience(60, sleep=t.sleep, clock=t.clock)
    caplog.set_level(logging.WARNING, "chordflow.store")
    for _ in range(3):
        fn, _ = failing(4)
        patience.call(fn)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("is unreachable" in line for line in lines) == 3  # once per outage
    assert sum("answers again" in line for line in lines) == 3
    fn, _ = failing(0)
    patience.call(fn)
    assert len(caplog.records) == 6


@pytest.fixture
def restartable_mongo():
    """An nx-27017 server that the test can stop and start again (same port, same file)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="chordflow-nx-"))
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = subprocess.Popen(nx_command(workdir, port), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_for_port(port, proc)

    def halt() -> None:
        stop(procs[-1])

    start()
    try:
        yield f"mongodb://127.0.0.1:{port}", start, halt
    finally:
        for proc in procs:
            stop(proc)


def test_the_mongodb_store_waits_for_a_restarted_server(restartable_mongo):
    """Writes made while the server is down complete once it is back, exactly once."""
    url, start, halt = restartable_mongo
    store = MongoStore(url, "patience", patience=30)
    run = RunRecord(id="r1", workflow="w", version="1", digest="d", steps_left=1)
    store.create_run(run, [StepRecord("r1", "a", "echo", "run", waiting_on=2)], {"steps": []})
    halt()
    results: dict[str, object] = {}

    def write() -> None:
        results["cas"] = store.transition_step("r1", "a", {StepStatus.PENDING},
                                               StepStatus.QUEUED, queued_at=1.0)
        results["join"] = store.count_parent("r1", "a", "p1")
        results["again"] = store.count_parent("r1", "a", "p1")
        results["status"] = store.set_run_status("r1", {RunStatus.PENDING},
                                                 RunStatus.RUNNING)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(3)
    assert writer.is_alive()  # waiting, not failed
    start()
    writer.join(30)
    assert results == {"cas": True, "join": 1, "again": None, "status": True}
    step = store.get_steps("r1")["a"]
    assert step.status is StepStatus.QUEUED and step.waiting_on == 1
    store.close()


def test_a_client_store_gives_up_after_a_few_seconds(restartable_mongo):
    url, _, halt = restartable_mongo
    store = MongoStore(url, "patience", patience=1)
    halt()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="MongoDB \\(127.0.0.1:"):
        store.get_run("nope")
    assert time.monotonic() - started < 10
    store.close()
