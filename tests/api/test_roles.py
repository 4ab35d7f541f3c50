"""Roles (viewer < operator < author < admin) and the limits on failed authentication,
on a real ``chordflow api`` with real workers, Redis and the MongoDB-protocol server.

Two tests here are single-function unit tests: the failure budget on a fake clock, and
the order of the key checks with a spy on the scrypt (no other way to count hashes).
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pymongo.errors
import pytest
from chordflow.api import keys as keys_module
from chordflow.api.auth_limits import AuthLimits, FailureBudget
from chordflow.api.keys import CACHE_SECONDS, ApiKeys
from chordflow.api.security import Role, check_token
from fastapi import HTTPException

from tests.api.conftest import CHORDFLOW, ROLES, Api, make_key, start_api
from tests.api.test_runs import unique, wait_run
from tests.servers import ROOT, free_port, stop_group

#: What operators may use inline by default: the built-ins that run no caller's code
#: (written out, so that a module that runs code cannot join the list unnoticed).
DEFAULT_OPERATOR_MODULES = ("echo, elasticsearch, file, filter, http, jit, job, kafka, kt, "
                            "mongodb, notify, procedures, prometheus, rclone, table")


def key_id(token: str) -> str:
    return token.split("_", 2)[1]


def bash_workflow(name: str, cmd: str = "echo hi") -> dict[str, Any]:
    return {"name": name, "variables": {"who": "nobody"}, "steps": [
        {"name": "greet", "module": "echo", "params": {"who": "${variables.who}"}},
        {"name": "x", "module": "bash", "depends_on": ["greet"],
         "params": {"cmd": cmd}}]}


def mongo(api: Api) -> Any:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(api.env["CHORDFLOW_MONGO_URL"])
    return client, client[api.env["CHORDFLOW_MONGO_DB"]]


# -- operators: inline only with safe modules; stored workflows whatever they use --------

def test_an_operator_cannot_submit_an_inline_bash_workflow(api: Api) -> None:
    name = unique("op-bash")
    with api.client("operator") as op:
        refused = op.post("/api/v1/runs", json={"workflow": bash_workflow(name)})
        assert refused.status_code == 403, refused.text
        assert refused.json()["detail"] == (
            "key 'test-operator' is operator: step 'x' uses module 'bash', which operators "
            f"may not submit (CHORDFLOW_OPERATOR_MODULES: {DEFAULT_OPERATOR_MODULES}); an "
            "author key can")
        # The DAG-engine dialect's submit endpoint is inline too (any dialect).
        dialect = {"workflow_name": unique("op-dialect"), "steps": [
            {"step_name": "s1", "app": "echo"},
            {"step_name": "s2", "app": "bash", "params": {"cmd": "id"}}]}
        compat = op.post("/api/v1/workflows/submit", json=dialect)
        assert compat.status_code == 403, compat.text
        assert "step 's2' uses module 'bash'" in compat.json()["detail"]
        # Foreach steps count, and every refused step is named.
        each = {"name": unique("op-each"), "steps": [
            {"name": "a", "module": "echo"},
            {"name": "each", "module": "python", "foreach": [1, 2],
             "params": {"function": "os.getcwd"}},
            {"name": "z", "module": "bash", "params": {"cmd": "id"}}]}
        refused = op.post("/api/v1/workflows/submit", json=each)
        assert refused.status_code == 403, refused.text
        assert "step 'each' uses module 'python', step 'z' uses module 'bash', which" \
            in refused.json()["detail"]
        # Nothing was recorded for either.
        assert op.get("/api/v1/runs", params={"workflow": name}).json()["runs"] == []
        # Validating is reading: fine.
        assert op.post("/api/v1/validate", json=bash_workflow(name)).json()["valid"]


def test_an_operator_submits_inline_echo_and_filter(api: Api) -> None:
    workflow = {"name": unique("op-safe"), "steps": [
        {"name": "a", "module": "echo", "params": {"rows": [{"n": 2}, {"n": 1}]}},
        {"name": "each", "module": "echo", "foreach": [1, 2], "params": {"v": "${item}"}},
        {"name": "b", "module": "filter", "method": "sort", "depends_on": ["a"],
         "params": {"data": "${steps.a.outputs.rows}", "by": "n"}}]}
    with api.client("operator") as op:
        created = op.post("/api/v1/runs", json={"workflow": workflow})
        assert created.status_code == 201, created.text
        run = wait_run(op, created.json()["run_id"])
    assert run["status"] == "succeeded", run
    assert [s["outputs"] for s in run["steps"] if s["name"] == "b"] == [
        {"data": [{"n": 1}, {"n": 2}], "count": 2}]


def test_the_admin_chooses_the_operator_modules(api: Api, tmp_path: Path) -> None:
    with api.client("viewer") as viewer:
        listed = {m["name"]: m["runs_code"] for m in viewer.get("/api/v1/modules").json()}
    assert {name for name, runs in listed.items() if not runs} == set(
        DEFAULT_OPERATOR_MODULES.split(", "))
    assert listed["bash"] and listed["python"]
    env = {**api.env, "CHORDFLOW_OPERATOR_MODULES": "echo, bash"}
    proc, url = start_api(env, tmp_path / "api.log")
    try:
        headers = {"Authorization": f"Bearer {api.keys['operator']}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as op:
            allowed = op.post("/api/v1/runs", json={"workflow": bash_workflow(
                unique("op-allowed"), "echo allowed")})
            assert allowed.status_code == 201, allowed.text
            assert wait_run(op, allowed.json()["run_id"])["status"] == "succeeded"
            http = {"name": unique("op-http"), "steps": [
                {"name": "get", "module": "http", "params": {"url": "http://127.0.0.1:9"}}]}
            refused = op.post("/api/v1/runs", json={"workflow": http})
            assert refused.status_code == 403, refused.text
            assert "step 'get' uses module 'http', which operators may not submit " \
                "(CHORDFLOW_OPERATOR_MODULES: bash, echo)" in refused.json()["detail"]
    finally:
        stop_group(proc)


def test_an_operator_runs_a_stored_bash_workflow_an_author_wrote(api: Api) -> None:
    name = unique("stored-bash")
    with api.client("author") as author, api.client("operator") as op:
        stored = author.post("/api/v1/workflows",
                             json=bash_workflow(name, "echo hello ${variables.who}"))
        assert stored.status_code == 201, stored.text
        by_name = op.post(f"/api/v1/workflows/{name}/runs",
                          json={"variables": {"who": "operator"}})
        assert by_name.status_code == 201, by_name.text
        via_runs = op.post("/api/v1/runs", json={"name": name})
        assert via_runs.status_code == 201, via_runs.text
        first = wait_run(op, by_name.json()["run_id"])
        second = wait_run(op, via_runs.json()["run_id"])
        assert first["status"] == second["status"] == "succeeded", (first["steps"], second["steps"])
        assert first["steps"][1]["outputs"]["stdout"] == "hello operator\n"
        # Only an author may stop it from running; an operator may not run it then.
        assert op.post(f"/api/v1/workflows/{name}/disable").status_code == 403
        assert author.post(f"/api/v1/workflows/{name}/disable").status_code == 200
        assert op.post(f"/api/v1/workflows/{name}/runs").status_code == 409
        # Re-running a failed run an author submitted is an operator's job.
        failing = author.post("/api/v1/runs", json={
            "workflow": bash_workflow(unique("rerun"), "exit 3")}).json()["run_id"]
        assert wait_run(op, failing)["status"] == "failed"
        rerun = op.post(f"/api/v1/runs/{failing}/rerun")
        assert rerun.status_code == 200, rerun.text


def test_operators_cannot_change_stored_workflows_and_authors_can(api: Api) -> None:
    name, other = unique("authored"), unique("authored")
    document = {"name": name, "steps": [{"name": "a", "module": "echo"}]}
    base = "/api/v1/workflows"
    with api.client("author") as author, api.client("operator") as op:
        changes: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", base, {**document, "name": other}),
            ("PUT", f"{base}/{name}", document),
            ("POST", f"{base}/{name}/rename", {"new_name": unique("renamed")}),
            ("POST", f"{base}/{name}/disable", None),
            ("POST", f"{base}/{name}/enable", None),
            ("DELETE", f"{base}/{name}", None),
        ]
        assert author.post(base, json=document).status_code == 201
        for method, path, body in changes:
            refused = op.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["detail"] == \
                "this needs the author role; key 'test-operator' is operator"
        assert op.get(f"{base}/{name}").json()["version"] == 1  # nothing changed
        assert op.get(f"{base}/{other}").status_code == 404
        for method, path, body in changes:
            if path.endswith("/rename"):
                continue  # keep the name for the next calls
            done = author.request(method, path, json=body)
            assert done.status_code in (200, 201), (method, path, done.text)
        assert author.get(f"{base}/{name}").status_code == 404  # deleted
        assert author.get(f"{base}/{other}").json()["created_by"] == "test-author"


def test_an_author_cannot_manage_keys(api: Api) -> None:
    with api.client("author") as author, api.client("admin") as admin:
        target = key_id(api.keys["viewer"])
        for method, path, body in [
                ("GET", "/api/v1/keys", None),
                ("POST", "/api/v1/keys", {"name": "sneaky", "role": "admin"}),
                ("PATCH", f"/api/v1/keys/{target}", {"role": "admin"}),
                ("DELETE", f"/api/v1/keys/{target}", None),
                ("GET", "/api/v1/audit", None)]:
            refused = author.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "this needs the admin role; key 'test-author' is author" in \
                refused.json()["detail"]
        keys = {k["key_id"]: k for k in admin.get("/api/v1/keys").json()}
    assert keys[target]["role"] == "viewer" and not keys[target]["revoked_at"]
    assert "sneaky" not in {k["name"] for k in keys.values()}


def test_a_bash_step_cannot_mint_a_key(api: Api) -> None:
    """The worker has the store's address; a step's process does not (no CHORDFLOW_*),
    so ``chordflow keys create`` in a step cannot reach the keys."""
    name = unique("minted")
    cmd = (f"echo \"chordflow settings: $(env | grep -c '^CHORDFLOW_')\"; "
           f"{CHORDFLOW} keys create --name {name} --role admin --json")
    workflow = {"name": unique("mint"), "steps": [
        {"name": "mint", "module": "bash", "timeout": 60, "params": {"cmd": cmd}}]}
    with api.client("author") as author:
        created = author.post("/api/v1/runs", json={"workflow": workflow})
        assert created.status_code == 201, created.text
        run = wait_run(author, created.json()["run_id"], timeout=90)
        logs = author.get(f"/api/v1/runs/{run['run_id']}/logs").text
    assert run["status"] == "failed", run
    step = run["steps"][0]
    assert step["status"] == "failed"
    assert "chordflow settings: 0" in logs, logs
    assert "27017" in logs and "cf_" not in logs, logs  # it tried the default address
    client, db = mongo(api)
    try:
        assert db["api_keys"].count_documents({"name": name}) == 0
    finally:
        client.close()


# -- every endpoint, every role -----------------------------------------------------------

#: The least role of every endpoint (None: no key needed). A new endpoint fails the walk
#: below until it is classified here.
MINIMUM: dict[tuple[str, str], str | None] = {
    ("GET", "/api/v1/health"): None,
    ("GET", "/api/v1/ready"): None,
    ("GET", "/metrics"): None,
    ("POST", "/api/v1/validate"): "viewer",
    ("GET", "/api/v1/modules"): "viewer",
    ("POST", "/api/v1/runs"): "operator",
    ("GET", "/api/v1/runs"): "viewer",
    ("GET", "/api/v1/runs/{run_id}"): "viewer",
    ("POST", "/api/v1/runs/{run_id}/cancel"): "operator",
    ("POST", "/api/v1/runs/{run_id}/rerun"): "operator",
    ("GET", "/api/v1/runs/{run_id}/events"): "viewer",
    ("GET", "/api/v1/runs/{run_id}/logs"): "viewer",
    ("GET", "/api/v1/runs/{run_id}/graph"): "viewer",
    ("GET", "/api/v1/runs/counts"): "viewer",
    ("GET", "/api/v1/workers"): "viewer",
    ("POST", "/api/v1/workflows/submit"): "operator",
    ("GET", "/api/v1/workflows/{workflow_id}/status"): "viewer",
    ("GET", "/api/v1/workflows/{workflow_id}"): "viewer",
    ("PUT", "/api/v1/workflows/{workflow_id}"): "author",
    ("DELETE", "/api/v1/workflows/{workflow_id}"): "author",
    ("POST", "/api/v1/workflows/{workflow_id}/cancel"): "operator",
    ("POST", "/api/v1/workflows"): "author",
    ("GET", "/api/v1/workflows"): "viewer",
    ("POST", "/api/v1/workflows/{name}/rename"): "author",
    ("POST", "/api/v1/workflows/{name}/enable"): "author",
    ("POST", "/api/v1/workflows/{name}/disable"): "author",
    ("GET", "/api/v1/workflows/{name}/versions"): "viewer",
    ("GET", "/api/v1/workflows/{name}/versions/{version}"): "viewer",
    ("GET", "/api/v1/workflows/{name}/diff"): "viewer",
    ("POST", "/api/v1/workflows/{name}/runs"): "operator",
    ("POST", "/api/v1/schedules"): "operator",
    ("GET", "/api/v1/schedules"): "viewer",
    ("GET", "/api/v1/schedules/{schedule_id}"): "viewer",
    ("PATCH", "/api/v1/schedules/{schedule_id}"): "operator",
    ("DELETE", "/api/v1/schedules/{schedule_id}"): "operator",
    ("POST", "/api/v1/schedules/{schedule_id}/trigger"): "operator",
    ("GET", "/api/v1/keys"): "admin",
    ("POST", "/api/v1/keys"): "admin",
    ("PATCH", "/api/v1/keys/{key_id}"): "admin",
    ("DELETE", "/api/v1/keys/{key_id}"): "admin",
    ("PUT", "/api/v1/keys/{key_id}/token"): "admin",
    ("DELETE", "/api/v1/keys/{key_id}/token"): "admin",
    ("GET", "/api/v1/audit"): "admin",
    ("GET", "/api/v1/remotes"): "viewer",
    ("GET", "/api/v1/remotes/{name}"): "viewer",
    ("POST", "/api/v1/remotes/{name}/check"): "operator",
    ("POST", "/api/v1/transfers"): "operator",
    ("POST", "/api/v1/workflows/submit-cwl"): "operator",
    ("GET", "/api/v1/connections"): "admin",
    ("GET", "/api/v1/connections/{name}"): "admin",
    ("PUT", "/api/v1/connections/{name}"): "admin",
    ("DELETE", "/api/v1/connections/{name}"): "admin",
    ("POST", "/api/v1/connections/{name}/check"): "admin",
    ("POST", "/api/v1/jit/events"): "operator",
    ("GET", "/api/v1/jit/tiers"): "viewer",
    ("GET", "/api/v1/jit/tiers/{name}"): "viewer",
    ("PATCH", "/api/v1/jit/tiers/{name}"): "admin",
    ("GET", "/flow"): "viewer",
    ("POST", "/flow"): "author",
    ("GET", "/flow/{name}"): "viewer",
    ("PUT", "/flow/{name}"): "author",
    ("DELETE", "/flow/{name}"): "author",
    ("PUT", "/flow/{name}/enable"): "author",
    ("PUT", "/flow/{name}/disable"): "author",
    ("PUT", "/flow/{name}/rename"): "author",
    ("POST", "/flow/{name}/run"): "operator",
    ("GET", "/flow/{name}/runs"): "viewer",
    ("GET", "/run/{run_id}"): "viewer",
    ("GET", "/api/v1/backup"): "admin",
    ("POST", "/api/v1/restore"): "admin",
}


def test_every_endpoint_answers_each_role_as_classified(api: Api) -> None:
    """For no key and each role: 401 without a key, 403 exactly below the endpoint's
    role, and never a 5xx. Path parameters name nothing that exists (404 or 422)."""
    missing = f"none-{uuid.uuid4().hex[:8]}"
    with api.client(None) as anonymous:
        schema = anonymous.get("/openapi.json").json()
    operations = {(method.upper(), path) for path, ops in schema["paths"].items()
                  for method in ops}
    assert operations - MINIMUM.keys() == set(), "classify these endpoints in MINIMUM"
    assert MINIMUM.keys() - operations == set(), "these endpoints are gone"
    for role in (None, *ROLES):
        rank = -1 if role is None else Role(role).rank
        with api.client(role) as client:
            for method, path in sorted(operations):
                needed = MINIMUM[(method, path)]
                response = client.request(method, re.sub(r"\{[^}]+\}", missing, path),
                                          json={})
                where = (role, method, path, response.status_code, response.text[:300])
                assert response.status_code < 500, where
                if needed is None:
                    assert response.status_code not in (401, 403), where
                elif role is None:
                    assert response.status_code == 401, where
                elif rank < Role(needed).rank:
                    assert response.status_code == 403, where
                    assert f"this needs the {needed} role" in response.json()["detail"]
                else:
                    assert response.status_code not in (401, 403), where


# -- changing a key's role ---------------------------------------------------------------

def keys_cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHORDFLOW, "keys", *args], env=api.env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_keys_role_changes_a_role_and_it_takes_effect(api: Api) -> None:
    key_name = unique("promoted")
    token = make_key(api.env, key_name, "operator")
    kid = key_id(token)
    headers = {"Authorization": f"Bearer {token}"}
    document = {"name": unique("promoted"), "steps": [{"name": "a", "module": "bash",
                                                        "params": {"cmd": "true"}}]}
    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
        assert client.post("/api/v1/workflows", json=document).status_code == 403
        done = keys_cli(api, "role", kid, "author")
        assert done.returncode == 0, done.stderr
        assert f"key {kid} is now author" in done.stdout
        changed = time.monotonic()
        while (created := client.post("/api/v1/workflows", json=document)).status_code \
                == 403:  # the API remembers a checked key for CACHE_SECONDS
            assert time.monotonic() - changed < CACHE_SECONDS + 5, created.text
            time.sleep(0.5)
        assert created.status_code == 201, created.text
        # Over HTTP, an admin's change applies at once on that process.
        with api.client("admin") as admin:
            patched = admin.patch(f"/api/v1/keys/{kid}", json={"role": "viewer"})
            assert patched.status_code == 200 and patched.json()["role"] == "viewer"
            assert admin.patch(f"/api/v1/keys/{kid}", json={"role": "boss"}).status_code \
                == 422
            assert admin.patch("/api/v1/keys/nope", json={"role": "viewer"}).status_code \
                == 404
        assert client.post(f"/api/v1/workflows/{document['name']}/disable").json() == {
            "detail": f"this needs the author role; key '{key_name}' is viewer",
            "code": "forbidden"}
    bad_role = keys_cli(api, "role", kid, "boss")
    assert bad_role.returncode == 2
    # Refused by the parser, which lists the choices (in a box that may wrap).
    flat = " ".join(bad_role.stderr.replace("│", " ").split())
    assert "'boss' is not one of" in flat and "author" in flat, bad_role.stderr
    nobody = keys_cli(api, "role", "0000nokey000", "admin")
    assert nobody.returncode == 2 and "no active key 0000nokey000" in nobody.stderr
    assert keys_cli(api, "revoke", kid).returncode == 0
    revoked = keys_cli(api, "role", kid, "admin")
    assert revoked.returncode == 2 and "no active key" in revoked.stderr


# -- failed authentications --------------------------------------------------------------

#: The failure budget of the API the limit tests start (per address, per key id).
BUDGET = 5


@pytest.fixture(scope="module")
def limited(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An API of its own with a small failure budget, so the session's is not spent."""
    log = tmp_path_factory.mktemp("limited") / "api.log"
    proc, url = start_api({**api.env, "CHORDFLOW_AUTH_FAILURES_PER_MINUTE": str(BUDGET)},
                          log)
    try:
        yield url
    finally:
        stop_group(proc)


def call(url: str, token: str, address: str = "10.0.0.1") -> httpx.Response:
    """GET /runs with ``token``, as if from ``address`` (uvicorn trusts the
    X-Forwarded-For of a proxy on 127.0.0.1)."""
    return httpx.get(f"{url}/api/v1/runs", params={"limit": 1}, timeout=30, headers={
        "Authorization": f"Bearer {token}", "X-Forwarded-For": address})


def spend(url: str, kid: str) -> None:
    """Wrong secrets for ``kid`` from ever new addresses until it is over budget."""
    for i in range(BUDGET + 1):
        address = f"10.3.{i}.{uuid.uuid4().int % 250}"
        guess = call(url, f"cf_{kid}_{secrets.token_urlsafe(32)}", address)
        if guess.status_code == 429:
            return
        assert guess.status_code == 401, guess.text
    raise AssertionError(f"key id {kid} never got 429")


def test_wrong_secrets_for_a_key_id_get_429_and_its_owner_keeps_working(
        api: Api, limited: str) -> None:
    owner, idle = api.keys["operator"], api.keys["viewer"]
    assert call(limited, owner, "10.1.0.1").status_code == 200  # checked: now proven
    guesses = [call(limited, f"cf_{key_id(owner)}_{secrets.token_urlsafe(32)}",
                    f"10.1.1.{i}") for i in range(BUDGET)]  # an attack from many addresses
    assert [g.status_code for g in guesses] == [401] * BUDGET
    refused = call(limited, f"cf_{key_id(owner)}_{secrets.token_urlsafe(32)}", "10.1.2.1")
    assert refused.status_code == 429, refused.text
    assert refused.json()["detail"].startswith(
        f"too many failed authentications for key id '{key_id(owner)}'; try again in ")
    assert 1 <= int(refused.headers["retry-after"]) <= 60 // BUDGET + 1
    time.sleep(CACHE_SECONDS + 0.5)  # past the valid-key cache: proven still counts
    spend(limited, key_id(owner))  # the budget refilled a little meanwhile
    for _ in range(3):
        started = time.monotonic()
        assert call(limited, owner, "10.1.3.1").status_code == 200
        assert time.monotonic() - started < 1.0
    # A key not used on this process while its id is attacked cannot be told from the
    # attacker without a scrypt: refused until its budget refills (documented).
    spend(limited, key_id(idle))
    assert call(limited, idle, "10.1.5.1").status_code == 429
    assert call(api.url, idle).status_code == 200  # another process: its own budgets


def test_unknown_ids_from_one_address_get_429(api: Api, limited: str) -> None:
    valid = api.keys["author"]
    assert call(limited, valid, "10.2.0.1").status_code == 200  # now cached and proven
    guesses = [call(limited, f"cf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
                    "10.2.0.1") for _ in range(BUDGET)]
    assert [g.status_code for g in guesses] == [401] * BUDGET
    refused = call(limited, f"cf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
                   "10.2.0.1")
    assert refused.status_code == 429, refused.text
    assert "too many failed authentications from address 10.2.0.1" in \
        refused.json()["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    started = time.monotonic()
    assert call(limited, valid, "10.2.0.1").status_code == 200  # same address, valid key
    assert time.monotonic() - started < 1.0
    other = call(limited, f"cf_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
                 "10.2.0.2")
    assert other.status_code == 401  # the budget is the address's
    malformed = call(limited, "cf_nothing", "10.2.0.1")
    assert malformed.status_code == 401  # costs nothing, so it is not counted either


def test_failure_budget_spends_refills_and_refunds() -> None:
    now = [1000.0]
    budget = FailureBudget(3, clock=lambda: now[0], max_subjects=4)
    assert budget.wait("a") == 0.0
    for _ in range(3):
        budget.spend("a")
    assert budget.wait("a") == pytest.approx(20.0)  # 3 a minute: one every 20 s
    assert budget.wait("b") == 0.0  # subjects are apart
    now[0] += 10
    assert budget.wait("a") == pytest.approx(10.0)
    budget.refund("a")
    assert budget.wait("a") == 0.0
    now[0] += 3600
    assert budget.wait("a") == 0.0
    budget.spend("a")
    budget.spend("a")
    budget.spend("a")
    assert budget.wait("a") > 0  # refilled to 3, not beyond
    for subject in "bcdef":
        budget.spend(subject)
    assert len(budget._buckets) <= 4  # bounded; the oldest went first
    assert "a" not in budget._buckets


def test_check_token_hashes_only_live_keys_within_budget(
        mongo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The order of the checks, counted on the scrypt itself (a spy: the one way to see
    a hash that was not computed)."""
    hashed: list[str] = []
    real = keys_module._hash

    def spy(secret: str, salt: bytes) -> bytes:
        hashed.append(secret)
        return real(secret, salt)

    monkeypatch.setattr(keys_module, "_hash", spy)
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(mongo_url)
    try:
        keys = ApiKeys(client[f"limits{uuid.uuid4().hex[:8]}"])
        good_id, good = keys.create(unique("good"), Role.OPERATOR)
        gone_id, gone = keys.create(unique("gone"), Role.OPERATOR)
        keys.revoke(gone_id)
        hashed.clear()
        now = [0.0]
        limits = AuthLimits(3, clock=lambda: now[0])

        def status(token: str, address: str = "a1", keys: ApiKeys = keys) -> int:
            try:
                check_token(token, address, keys, limits)
            except HTTPException as exc:
                return exc.status_code
            return 200

        assert status("garbage") == 401 and status("cf_x_" + "y" * 300) == 401
        assert status(f"cf_{secrets.token_hex(6)}_secret") == 401  # unknown id
        assert status(gone) == 401  # revoked
        assert hashed == []
        assert status(good) == 200 and len(hashed) == 1
        assert status(good) == 200 and len(hashed) == 1  # cached
        wrong = f"cf_{good_id}_wrong"
        assert [status(wrong, f"b{i}") for i in range(3)] == [401] * 3
        assert len(hashed) == 4
        assert status(wrong, "b9") == 429 and len(hashed) == 4  # refused before scrypt
        fresh = ApiKeys(keys.collection.database)  # another cache: the good key is not
        assert status(good, "c1", fresh) == 200  # in it, but was proven here
        assert len(hashed) == 5
        # Unknown ids spend the address's budget: a1 spent two above (an unknown id,
        # the revoked key), so one more is all it has.
        assert [status(f"cf_{secrets.token_hex(6)}_s", "a1") for _ in range(2)] == \
            [401, 429]
        assert status(f"cf_{secrets.token_hex(6)}_s", "a2") == 401
        now[0] += 20  # one failure a 20 s back
        assert status(wrong, "b9") == 401 and len(hashed) == 6
        assert status(wrong, "b9") == 429 and len(hashed) == 6
        # A check the store could not answer (503) is no failure: nothing is spent.
        dead: pymongo.MongoClient[Any] = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{free_port()}", serverSelectionTimeoutMS=100)
        down = ApiKeys(dead["down"])
        for _ in range(4):
            with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
                check_token(f"cf_{secrets.token_hex(6)}_s", "d1", down, limits)
        dead.close()
        assert status(f"cf_{secrets.token_hex(6)}_s", "d1") == 401
    finally:
        client.close()  # no drop: the test server's collections are shared

