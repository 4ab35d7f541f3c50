"""Keys, roles, audit and secrets over HTTP, on a real server."""

from __future__ import annotations

import json
import re
import time

import httpx
import pymongo
import pytest

from tests.api.conftest import Api, start_api
from tests.api.test_runs import two_steps, unique, wait_run
from tests.servers import TEST_SECRET, stop_group

#: Paths anyone may call: probes, scrapers, the docs.
PUBLIC = {"/api/v1/health", "/api/v1/ready", "/metrics", "/openapi.json", "/docs",
          "/docs/oauth2-redirect", "/redoc"}


def test_every_endpoint_needs_a_key(api: Api) -> None:
    with api.client(None) as anonymous:
        schema = anonymous.get("/openapi.json").json()
        checked = 0
        for path, operations in schema["paths"].items():
            if path in PUBLIC:
                continue
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            for method in operations:
                response = anonymous.request(method.upper(), concrete, json={})
                assert response.status_code == 401, (method, path, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                checked += 1
        assert checked >= 20
        assert "API key is required" in anonymous.get("/api/v1/runs").json()["detail"]
        bad = anonymous.get("/api/v1/runs", headers={"Authorization": "Bearer cf_nope_nope"})
        assert bad.status_code == 401 and "unknown or revoked" in bad.json()["detail"]
        assert anonymous.get("/api/v1/health").status_code == 200


#: The least role of each kind of call in test_roles.
NEEDS = {"operate": "operator", "author": "author", "admin": "admin"}


@pytest.mark.parametrize(("role", "allowed"), [
    ("viewer", {"read"}),
    ("operator", {"read", "operate"}),
    ("author", {"read", "operate", "author"}),
    ("admin", {"read", "operate", "author", "admin"}),
])
def test_roles(api: Api, role: str, allowed: set[str]) -> None:
    echo_only = {"name": unique("roles"), "steps": [{"name": "a", "module": "echo"}]}
    with api.client(role) as client:
        checks = {
            "read": lambda: client.get("/api/v1/runs"),
            "operate": lambda: client.post("/api/v1/runs", json={"workflow": echo_only}),
            "author": lambda: client.post("/api/v1/runs", json={
                "workflow": two_steps(unique("roles"))}),  # a bash step
            "admin": lambda: client.get("/api/v1/keys"),
        }
        for kind, call in checks.items():
            response = call()
            if kind in allowed:
                assert response.status_code in (200, 201), (kind, response.text)
            else:
                assert response.status_code == 403, (kind, response.text)
                detail = response.json()["detail"]
                assert f"key 'test-{role}' is {role}" in detail
                # A viewer is refused by the endpoint (operator) before any module counts.
                needed = "operator" if (role, kind) == ("viewer", "author") else NEEDS[kind]
                assert needed in detail
        also_via_header = client.get("/api/v1/runs", headers={
            "Authorization": "", "X-API-Key": api.keys[role]})
        assert also_via_header.status_code == 200


def test_keys_over_the_api_and_the_audit_log(api: Api) -> None:
    with api.client("admin") as admin:
        made = admin.post("/api/v1/keys", json={"name": "ci-bot", "role": "operator"})
        assert made.status_code == 201
        key_id, token = made.json()["key_id"], made.json()["key"]
        listed = {k["key_id"]: k for k in admin.get("/api/v1/keys").json()}
        assert listed[key_id]["role"] == "operator" and "key" not in listed[key_id]
        with httpx.Client(base_url=api.url, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as bot:
            submitted = bot.post("/api/v1/runs", json={"workflow": {  # operators: echo
                "name": unique("bot"), "steps": [{"name": "a", "module": "echo"}]}})
            assert submitted.status_code == 201
            assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 204
            assert bot.get("/api/v1/runs").status_code == 401
        assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 404
        entries = admin.get("/api/v1/audit", params={"limit": 50}).json()
        mine = [e for e in entries if e["key_id"] == key_id or e["target"] == key_id]
        actions = {e["action"]: e for e in mine}
        assert {"key.create", "key.revoke", "run.submit"} <= set(actions)
        submit = actions["run.submit"]
        assert submit["who"] == "ci-bot" and submit["role"] == "operator"
        assert submit["target"] == submitted.json()["run_id"]
        assert submit["client"] == "127.0.0.1" and submit["path"] == "/api/v1/runs"
        assert abs(submit["ts"] - time.time()) < 60
        assert actions["key.create"]["who"] == "test-admin"
    # Keys are stored as slow hashes, never in clear.
    db = pymongo.MongoClient(api.env["CHORDFLOW_MONGO_URL"])[api.env["CHORDFLOW_MONGO_DB"]]
    doc = db["api_keys"].find_one({"_id": key_id})
    assert token not in json.dumps(doc, default=str)
    assert token.split("_", 2)[2] not in json.dumps(doc, default=str)
    db.client.close()


def test_secrets_are_never_stored_or_returned(api: Api) -> None:
    workflow = {"name": unique("secret"), "steps": [
        {"name": "a", "module": "echo", "params": {"auth": "Bearer ${secrets.api_token}"}},
        {"name": "b", "module": "bash", "depends_on": ["a"],
         "params": {"cmd": "echo ${secrets.api_token}"}}]}
    with api.client("author") as client:
        run_id = client.post("/api/v1/runs", json={"workflow": workflow}).json()["run_id"]
        run = wait_run(client, run_id)
        assert run["status"] == "succeeded"
        assert run["steps"][0]["params"] == {"auth": "Bearer ***"}
        assert run["steps"][0]["outputs"] == {"auth": "Bearer ***"}
        assert run["steps"][1]["outputs"]["stdout"] == "***\n"
        texts = [json.dumps(run), client.get(f"/api/v1/runs/{run_id}/logs").text,
                 json.dumps(client.get(f"/api/v1/workflows/{run_id}").json())]
    db = pymongo.MongoClient(api.env["CHORDFLOW_MONGO_URL"])[api.env["CHORDFLOW_MONGO_DB"]]
    for name in ("runs", "steps", "events", "workflows"):
        texts.append(json.dumps(list(db[name].find({})), default=str))
    db.client.close()
    assert all(TEST_SECRET not in text for text in texts)


def test_auth_off_only_when_asked_and_with_a_warning(api: Api, tmp_path) -> None:
    log = tmp_path / "dev-api.log"
    proc, url = start_api({**api.env, "CHORDFLOW_API_AUTH": "false"}, log)
    try:
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            assert anonymous.get("/api/v1/runs").status_code == 200
        assert "API authentication is OFF" in log.read_text()
    finally:
        stop_group(proc)


def test_ready_names_what_is_down(api: Api, tmp_path) -> None:
    from tests.servers import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    env = {**api.env, "CHORDFLOW_BROKER_URL": dead, "CHORDFLOW_RESULT_BACKEND": dead}
    proc, url = start_api(env, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            response = anonymous.get("/api/v1/ready")
            assert anonymous.get("/api/v1/health").status_code == 200
    finally:
        stop_group(proc)
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready: broker unreachable"
    assert body["checks"]["mongodb"] == "ok" and body["checks"]["broker"].startswith(
        "unreachable")
