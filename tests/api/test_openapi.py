"""The API's documents and its shared shapes, on the real server: security schemes,
the typed workflow body, local Swagger UI and ReDoc, YAML bodies, the /validate body,
error codes, renames keeping history, diffs as written."""

from __future__ import annotations

import re
import uuid
from typing import Any

from tests.api.conftest import Api
from tests.api.test_runs import wait_run

YAML = {"Content-Type": "application/yaml"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_schema_declares_bearer_and_api_key_security(api: Api) -> None:
    schema = api.client(None).get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer",
                                 "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-API-Key")
    runs = schema["paths"]["/api/v1/runs"]
    assert {"bearer": []} in runs["post"]["security"]
    assert "security" not in schema["paths"]["/api/v1/health"]["get"]


def test_the_workflow_body_references_the_workflow_schema(api: Api) -> None:
    schema = api.client(None).get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert "steps" in components["Workflow"]["properties"]
    assert components["Workflow"]["properties"]["steps"]["items"] == {
        "$ref": "#/components/schemas/Step"}
    assert "depends_on" in components["Step"]["properties"]
    text = str(components["RunCreate"]["properties"]["workflow"])
    assert "#/components/schemas/Workflow" in text
    validate = schema["paths"]["/api/v1/validate"]["post"]["requestBody"]["content"]
    assert "#/components/schemas/ValidateRequest" in str(validate["application/json"])
    assert "application/yaml" in validate
    assert "application/yaml" in \
        schema["paths"]["/api/v1/runs"]["post"]["requestBody"]["content"]


def test_the_documents_load_only_local_assets(api: Api) -> None:
    with api.client(None) as client:
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets, html
            for url in assets:
                assert url.startswith("/static/"), (page, url)
                served = client.get(url)
                assert served.status_code == 200 and len(served.content) > 500, url
            assert "cdn" not in html.lower() and "googleapis" not in html
        # Swagger UI's validator badge would send the schema's URL out of the cluster.
        assert '"validatorUrl": null' in client.get("/docs").text


def test_root_is_the_dashboard(api: Api) -> None:
    response = api.client(None).get("/", follow_redirects=False)
    assert response.status_code == 200 and "/ui/static/js/main.js" in response.text


def test_the_swagger_cli_schema_command_prints_the_same_schema(api: Api) -> None:
    import json
    import subprocess

    from tests.api.conftest import CHORDFLOW
    done = subprocess.run([CHORDFLOW, "schema"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    served = api.client(None).get("/openapi.json").json()["components"]["schemas"]
    assert printed["properties"].keys() == served["Workflow"]["properties"].keys()
    assert "Step" in printed["$defs"]


def test_yaml_bodies_are_accepted_wherever_json_is(api: Api) -> None:
    name = unique("yaml")
    with api.client("author") as client:
        ran = client.post("/api/v1/runs", headers=YAML, content=(
            "workflow:\n  name: yaml-run\n  steps:\n    - name: a\n      module: echo\n"
            "      params: {x: 1}\n"))
        assert ran.status_code == 201, ran.text
        assert wait_run(client, ran.json()["run_id"])["status"] == "succeeded"
        checked = client.post("/api/v1/validate", headers={"Content-Type": "text/yaml"},
                              content="name: v\nsteps:\n  - {name: a, module: echo}\n")
        assert checked.json()["valid"] is True, checked.text
        made = client.post("/api/v1/workflows", headers=YAML,
                           content=f"name: {name}\nsteps:\n  - {{name: a, module: echo}}\n")
        assert made.status_code == 201, made.text
        changed = client.put(f"/api/v1/workflows/{name}", headers=YAML,
                             content=f"name: {name}\nsteps:\n  - {{name: b, module: echo}}\n")
        assert changed.status_code == 200 and changed.json()["version"] == 2, changed.text
        broken = client.post("/api/v1/runs", headers=YAML, content=(
            "workflow:\n  name: b\n  steps:\n    - {name: a, module: echo, "
            "params: {x: ${variables.x}}}\n"))
        assert broken.status_code == 422
        assert broken.json()["code"] == "validation_failed"
        assert 'must be quoted in YAML: "${variables.x}"' in broken.json()["detail"]
        assert "line 4" in broken.json()["detail"]


def test_validate_takes_the_runs_body_and_the_bare_workflow(api: Api) -> None:
    workflow = {"name": "v", "variables": {"who": "x"},
                "steps": [{"name": "a", "module": "echo", "params": {"w": "${variables.who}"}}]}
    with api.client("viewer") as client:
        wrapped = client.post("/api/v1/validate",
                              json={"workflow": workflow, "variables": {"who": "y"}})
        assert wrapped.json()["valid"] is True and wrapped.json()["name"] == "v"
        bare = client.post("/api/v1/validate", json=workflow)
        assert bare.json()["valid"] is True
        unknown = client.post("/api/v1/validate",
                              json={"workflow": workflow, "variables": {"nobody": 1}})
        assert unknown.json()["valid"] is False
        assert unknown.json()["errors"][0]["field"] == "variables.nobody"
        both = client.post("/api/v1/validate", json={"workflow": {
            "name": "v", "steps": [{"name": "a", "module": "echo", "depend_on": "zz"},
                                   {"name": "b", "module": "file", "method": "read",
                                    "params": {"path": 3}}]}})
        messages = {(e["step"], e["field"], e["message"]) for e in both.json()["errors"]}
        assert ("a", "depend_on",
                "unknown field 'depend_on' (did you mean 'depends_on'?)") in messages
        assert ("b", "params.path", "Input should be a valid string") in messages


def test_error_bodies_share_one_shape_with_a_code(api: Api) -> None:
    with api.client(None) as anonymous:
        no_key = anonymous.get("/api/v1/runs")
        assert no_key.status_code == 401 and no_key.json()["code"] == "unauthorized"
        assert "API key" in no_key.json()["detail"]
        assert no_key.headers["www-authenticate"] == "Bearer"
    with api.client("viewer") as viewer:
        forbidden = viewer.post("/api/v1/runs", json={"name": "x"})
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
        missing = viewer.get("/api/v1/runs/nope-nope")
        assert missing.status_code == 404 and missing.json()["code"] == "not_found"
        nowhere = viewer.get("/api/v1/no-such-endpoint")
        assert nowhere.status_code == 404 and nowhere.json()["code"] == "not_found"
    with api.client("author") as client:
        bad = client.post("/api/v1/runs", json={"variables": {}})
        body = bad.json()
        assert bad.status_code == 422 and body["code"] == "validation_failed"
        assert isinstance(body["detail"], str) and body["errors"][0]["message"]
        invalid = client.post("/api/v1/runs", json={"workflow": {"name": "x", "steps": [
            {"name": "a", "module": "nomodule"}]}})
        assert invalid.json()["code"] == "validation_failed"
        assert invalid.json()["errors"][0]["step"] == "a"
        name = unique("taken")
        document = {"name": name, "steps": [{"name": "a", "module": "echo"}]}
        assert client.post("/api/v1/workflows", json=document).status_code == 201
        taken = client.post("/api/v1/workflows", json=document)
        assert taken.status_code == 409 and taken.json()["code"] == "conflict"
        huge = client.post("/api/v1/validate", content=b"{" + b" " * (5 * 1024 * 1024) + b"}",
                           headers={"Content-Type": "application/json"})
        assert huge.status_code == 413 and huge.json()["code"] == "payload_too_large"


def test_a_renamed_workflow_keeps_its_run_history(api: Api) -> None:
    old, new = unique("before"), unique("after")
    document = {"name": old, "steps": [{"name": "a", "module": "echo"}]}
    with api.client("author") as client:
        assert client.post("/api/v1/workflows", json=document).status_code == 201
        run = client.post(f"/api/v1/workflows/{old}/runs").json()["run_id"]
        wait_run(client, run)
        renamed = client.post(f"/api/v1/workflows/{old}/rename", json={"new_name": new})
        assert renamed.status_code == 200, renamed.text
        later = client.post(f"/api/v1/workflows/{new}/runs").json()["run_id"]
        wait_run(client, later)
        listed = client.get("/api/v1/runs", params={"workflow": new}).json()["runs"]
        assert {r["run_id"] for r in listed} == {run, later}
        assert client.get("/api/v1/runs", params={"workflow": old}).json()["runs"] == []
        assert client.get(f"/api/v1/runs/{run}").json()["workflow"] == new


def test_the_diff_shows_the_versions_as_written(api: Api) -> None:
    name = unique("diff")
    first = (f"# the first version\nname: {name}\nsteps:\n"
             "  - name: a   # says hello\n    module: echo\n")
    second = first.replace("says hello", "says goodbye")
    with api.client("author") as client:
        assert client.post("/api/v1/workflows", headers=YAML, content=first).status_code == 201
        assert client.put(f"/api/v1/workflows/{name}", headers=YAML,
                          content=second).status_code == 200
        diff = client.get(f"/api/v1/workflows/{name}/diff").json()
        assert "-  - name: a   # says hello" in diff["diff"]
        assert "+  - name: a   # says goodbye" in diff["diff"]
        # JSON: the document as indented JSON in the order of its keys, not sorted.
        other = unique("order")
        ordered: dict[str, Any] = {"steps": [{"name": "a", "module": "echo",
                                              "params": {"z": 1, "a": 2}}], "name": other}
        assert client.post("/api/v1/workflows", json=ordered).status_code == 201
        ordered["steps"][0]["params"]["a"] = 3
        assert client.put(f"/api/v1/workflows/{other}", json=ordered).status_code == 200
        text = client.get(f"/api/v1/workflows/{other}/diff").json()["diff"]
        assert '"z": 1,\n-        "a": 2\n+        "a": 3\n' in text, text  # z first

