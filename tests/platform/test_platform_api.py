"""The replaced platform's REST paths, driven by a client written from its README (its
"REST API" table: /flow, /flow/<name>/run, /flow/<name>/runs, /run/<run_id>, /backup
with an X-Api-Key header), on a real API and Celery workers; and a backup restored
into a fresh deployment (another MongoDB-protocol server), through the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api, api, make_key, start_api  # noqa: F401 (the fixture)
from tests.servers import ROOT, TEST_SECRET, mongo_server, stop_group

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


class PlatformClient:
    """What a client of the platform sends, from its README: JSON bodies, the key in
    ``X-Api-Key``, answers ``{"status": ..., "data": ...}``."""

    def __init__(self, url: str, key: str | None):
        headers = {"X-Api-Key": key} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def close(self) -> None:
        self.http.close()

    def list(self) -> httpx.Response:
        return self.http.get("/flow")

    def get(self, name: str) -> httpx.Response:
        return self.http.get(f"/flow/{name}")

    def create(self, flow: dict[str, Any]) -> httpx.Response:
        return self.http.post("/flow", json=flow)

    def update(self, name: str, flow: dict[str, Any]) -> httpx.Response:
        return self.http.put(f"/flow/{name}", json=flow)

    def delete(self, name: str) -> httpx.Response:
        return self.http.delete(f"/flow/{name}")

    def run(self, name: str, trigger_by: str = "api") -> httpx.Response:
        return self.http.post(f"/flow/{name}/run", json={"trigger_by": trigger_by})

    def enable(self, name: str) -> httpx.Response:
        return self.http.put(f"/flow/{name}/enable")

    def disable(self, name: str) -> httpx.Response:
        return self.http.put(f"/flow/{name}/disable")

    def rename(self, name: str, new: str) -> httpx.Response:
        return self.http.put(f"/flow/{name}/rename", json={"new": new})

    def runs(self, name: str) -> httpx.Response:
        return self.http.get(f"/flow/{name}/runs", params={"limit": 20})

    def run_detail(self, run_id: str) -> httpx.Response:
        return self.http.get(f"/run/{run_id}")

    def backup(self) -> httpx.Response:
        return self.http.get("/backup")


def flow(name: str, msg: str = "hello world") -> dict[str, Any]:
    """The platform's sample (its Kt module's README), named as its create takes it."""
    return {"name": name, "procedures": [
        {"name": "step1", "mod": "common.Kt", "method": "prt1", "params": {"msg": msg}},
        {"name": "step2", "mod": "common.Kt", "method": "prt2",
         "params": {"msg": "@step1.msg"}}], "variables": {"env": "production"}}


@pytest.fixture
def platform(api: Api) -> Iterator[PlatformClient]:  # noqa: F811 (the imported fixture)
    client = PlatformClient(api.url, api.keys["author"])
    yield client
    client.close()


def test_flow_paths_as_the_readme_describes(api: Api, platform: PlatformClient) -> None:  # noqa: F811
    name = f"pf_{uuid.uuid4().hex[:8]}"
    created = platform.create(flow(name))
    assert created.status_code == 201, created.text
    assert created.json() == {"status": True, "data": {"flow_name": name}}
    assert name in [f["flow_name"] for f in platform.list().json()["data"]]
    got = platform.get(name).json()["data"]
    assert got["enabled"] is True and got["flow_procedures"]["procedures"][0]["mod"] == \
        "common.Kt"
    assert platform.update(name, flow(name, "again")).json()["status"] is True
    assert platform.get(name).json()["data"]["version"] == 2

    ran = platform.run(name, trigger_by="kyle")
    assert ran.status_code == 200, ran.text
    body = ran.json()
    assert body["status"] is True and body["run_status"] == "success"
    assert body["data"]["step2"]["msg"] == "ret from ret from again"
    detail = platform.run_detail(body["run_id"]).json()["data"]
    assert {"id", "flow_name", "status", "trigger_by", "start_time", "end_time",
            "duration_ms", "error_msg", "steps"} <= set(detail)
    assert (detail["status"], detail["trigger_by"], detail["flow_name"]) == \
        ("success", "kyle", name)
    assert detail["duration_ms"] >= 0 and len(detail["start_time"]) == 23
    assert [(s["step_order"], s["step_name"], s["status"]) for s in detail["steps"]] == \
        [(1, "step1", "success"), (2, "step2", "success")]
    assert detail["steps"][1]["result_data"]["msg"] == "ret from ret from again"

    assert platform.disable(name).json()["status"] is True
    refused = platform.run(name)
    assert refused.status_code == 409 and refused.json()["status"] is False
    platform.enable(name)
    renamed = f"{name}_v2"
    assert platform.rename(name, renamed).json() == {"status": True,
                                                     "data": {"flow_name": renamed}}
    runs = platform.runs(renamed).json()["data"]
    assert [r["id"] for r in runs] == [body["run_id"]] and runs[0]["status"] == "success"
    assert platform.rename(renamed, "").status_code == 400
    assert platform.delete(renamed).json()["status"] is True
    missing = platform.get(renamed)
    assert missing.status_code == 404 and missing.json()["status"] is False
    assert platform.run_detail("nope").json() == {"status": False, "error": "Run not found"}


def test_failed_runs_invalid_flows_and_keys(api: Api, platform: PlatformClient) -> None:  # noqa: F811
    name = f"pf_{uuid.uuid4().hex[:8]}"
    bad = platform.create({"name": name, "procedures": [
        {"name": "a", "mod": "common.Kt", "method": "prt1", "params": {"msg": "@nobody"}}]})
    assert bad.status_code == 422 and bad.json()["status"] is False
    assert bad.json()["errors"][0]["step"] == "a"
    platform.create({"name": name, "procedures": [
        {"name": "a", "mod": "ops.Probe", "method": "fail", "params": {"msg": "connect"}},
        {"name": "b", "mod": "common.Kt", "method": "prt1", "params": {"msg": "x"}}]})
    ran = platform.run(name).json()
    assert ran["status"] is False and ran["run_status"] == "failed"
    detail = platform.run_detail(ran["run_id"]).json()["data"]
    assert detail["status"] == "failed" and "could not connect" in detail["error_msg"]
    assert [s["status"] for s in detail["steps"]] == ["failed", "failed"]
    viewer = PlatformClient(api.url, api.keys["viewer"])
    try:
        assert viewer.create(flow(f"{name}x")).status_code == 403
        assert viewer.list().status_code == 200
        assert viewer.backup().status_code == 403  # admin only
    finally:
        viewer.close()
    assert PlatformClient(api.url, None).list().status_code == 401


def test_backup_restored_into_a_fresh_deployment(api: Api, tmp_path: Path) -> None:  # noqa: F811
    tag = uuid.uuid4().hex[:8]
    names = [f"bk_{tag}_a", f"bk_{tag}_b"]
    conn = f"bk_{tag}_db"
    with api.client("admin") as admin:
        for name in names:
            assert admin.post("/api/v1/workflows", json=flow(name)).status_code == 201
        admin.put(f"/api/v1/workflows/{names[0]}", json=flow(names[0], "v2"))
        schedule = admin.post("/api/v1/schedules", json={
            "workflow": names[1], "cron": "0 3 * * *"}).json()
        put = admin.put(f"/api/v1/connections/{conn}", json={
            "type": "mysql", "hosts": ["db1:3306", "db2:3306"], "login": "app",
            "credentials": {"password": "test_token"}})
        assert put.status_code in (200, 201), put.text
        before = {n: admin.get(f"/api/v1/workflows/{n}/versions").json()["versions"]
                  for n in names}
    archive = tmp_path / "catalog.zip"
    old_env = {**api.env, "CHORDFLOW_API_URL": api.url,
               "CHORDFLOW_API_KEY": api.keys["admin"]}
    done = subprocess.run([CHORDFLOW, "backup", str(archive)], env=old_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(archive) as zf:
        listing = set(zf.namelist())
        assert {"backup.json", "schedules.json", "connections.json",
                f"workflows/{names[0]}.json", "modules/ops/Probe.py"} <= listing
        text = b"".join(zf.read(n) for n in listing).decode("utf-8", "replace")
        assert TEST_SECRET not in text  # a secret's value never, only its name
        saved = json.loads(zf.read(f"workflows/{names[0]}.json"))
        assert [v["version"] for v in saved["versions"]] == [1, 2]

    modules = tmp_path / "modules"
    modules.mkdir()
    with mongo_server() as fresh_mongo:
        env = {**api.env, "CHORDFLOW_MONGO_URL": fresh_mongo,
               "CHORDFLOW_MODULES_PATH": str(modules)}
        key = make_key(env, "restorer", "admin")
        proc, url = start_api(env, tmp_path / "fresh-api.log")
        try:
            restored = subprocess.run(
                [CHORDFLOW, "restore", str(archive), "--json"], cwd=ROOT, timeout=120,
                env={**env, "CHORDFLOW_API_URL": url, "CHORDFLOW_API_KEY": key},
                capture_output=True, text=True)
            assert restored.returncode == 0, restored.stdout + restored.stderr
            report = json.loads(restored.stdout)
            assert report["errors"] == []
            assert sorted(report["restored"]["workflows"]["created"]) == sorted(
                n for n in _workflow_names(archive))
            with httpx.Client(base_url=url, headers={"X-Api-Key": key}, timeout=30) as new:
                for name in names:
                    versions = new.get(f"/api/v1/workflows/{name}/versions").json()
                    assert [(v["version"], v["digest"]) for v in versions["versions"]] == \
                        [(v["version"], v["digest"]) for v in before[name]]
                schedules = new.get("/api/v1/schedules").json()["schedules"]
                assert [(s["id"], s["cron"]) for s in schedules
                        if s["workflow"] == names[1]] == [(schedule["id"], "0 3 * * *")]
                got = new.get(f"/api/v1/connections/{conn}").json()
                assert (got["hosts"], got["credentials"]) == (
                    ["db1:3306", "db2:3306"], {"password": "test_token"})
                assert (modules / "ops" / "Probe.py").read_bytes() == \
                    (ROOT / "tests/fixtures/apps/ops/Probe.py").read_bytes()
                # Again, at the platform's path, as its clients upload: nothing changes.
                again = new.post("/restore", params={"sections": "workflows,schedules"},
                                 files={"file": ("b.zip", archive.read_bytes())}).json()
                assert again["status"] is True
                assert set(again["restored"]["workflows"]) == {"unchanged"}
                assert set(again["restored"]["schedules"]) == {"unchanged"}
                assert "modules" not in again["restored"]
                bad = new.post("/api/v1/restore", content=b"not a zip",
                               headers={"Content-Type": "application/zip"})
                assert bad.status_code == 400 and "not a ZIP" in bad.json()["detail"]
                small = new.get("/api/v1/backup", params={"sections": "connections"})
                assert set(zipfile.ZipFile(io.BytesIO(small.content)).namelist()) == \
                    {"backup.json", "connections.json"}
        finally:
            stop_group(proc)


def _workflow_names(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as zf:
        return [json.loads(zf.read(n))["flow_name"] for n in zf.namelist()
                if n.startswith("workflows/")]
