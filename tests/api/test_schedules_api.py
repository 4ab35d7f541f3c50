"""Schedules over HTTP and the CLI, fired by a real ``chordflow worker --beat`` (and by
the tick called directly), against a real uvicorn server, real workers, Redis and
MongoDB."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from chordflow.config import Settings
from chordflow.schedules import tick
from chordflow.service import RunService

from tests.api.conftest import CHORDFLOW, Api
from tests.api.test_workflows import audit_entries, wait_run
from tests.servers import ROOT, celery_worker

BASE = "/api/v1/schedules"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stored_workflow(api: Api) -> str:
    """A stored workflow, written by an author: operators schedule what authors store."""
    name = unique("sched")
    document = {"name": name, "variables": {"x": 1},
                "steps": [{"name": "a", "module": "echo", "params": {"x": "${variables.x}"}}]}
    with api.client("author") as author:
        response = author.post("/api/v1/workflows", json=document)
    assert response.status_code == 201, response.text
    return name


def runs_of(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/runs", params={"workflow": name, "limit": 500})
    assert response.status_code == 200, response.text
    return list(response.json()["runs"])


def create(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post(BASE, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def beat(api: Api, tmp_path: Path) -> Iterator[None]:
    """A worker running beat with a 1 s tick (the reconciler kept out of the way)."""
    env = {**api.env, "CHORDFLOW_SCHEDULE_TICK_SECONDS": "1",
           "CHORDFLOW_RECONCILE_INTERVAL": "3600", "CHORDFLOW_WORKDIR": str(tmp_path)}
    with celery_worker(env, unique("beat"), "--beat", "--pool", "threads", "--concurrency",
                       "2", log=tmp_path / "beat.log"):
        yield


def test_roles_validation_and_crud(api: Api) -> None:
    with api.client("operator") as op, api.client("viewer") as viewer:
        name = stored_workflow(api)
        refused = viewer.post(BASE, json={"workflow": name, "interval_seconds": 60})
        assert refused.status_code == 403, refused.text
        assert api.client(None).get(BASE).status_code == 401
        for body, status, text in [
            ({"workflow": name, "cron": "61 * * * *"}, 422,
             "invalid cron expression '61 * * * *'"),
            ({"workflow": name, "cron": "0 0 30 2 *"}, 422, "invalid cron expression"),
            ({"workflow": name}, 422, "exactly one of 'cron' and 'interval_seconds'"),
            ({"workflow": name, "cron": "* * * * *", "interval_seconds": 5}, 422,
             "exactly one"),
            ({"workflow": name, "interval_seconds": 0.1}, 422, "at least 1"),
            ({"workflow": name, "interval_seconds": 5.98e16}, 422, "at most"),
            ({"workflow": name, "cron": "@daily", "timezone": "Nowhere/Town"}, 422,
             "unknown time zone"),
            ({"workflow": name, "interval_seconds": 60, "variables": {"nope": 1}}, 422,
             "unknown variable 'nope'"),
            ({"workflow": unique("missing"), "interval_seconds": 60}, 404,
             "no stored workflow"),
            ({"workflow": name, "version": 7, "interval_seconds": 60}, 404, "no version 7"),
        ]:
            response = op.post(BASE, json=body)
            assert response.status_code == status, (body, response.text)
            assert text in response.text, (body, response.text)

        before = time.time()
        created = create(op, workflow=name, cron="30 9 * * 1-5", timezone="Europe/Paris",
                         variables={"x": 4})
        sid = created["id"]
        assert (created["workflow"], created["cron"], created["interval_seconds"],
                created["timezone"], created["enabled"], created["created_by"]) == \
            (name, "30 9 * * 1-5", None, "Europe/Paris", True, "test-operator")
        assert created["last_run_id"] is None and created["next_run_at"] > \
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before))
        assert viewer.get(f"{BASE}/{sid}").json() == created
        listed = viewer.get(BASE, params={"workflow": name}).json()["schedules"]
        assert [s["id"] for s in listed] == [sid]
        assert viewer.patch(f"{BASE}/{sid}", json={"enabled": False}).status_code == 403

        changed = op.patch(f"{BASE}/{sid}", json={"interval_seconds": 3600,
                                                  "variables": {"x": 9}})
        assert changed.status_code == 200, changed.text
        assert (changed.json()["cron"], changed.json()["interval_seconds"],
                changed.json()["variables"]) == (None, 3600, {"x": 9})
        bad = op.patch(f"{BASE}/{sid}", json={"cron": "not a cron"})
        assert bad.status_code == 422 and "invalid cron expression" in bad.text
        assert op.patch(f"{BASE}/{sid}", json={"enabled": False}).json()["enabled"] is False
        assert op.get(f"{BASE}/nope").status_code == 404

        # Run now: a manual run through the schedule, paused or not.
        triggered = op.post(f"{BASE}/{sid}/trigger")
        assert triggered.status_code == 201, triggered.text
        run_id = triggered.json()["run_id"]
        run = wait_run(op, run_id)
        assert (run["status"], run["trigger"], run["variables"]) == \
            ("succeeded", f"manual-schedule:{sid}", {"x": 9})
        assert op.get(f"{BASE}/{sid}").json()["last_run_id"] == run_id

        assert viewer.delete(f"{BASE}/{sid}").status_code == 403
        assert op.delete(f"{BASE}/{sid}").status_code == 200
        assert op.get(f"{BASE}/{sid}").status_code == 404
        assert op.delete(f"{BASE}/{sid}").status_code == 404

    actions = [(e["action"], e["who"]) for e in audit_entries(api, sid)]
    assert actions == [("schedule.create", "test-operator"),
                       ("schedule.update", "test-operator"),
                       ("schedule.pause", "test-operator"),
                       ("schedule.trigger", "test-operator"),
                       ("schedule.delete", "test-operator")]


def test_tick_called_directly_submits_a_run(api: Api, tmp_path: Path) -> None:
    settings = Settings(broker_url=api.env["CHORDFLOW_BROKER_URL"],
                        mongo_url=api.env["CHORDFLOW_MONGO_URL"],
                        mongo_db=api.env["CHORDFLOW_MONGO_DB"], workdir=tmp_path)
    service = RunService.celery(settings)
    try:
        with api.client("operator") as op:
            name = stored_workflow(api)
            sid = create(op, workflow=name, interval_seconds=1, variables={"x": 2})["id"]
            try:
                at = time.time() + 1.5
                mine = [f for f in tick(service, at) if f.schedule_id == sid]
                assert len(mine) == 1 and mine[0].run_id and mine[0].error is None
                assert sid not in [f.schedule_id for f in tick(service, at)]  # done
                run = wait_run(op, str(mine[0].run_id))
                assert (run["status"], run["trigger"], run["variables"]) == \
                    ("succeeded", f"schedule:{sid}", {"x": 2})
                assert op.get(f"{BASE}/{sid}").json()["last_run_id"] == mine[0].run_id
            finally:
                op.delete(f"{BASE}/{sid}")
    finally:
        service.close()


def test_beat_fires_an_interval_schedule_and_pause_stops_it(api: Api, beat: None) -> None:
    with api.client("operator") as op:
        name = stored_workflow(api)
        sid = create(op, workflow=name, interval_seconds=1)["id"]
        try:
            scheduled = wait_until(
                lambda: len([r for r in runs_of(op, name)
                             if r["trigger"] == f"schedule:{sid}"]) >= 2 and runs_of(op, name),
                timeout=60, what="two scheduled runs")
            assert {r["trigger"] for r in scheduled} == {f"schedule:{sid}"}
            first = wait_run(op, scheduled[-1]["run_id"])
            assert first["status"] == "succeeded", first
            paused = op.patch(f"{BASE}/{sid}", json={"enabled": False})
            assert paused.status_code == 200 and paused.json()["enabled"] is False
            time.sleep(2)  # a tick that claimed just before the pause may still submit
            count = len(runs_of(op, name))
            time.sleep(4)  # four ticks
            assert len(runs_of(op, name)) == count
        finally:
            op.delete(f"{BASE}/{sid}")


def cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**api.env, "CHORDFLOW_API_URL": api.url, "CHORDFLOW_API_KEY": api.keys["operator"]}
    return subprocess.run([CHORDFLOW, *args], capture_output=True, text=True, timeout=90,
                          cwd=ROOT, env=env)


def test_cli_create_list_pause_resume_delete(api: Api) -> None:
    name = stored_workflow(api)
    done = cli(api, "schedules", "create", name, "--every", "3600", "--var", "x=3", "--json")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    sid = created["id"]
    assert (created["interval_seconds"], created["variables"], created["enabled"]) == \
        (3600, {"x": 3}, True)
    listed = cli(api, "schedules", "list", "--workflow", name)
    assert listed.returncode == 0, listed.stderr
    assert sid in listed.stdout and "every 3600s" in listed.stdout
    paused = cli(api, "schedules", "pause", sid)
    assert paused.returncode == 0 and "paused schedule" in paused.stdout, paused.stderr
    shown = cli(api, "schedules", "show", sid, "--json")
    assert json.loads(shown.stdout)["enabled"] is False
    assert cli(api, "schedules", "resume", sid).returncode == 0
    assert "enabled: yes" in cli(api, "schedules", "show", sid).stdout
    bad = cli(api, "schedules", "create", name, "--cron", "61 * * * *")
    assert bad.returncode == 2 and "invalid cron expression" in bad.stderr
    both = cli(api, "schedules", "create", name, "--cron", "@daily", "--every", "5")
    assert both.returncode == 2 and "exactly one of --cron and --every" in both.stderr
    triggered = cli(api, "schedules", "trigger", sid, "--wait", "--json")
    assert triggered.returncode == 0, triggered.stderr
    assert json.loads(triggered.stdout)["trigger"] == f"manual-schedule:{sid}"
    assert cli(api, "schedules", "delete", sid).returncode == 0
    gone = cli(api, "schedules", "show", sid)
    assert gone.returncode == 2 and "no schedule" in gone.stderr
