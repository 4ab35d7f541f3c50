"""Stored workflows over HTTP: versions, diff, soft delete, rename, enable/disable and
runs by name, against a real uvicorn server, real workers, Redis and MongoDB."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pymongo
import pytest
from chordflow.api.library import (
    STALE_CLAIM_SECONDS,
    WorkflowDisabled,
    WorkflowExists,
    WorkflowLibrary,
    WorkflowMissing,
)
from chordflow.engine.records import now

from tests.api.conftest import Api
from tests.api.test_runs import wait_run

BASE = "/api/v1/workflows"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def doc(name: str, x: Any = 1, *extra: dict[str, Any]) -> dict[str, Any]:
    """A one-step canonical workflow (``echo`` returns its params as outputs)."""
    return {"name": name, "steps": [{"name": "a", "module": "echo", "params": {"x": x}},
                                    *extra]}


def create(client: httpx.Client, document: dict[str, Any]) -> dict[str, Any]:
    response = client.post(BASE, json=document)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def audit_entries(api: Api, target: str) -> list[dict[str, Any]]:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(api.env["CHORDFLOW_MONGO_URL"])
    try:
        collection = client[api.env["CHORDFLOW_MONGO_DB"]]["audit"]
        return list(collection.find({"target": target}).sort("ts", 1))
    finally:
        client.close()


def test_create_list_and_get(api: Api) -> None:
    name = unique("create")
    document = doc(name)
    with api.client("author") as client:
        body = create(client, document)
        assert (body["name"], body["version"], body["enabled"], body["deleted"]) == \
            (name, 1, True, False)
        assert body["document"] == document and body["digest"].startswith("sha256:")
        assert body["created_by"] == "test-author" and body["created_at"]
        again = client.post(BASE, json=doc(name, 2))
        assert again.status_code == 409, again.text
        listed = client.get(BASE).json()["workflows"]
        mine = [w for w in listed if w["name"] == name]
        assert len(mine) == 1 and mine[0]["version"] == 1 and mine[0]["enabled"]
        assert "document" not in mine[0] and mine[0]["updated_at"]
        # GET /workflows/{name} (the compatibility path) answers with the same shape.
        got = client.get(f"{BASE}/{name}")
        assert got.status_code == 200, got.text
        assert got.json() == body
        assert client.get(f"{BASE}/{unique('nothing')}").status_code == 404


def test_an_invalid_workflow_is_not_stored(api: Api) -> None:
    name = unique("invalid")
    bad = {"name": name, "steps": [
        {"name": "a", "module": "nope"},
        {"name": "b", "module": "echo", "depends_on": ["missing"]}]}
    with api.client("author") as client:
        response = client.post(BASE, json=bad)
        assert response.status_code == 422, response.text
        located = {(e["step"], e["field"]) for e in response.json()["errors"]}
        assert {("a", "module"), ("b", "depends_on")} <= located
        assert client.get(f"{BASE}/{name}/versions").status_code == 404
        create(client, doc(name))
        update = client.put(f"{BASE}/{name}", json={"steps": [{"name": "a"}]})
        assert update.status_code == 422
        assert client.get(f"{BASE}/{name}/versions").json()["versions"][-1]["version"] == 1


def test_every_update_is_a_new_version(api: Api) -> None:
    name = unique("versions")
    with api.client("author") as client:
        create(client, doc(name, 1))
        second = client.put(f"{BASE}/{name}", json=doc(name, 2))
        assert second.status_code == 200, second.text
        assert second.json()["version"] == 2 and second.json()["document"] == doc(name, 2)
        # The document's own name does not rename: the path names the workflow.
        third = client.put(f"{BASE}/{name}", json=doc("other-name", 3)).json()
        assert (third["name"], third["version"]) == (name, 3)
        versions = client.get(f"{BASE}/{name}/versions").json()
        assert versions["name"] == name
        assert [v["version"] for v in versions["versions"]] == [1, 2, 3]
        assert len({v["digest"] for v in versions["versions"]}) == 3
        two = client.get(f"{BASE}/{name}/versions/2").json()
        assert two["version"] == 2 and two["document"] == doc(name, 2)
        assert two["created_by"] == "test-author"
        assert client.get(f"{BASE}/{name}/versions/9").status_code == 404
        assert client.get(f"{BASE}/{unique('none')}/versions/1").status_code == 404
        listed = [w for w in client.get(BASE).json()["workflows"] if w["name"] == name]
        assert listed[0]["version"] == 3
        assert client.put(f"{BASE}/{unique('none')}", json=doc("x")).status_code == 404


def test_concurrent_updates_get_distinct_versions(api: Api) -> None:
    name = unique("concurrent")
    with api.client("author") as client:
        create(client, doc(name))

    def update(i: int) -> int:
        with api.client("author") as c:
            response = c.put(f"{BASE}/{name}", json=doc(name, i))
            assert response.status_code == 200, response.text
            return int(response.json()["version"])

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(update, range(8)))
    assert sorted(numbers) == list(range(2, 10))
    with api.client("viewer") as client:
        versions = client.get(f"{BASE}/{name}/versions").json()["versions"]
        assert [v["version"] for v in versions] == list(range(1, 10))
        assert client.get(f"{BASE}/{name}").json()["version"] == 9


def test_diff_between_versions(api: Api) -> None:
    name = unique("diff")
    v1 = {"name": name, "variables": {"n": 1}, "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "echo", "params": {"y": 1}, "depends_on": ["a"]},
        {"name": "keep", "module": "echo"}]}
    v2 = {"name": name, "variables": {"n": 2}, "steps": [
        {"name": "a", "module": "echo", "params": {"x": 2}, "retries": 3},
        {"name": "keep", "module": "echo"},
        {"name": "c", "module": "echo", "depends_on": ["a"]}]}
    with api.client("author") as client:
        create(client, v1)
        client.put(f"{BASE}/{name}", json=v2).raise_for_status()
        response = client.get(f"{BASE}/{name}/diff", params={"from": 1, "to": 2})
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["from_version"], body["to_version"], body["identical"]) == (1, 2, False)
        assert body["diff"].startswith(f"--- {name} version 1\n+++ {name} version 2\n")
        lines = body["diff"].splitlines()
        assert '-        "x": 1' in lines and '+        "x": 2' in lines
        assert '-    "n": 1' in lines and '+    "n": 2' in lines
        assert '+      "retries": 3' in lines and '-      "name": "b",' in lines
        summary = body["summary"]
        assert summary["added"] == ["c"] and summary["removed"] == ["b"]
        assert summary["changed"] == [{"step": "a", "fields": ["params", "retries"]}]
        assert summary["unchanged"] == ["keep"]
        assert summary["workflow_fields"] == ["variables"]
        # Defaults: the latest against the one before it.
        assert client.get(f"{BASE}/{name}/diff").json()["diff"] == body["diff"]
        same = client.get(f"{BASE}/{name}/diff", params={"from": 2, "to": 2}).json()
        assert same["identical"] and same["diff"] == "" and same["summary"]["changed"] == []
        assert client.get(f"{BASE}/{name}/diff", params={"from": 1, "to": 5}
                          ).status_code == 404


def test_a_stored_workflow_runs_to_completion(api: Api) -> None:
    name = unique("run")
    v1 = {"name": name, "variables": {"greeting": "hi"}, "steps": [
        {"name": "a", "module": "echo", "params": {"say": "${variables.greeting}"}}]}
    v2 = {**v1, "steps": [{"name": "a", "module": "echo",
                           "params": {"say": "${variables.greeting}", "v": 2}}]}
    with api.client("author") as client:
        create(client, v1)
        client.put(f"{BASE}/{name}", json=v2).raise_for_status()
        created = client.post(f"{BASE}/{name}/runs", json={"variables": {"greeting": "yo"}})
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["workflow"] == name and body["links"]["self"].endswith(body["run_id"])
        run = wait_run(client, body["run_id"])
        assert run["status"] == "succeeded", run
        assert (run["workflow"], run["version"], run["trigger"]) == (name, "2", "api")
        assert run["steps"][0]["outputs"] == {"say": "yo", "v": 2}
        older = client.post(f"{BASE}/{name}/runs", json={"version": 1}).json()
        run = wait_run(client, older["run_id"])
        assert run["status"] == "succeeded" and run["version"] == "1"
        assert run["steps"][0]["outputs"] == {"say": "hi"}
        # No body at all: the latest version with its default variables.
        bare = client.post(f"{BASE}/{name}/runs")
        assert bare.status_code == 201, bare.text
        # POST /runs by name runs the same stored workflow.
        by_name = client.post("/api/v1/runs", json={"name": name, "version": "1"})
        assert by_name.status_code == 201, by_name.text
        assert wait_run(client, by_name.json()["run_id"])["version"] == "1"
        assert client.post(f"{BASE}/{name}/runs", json={"version": 7}).status_code == 404
        unknown = client.post(f"{BASE}/{name}/runs", json={"variables": {"nope": 1}})
        assert unknown.status_code == 422


def test_run_honours_the_idempotency_key(api: Api) -> None:
    name = unique("idem")
    key = unique("key")
    with api.client("author") as client:
        create(client, doc(name))
        first = client.post(f"{BASE}/{name}/runs", json={}, headers={"Idempotency-Key": key})
        assert first.status_code == 201, first.text
        again = client.post(f"{BASE}/{name}/runs", json={}, headers={"Idempotency-Key": key})
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["run_id"] == first.json()["run_id"]


def test_other_dialects_run_under_the_stored_name(api: Api) -> None:
    dag = {"workflow_name": unique("dag"), "base_context": {"who": "dag"}, "steps": [
        {"step_name": "first", "app": "echo", "params": {"who": "${who}"}}]}
    procedures = {"name": unique("procedures"), "procedures": [
        {"name": "p", "mod": "echo", "method": "run", "params": {"n": 5}}]}
    with api.client("author") as client:
        for document, outputs in ((dag, {"who": "dag"}), (procedures, {"n": 5})):
            name = unique("dialect")
            created = client.post(BASE, json=document)
            assert created.status_code == 201, created.text
            # Created under the document's name, then renamed: runs carry the new name.
            old = created.json()["name"]
            client.post(f"{BASE}/{old}/rename", json={"new_name": name}).raise_for_status()
            assert client.get(f"{BASE}/{name}/versions/1").json()["document"] == document
            run = client.post(f"{BASE}/{name}/runs", json={}).json()
            finished = wait_run(client, run["run_id"])
            assert finished["status"] == "succeeded", finished
            assert finished["workflow"] == name
            assert finished["steps"][0]["outputs"] == outputs


def test_disabled_workflows_do_not_run(api: Api) -> None:
    name = unique("disabled")
    with api.client("author") as client:
        create(client, doc(name))
        disabled = client.post(f"{BASE}/{name}/disable")
        assert disabled.status_code == 200 and disabled.json()["enabled"] is False
        refused = client.post(f"{BASE}/{name}/runs", json={})
        assert refused.status_code == 409 and "disabled" in refused.json()["detail"]
        assert client.post("/api/v1/runs", json={"name": name}).status_code == 409
        # Still listed, readable and editable while disabled.
        listed = [w for w in client.get(BASE).json()["workflows"] if w["name"] == name]
        assert listed[0]["enabled"] is False
        assert client.put(f"{BASE}/{name}", json=doc(name, 2)).json()["version"] == 2
        enabled = client.post(f"{BASE}/{name}/enable")
        assert enabled.status_code == 200 and enabled.json()["enabled"] is True
        run = client.post(f"{BASE}/{name}/runs", json={})
        assert run.status_code == 201, run.text
        assert wait_run(client, run.json()["run_id"])["status"] == "succeeded"
        missing = unique("none")
        assert client.post(f"{BASE}/{missing}/disable").status_code == 404
        assert client.post(f"{BASE}/{missing}/enable").status_code == 404


def test_deleted_workflows_are_gone_but_kept(api: Api) -> None:
    name = unique("deleted")
    with api.client("author") as client:
        first = create(client, doc(name))
        client.put(f"{BASE}/{name}", json=doc(name, 2)).raise_for_status()
        deleted = client.delete(f"{BASE}/{name}")
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["deleted"] is True and deleted.json()["deleted_at"]
        for response in (client.get(f"{BASE}/{name}"), client.get(f"{BASE}/{name}/versions"),
                         client.get(f"{BASE}/{name}/versions/1"),
                         client.get(f"{BASE}/{name}/diff"),
                         client.post(f"{BASE}/{name}/runs", json={}),
                         client.post("/api/v1/runs", json={"name": name}),
                         client.put(f"{BASE}/{name}", json=doc(name)),
                         client.post(f"{BASE}/{name}/enable"),
                         client.post(f"{BASE}/{name}/rename", json={"new_name": unique("x")}),
                         client.delete(f"{BASE}/{name}")):
            assert response.status_code == 404, (response.request.url, response.text)
        assert name not in [w["name"] for w in client.get(BASE).json()["workflows"]]
        everything = client.get(BASE, params={"include_deleted": True}).json()["workflows"]
        kept = [w for w in everything if w["id"] == first["id"]]
        assert kept and kept[0]["deleted"] is True and kept[0]["version"] == 2
        # The name is free again: a new workflow, starting at version 1.
        reborn = create(client, doc(name, 3))
        assert reborn["version"] == 1 and reborn["id"] != first["id"]
        assert [v["version"] for v in
                client.get(f"{BASE}/{name}/versions").json()["versions"]] == [1]


def test_rename_then_run_by_the_new_name(api: Api) -> None:
    name, new_name, other = unique("old"), unique("new"), unique("taken")
    with api.client("author") as client:
        first = create(client, doc(name))
        client.put(f"{BASE}/{name}", json=doc(name, 2)).raise_for_status()
        create(client, doc(other))
        taken = client.post(f"{BASE}/{name}/rename", json={"new_name": other})
        assert taken.status_code == 409, taken.text
        bad = client.post(f"{BASE}/{name}/rename", json={"new_name": "has space"})
        assert bad.status_code == 422
        renamed = client.post(f"{BASE}/{name}/rename", json={"new_name": new_name})
        assert renamed.status_code == 200, renamed.text
        assert (renamed.json()["name"], renamed.json()["id"]) == (new_name, first["id"])
        assert client.get(f"{BASE}/{name}/versions").status_code == 404
        assert client.post(f"{BASE}/{name}/runs", json={}).status_code == 404
        versions = client.get(f"{BASE}/{new_name}/versions").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2]
        names = [w["name"] for w in client.get(BASE).json()["workflows"]]
        assert new_name in names and name not in names
        run = client.post(f"{BASE}/{new_name}/runs", json={})
        assert run.status_code == 201, run.text
        assert run.json()["workflow"] == new_name
        finished = wait_run(client, run.json()["run_id"])
        assert (finished["status"], finished["workflow"]) == ("succeeded", new_name)
        # The old name is free for a new workflow.
        assert create(client, doc(name))["version"] == 1


def test_viewers_read_and_cannot_change(api: Api) -> None:
    name = unique("roles")
    with api.client("author") as client:
        create(client, doc(name))
        client.put(f"{BASE}/{name}", json=doc(name, 2)).raise_for_status()
    with api.client("viewer") as viewer:
        for path in (BASE, f"{BASE}/{name}", f"{BASE}/{name}/versions",
                     f"{BASE}/{name}/versions/1", f"{BASE}/{name}/diff"):
            assert viewer.get(path).status_code == 200, path
        changes = [
            viewer.post(BASE, json=doc(unique("viewer"))),
            viewer.put(f"{BASE}/{name}", json=doc(name, 3)),
            viewer.delete(f"{BASE}/{name}"),
            viewer.post(f"{BASE}/{name}/rename", json={"new_name": unique("v")}),
            viewer.post(f"{BASE}/{name}/enable"),
            viewer.post(f"{BASE}/{name}/disable"),
            viewer.post(f"{BASE}/{name}/runs", json={}),
        ]
        for response in changes:
            assert response.status_code == 403, (response.request.url, response.text)
        assert viewer.get(f"{BASE}/{name}").json()["version"] == 2
    with api.client(None) as anonymous:
        assert anonymous.get(BASE).status_code == 401
        assert anonymous.get(f"{BASE}/{name}/versions").status_code == 401
        assert anonymous.post(BASE, json=doc(unique("anon"))).status_code == 401
        assert anonymous.post(f"{BASE}/{name}/runs", json={}).status_code == 401
    with api.client("admin") as admin:
        assert admin.post(f"{BASE}/{name}/disable").status_code == 200


def test_every_change_is_audited(api: Api) -> None:
    name, new_name = unique("audited"), unique("audited-new")
    with api.client("author") as client:
        create(client, doc(name))
        client.put(f"{BASE}/{name}", json=doc(name, 2)).raise_for_status()
        client.post(f"{BASE}/{name}/disable").raise_for_status()
        client.post(f"{BASE}/{name}/enable").raise_for_status()
        client.post(f"{BASE}/{name}/rename", json={"new_name": new_name}).raise_for_status()
        run_id = client.post(f"{BASE}/{new_name}/runs", json={}).json()["run_id"]
        client.delete(f"{BASE}/{new_name}").raise_for_status()
        assert client.post(BASE, json=doc(new_name, "x")).status_code == 201
        client.post(f"{BASE}/{new_name}/disable").raise_for_status()
    with api.client("viewer") as viewer:  # refused: no entry
        assert viewer.post(f"{BASE}/{new_name}/enable").status_code == 403
    old = [(e["action"], (e["details"] or {}).get("version")) for e in audit_entries(api, name)]
    assert old == [("workflow.create", 1), ("workflow.update", 2),
                   ("workflow.disable", 2), ("workflow.enable", 2)]
    new = audit_entries(api, new_name)
    assert [e["action"] for e in new] == ["workflow.rename", "workflow.delete",
                                          "workflow.create", "workflow.disable"]
    assert new[0]["details"]["old_name"] == name and new[0]["who"] == "test-author"
    assert new[0]["role"] == "author" and new[0]["path"] == f"{BASE}/{name}/rename"
    submitted = audit_entries(api, run_id)
    assert [e["action"] for e in submitted] == ["run.submit"]
    assert submitted[0]["details"]["workflow"] == new_name


def test_openapi_describes_the_stored_workflow_endpoints(api: Api) -> None:
    with api.client(None) as client:
        schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"post", "get"} <= set(paths[BASE])
    assert {"get", "put", "delete"} <= set(paths[f"{BASE}/{{workflow_id}}"])
    for suffix in ("rename", "enable", "disable", "runs"):
        assert "post" in paths[f"{BASE}/{{name}}/{suffix}"], suffix
    for suffix in ("versions", "versions/{version}", "diff"):
        assert "get" in paths[f"{BASE}/{{name}}/{suffix}"], suffix
    put = paths[f"{BASE}/{{workflow_id}}"]["put"]["responses"]["200"]
    assert put["content"]["application/json"]["schema"]["$ref"].endswith("/StoredWorkflow")
    assert {"WorkflowDiff", "DiffSummary", "RenameRequest", "WorkflowRunRequest",
            "VersionOut", "WorkflowList"} <= set(schema["components"]["schemas"])


def test_the_library_recovers_names_a_crashed_request_left_claimed(api: Api) -> None:
    """Claims a crashed create/delete left behind are taken over; a fresh claim (a
    request in flight) is not."""
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(api.env["CHORDFLOW_MONGO_URL"])
    try:
        library = WorkflowLibrary(client[unique("library").replace("-", "")])
        old = now() - 2 * STALE_CLAIM_SECONDS
        library.names.insert_one({"_id": "crashed", "workflow_id": "gone", "created_at": old})
        library.names.insert_one({"_id": "busy", "workflow_id": "coming", "created_at": now()})
        entry, _ = library.create("crashed", doc("crashed"))
        assert library.get("crashed").id == entry.id
        with pytest.raises(WorkflowExists):
            library.create("busy", doc("busy"))
        with pytest.raises(WorkflowMissing):
            library.get("busy")
        # A delete that stopped before releasing the name: the name is free anyway.
        deleted, _ = library.create("deleted", doc("deleted"))
        library.collection.update_one({"_id": deleted.id}, {"$set": {"deleted": True}})
        with pytest.raises(WorkflowMissing):
            library.get("deleted")
        assert library.create("deleted", doc("deleted"))[0].id != deleted.id
        # A rename that stopped after claiming the new name: only the old name resolves.
        library.names.insert_one({"_id": "halfway", "workflow_id": entry.id,
                                  "created_at": now()})
        with pytest.raises(WorkflowMissing):
            library.get("halfway")
        assert library.get("crashed").name == "crashed"
    finally:
        client.close()


def test_runnable_definitions_carry_the_stored_name_and_version(api: Api) -> None:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(api.env["CHORDFLOW_MONGO_URL"])
    try:
        library = WorkflowLibrary(client[unique("library").replace("-", "")])
        library.create("stored", {"workflow_name": "dag", "version": "9.1", "steps": [
            {"step_name": "s", "app": "echo", "params": {"v": 1}}]})
        library.update("stored", {"procedures": [{"name": "p", "mod": "echo"}]})
        latest = library.runnable("stored")
        assert (latest["name"], latest["version"]) == ("stored", "2")
        assert [s["name"] for s in latest["steps"]] == ["p"]
        first = library.runnable("stored", "v1")
        assert (first["name"], first["version"], first["steps"][0]["name"]) == \
            ("stored", "1", "s")
        assert library.version("stored", 1).document["workflow_name"] == "dag"
        for version in ("3", "0", "one"):
            with pytest.raises(WorkflowMissing):
                library.runnable("stored", version)
        library.set_enabled("stored", False)
        with pytest.raises(WorkflowDisabled):
            library.runnable("stored")
    finally:
        client.close()
