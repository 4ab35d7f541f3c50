"""A running attempt's captured output is readable while it runs (app/engine/live_output.py):
in pages, rewritten only where they changed, bounded as the recorded output is (head and
tail, with a count of what was cut), and replaced by the recorded output when the
attempt ends, never shown twice. Through a real API and real Celery workers, and the
flusher itself on the in-memory store."""

from __future__ import annotations

import time
from typing import Any

import httpx
from chordflow.engine.live_output import PAGE_CHARS, LiveOutput
from chordflow.engine.memory_store import MemoryStore
from chordflow.engine.records import LogLine
from chordflow.modules.limits import Captured, HeadTail

from tests.api.conftest import Api
from tests.dashboard.conftest import unique, wait_run


class CountingStore(MemoryStore):
    """The in-memory store, counting the live pages written."""

    def __init__(self) -> None:
        super().__init__()
        self.pages_written: list[int] = []

    def put_live_logs(self, run_id: str, step: str, attempt: int,
                      pages: Any, count: int) -> None:
        self.pages_written += list(pages)
        super().put_live_logs(run_id, step, attempt, pages, count)


def texts(store: MemoryStore, run_id: str = "r") -> str:
    return "".join(line.text for line in store.logs(run_id))


def test_live_pages_are_bounded_written_where_they_changed_and_give_way_to_the_record(
        ) -> None:
    store = CountingStore()
    # interval 0: no thread of its own, the passes are made here (``flush``).
    live = LiveOutput(store, "w1", lambda text: text.replace("s3cret", "***"), interval=0)
    captured = Captured(4 * PAGE_CHARS)
    watched = live.watch("r", "step", 1, captured)
    captured.add("log", "INFO starting with s3cret\n")
    stream = HeadTail(4 * PAGE_CHARS)
    captured.follow("stdout", stream)  # a process's stdout, read as it comes
    stream.write("first line\n")
    live.flush()
    assert texts(store) == "INFO starting with ***\nfirst line\n"
    live.flush()  # nothing new: nothing written
    assert store.pages_written == [0]
    stream.write(("x" * 99 + "\n") * 10_000)  # 1 MB: far over the limit
    live.flush()
    shown = texts(store)
    assert shown.startswith("INFO starting with ***\nfirst line\n")
    assert "of output cut: CHORDFLOW_MAX_LOG_BYTES is 256 KiB" in shown
    assert len(shown) < 4 * PAGE_CHARS + 200 and shown.endswith("x" * 99 + "\n")
    store.pages_written.clear()
    stream.write("last line\n")
    live.flush()
    assert 0 not in store.pages_written  # the head's page stays as it was
    assert texts(store).endswith("last line\n")
    # The attempt ends: its output is recorded, which wins over its live pages.
    live.forget(watched)
    store.append_logs([LogLine("r", "step", 1, "stdout", "recorded\n", "w1")])
    assert texts(store) == "recorded\n"
    live.recorded("r", "step", 1)
    assert store.logs("r") and not store._live_logs


def logs(client: httpx.Client, run_id: str, step: str) -> str:
    answer = client.get(f"/api/v1/runs/{run_id}/logs",
                        params={"step": step, "events": "false"})
    assert answer.status_code == 200, answer.text
    return answer.text


def wait_logs(client: httpx.Client, run_id: str, step: str, text: str,
              timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        found = logs(client, run_id, step)
        if text in found:
            return found
        assert time.monotonic() < deadline, f"no {text!r} in the logs: {found!r}"
        time.sleep(0.25)


def test_a_running_bash_steps_output_is_served_while_it_runs(dash_api: Api) -> None:
    workflow = {"name": unique("live"), "steps": [{
        "name": "talk", "module": "bash",
        "params": {"cmd": "echo first; echo oops >&2; sleep 6; echo second"}}]}
    with dash_api.client("author") as client:  # inline bash: an author's
        run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
        early = wait_logs(client, run_id, "talk", "first")
        assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
        assert "second" not in early and "oops" in early
        assert "--- talk stdout (attempt 1, " in early
        assert wait_run(client, run_id)["status"] == "succeeded"
        final = logs(client, run_id, "talk")
    assert final.count("first") == 1 and final.count("second") == 1
    assert final.count("oops") == 1


def test_a_chatty_running_steps_live_output_keeps_head_and_tail(dash_api: Api) -> None:
    workflow = {"name": unique("chatty"), "steps": [{
        "name": "flood", "module": "bash",
        # 3 MB of numbered lines, then a pause: three times the 1 MiB log limit.
        "params": {"cmd": "seq -w 1 375000; sleep 5"}}]}
    with dash_api.client("author") as client:  # inline bash: an author's
        run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
        live = wait_logs(client, run_id, "flood", "375000")
        assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
        client.post(f"/api/v1/runs/{run_id}/cancel")
    assert live.startswith("--- flood stdout") and "\n000001\n" in live
    assert "of output cut: CHORDFLOW_MAX_LOG_BYTES is 1 MiB" in live
    assert len(live.encode()) < 1024 * 1024 + 4096
