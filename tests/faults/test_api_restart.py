"""The API stopped (SIGTERM) while a client follows a run's events: it exits within
seconds, and the client, reconnecting with ``Last-Event-ID``, gets only what it had not
seen."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest

from tests.api.conftest import make_key, start_api
from tests.servers import stop_group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def read_events(response: httpx.Response, stop_after: int | None = None
                ) -> tuple[list[dict[str, object]], str | None]:
    """(events, the last id) from an SSE stream, up to ``stop_after`` events or its end."""
    events: list[dict[str, object]] = []
    last_id = None
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in current and current.get("event") != "end":
                events.append(json.loads(current["data"]))
            if "id" in current:
                last_id = current["id"]
            if current.get("event") == "end" or (stop_after and len(events) >= stop_after):
                return events, last_id
            current = {}
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(": ")
        current[field] = value
    return events, last_id


def test_sigterm_closes_event_streams_and_last_event_id_resumes(fresh, service, tmp_path):
    env = fresh.env()
    key = make_key(env, "faults-viewer", "author")
    headers = {"Authorization": f"Bearer {key}"}
    fresh.start_worker("w1")
    proc, url = start_api(env, tmp_path / "api1.log")
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            run_id = client.post("/api/v1/runs", json={"workflow": {
                "name": "followed", "steps": [
                    {"name": f"s{i}", "module": "bash", "params": {"cmd": "sleep 0.7"},
                     **({"depends_on": [f"s{i - 1}"]} if i else {})} for i in range(8)]}}
            ).json()["run_id"]
            with client.stream("GET", f"/api/v1/runs/{run_id}/events") as response:
                first, last_id = read_events(response, stop_after=4)
                assert last_id is not None
                proc.send_signal(signal.SIGTERM)
                started = time.monotonic()
                try:
                    proc.wait(timeout=5)  # the bound: within 5 s
                except subprocess.TimeoutExpired:
                    pytest.fail("the API did not exit within 5 s of SIGTERM with a "
                                "stream open")
            assert time.monotonic() - started < 5
    finally:
        stop_group(proc)

    proc, url = start_api(env, tmp_path / "api2.log")
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client, \
                client.stream("GET", f"/api/v1/runs/{run_id}/events",
                              headers={"Last-Event-ID": last_id}) as response:
            second, _ = read_events(response)
            assert second, "the reconnected stream sent nothing"
            seen = {(e["ts"], e["type"], e["step"]) for e in first}
            assert not [e for e in second if (e["ts"], e["type"], e["step"]) in seen]
            assert all(float(e["ts"]) > float(last_id) for e in second)
            assert second[-1]["type"] == "run_succeeded"
            expected = {(e.ts, e.type, e.step) for e in service.engine.store.events(run_id)
                        if e.ts > float(last_id)}
            assert {(e["ts"], e["type"], e["step"]) for e in second} == expected
    finally:
        stop_group(proc)
