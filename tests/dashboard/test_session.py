"""The dashboard's session over plain HTTP: the cookie's flags, the cookie as a
credential, CSRF on every change, the page and its files from the package, and the
API additions the dashboard reads (run counts and the trigger filter, workers and
queues, a version's text, a step's queue and task)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from chordflow.api.session import csrf_token

from tests.api.conftest import Api
from tests.dashboard.conftest import unique, wait_run


@contextmanager
def session_client(api: Api, role: str) -> Iterator[tuple[httpx.Client, dict[str, Any]]]:
    """A client signed in as a browser is: the session cookie, no key header."""
    with httpx.Client(base_url=api.url, timeout=30) as client:
        signed = client.post("/ui/session", json={"key": api.keys[role]})
        assert signed.status_code == 200, signed.text
        yield client, signed.json()


def test_signing_in_sets_an_httponly_strict_cookie_and_gives_the_csrf_token(
        dash_api: Api) -> None:
    with httpx.Client(base_url=dash_api.url, timeout=30) as client:
        refused = client.post("/ui/session", json={"key": "cf_nope_wrong"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        assert client.get("/ui/session").json()["signed_in"] is False
        signed = client.post("/ui/session", json={"key": dash_api.keys["operator"]})
        assert signed.status_code == 200, signed.text
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        body = signed.json()
        assert body["role"] == "operator" and body["name"] == "dash-operator"
        assert body["csrf"] == csrf_token(dash_api.keys["operator"])
        assert body["flower_url"] == "http://flower.test:5555"
        # After a reload the page asks again, and gets the same token.
        assert client.get("/ui/session").json()["csrf"] == body["csrf"]
        out = client.delete("/ui/session")
        assert out.status_code == 204
        assert client.get("/ui/session").json()["signed_in"] is False
        assert client.get("/api/v1/runs").status_code == 401


def test_the_cookie_reads_but_a_change_needs_the_csrf_header(dash_api: Api) -> None:
    workflow = {"name": unique("csrf"), "steps": [{"name": "a", "module": "echo"}]}
    with session_client(dash_api, "operator") as (client, session):
        assert client.get("/api/v1/runs", params={"limit": 1}).status_code == 200
        forged = client.post("/api/v1/runs", json={"workflow": workflow})
        assert forged.status_code == 403, forged.text
        assert "X-CSRF-Token" in forged.json()["detail"]
        wrong = client.post("/api/v1/runs", json={"workflow": workflow},
                            headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        made = client.post("/api/v1/runs", json={"workflow": workflow},
                           headers={"X-CSRF-Token": session["csrf"]})
        assert made.status_code == 201, made.text
        assert wait_run(client, made.json()["run_id"])["status"] == "succeeded"
    # A client sending its key in a header is no browser session: no token needed.
    with dash_api.client("operator") as keyed:
        assert keyed.post("/api/v1/runs", json={"workflow": workflow}).status_code == 201


def test_a_role_is_enforced_through_the_cookie_too(dash_api: Api) -> None:
    with session_client(dash_api, "viewer") as (client, session):
        refused = client.post("/api/v1/keys", json={"name": "x"},
                              headers={"X-CSRF-Token": session["csrf"]})
        assert refused.status_code == 403
        assert "admin role" in refused.json()["detail"]


def test_a_revoked_keys_session_ends(dash_api: Api) -> None:
    with dash_api.client("admin") as admin:
        made = admin.post("/api/v1/keys", json={"name": unique("gone"), "role": "viewer"})
        key, key_id = made.json()["key"], made.json()["key_id"]
        with httpx.Client(base_url=dash_api.url, timeout=30) as client:
            assert client.post("/ui/session", json={"key": key}).status_code == 200
            assert admin.delete(f"/api/v1/keys/{key_id}").status_code == 204
            # This API process forgets its checked keys at once on a revoke.
            assert client.get("/ui/session").json()["signed_in"] is False
            assert client.get("/api/v1/runs").status_code == 401


def test_the_page_and_its_files_come_from_the_package(dash_api: Api) -> None:
    import re

    with httpx.Client(base_url=dash_api.url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "connect-src 'self'" in policy
        assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
        assert assets and all(a.startswith("/ui/static/") for a in assets), assets
        for path in [*assets, "/ui/static/js/dag.js", "/ui/static/vendor/dagre.esm.js",
                     "/ui/static/vendor/dagre-LICENSE"]:
            served = client.get(path)
            assert served.status_code == 200 and len(served.content) > 200, path
        scripts = client.get("/ui/static/js/main.js").text
        assert "http://" not in scripts and "https://" not in scripts
        # The API's documents are still where they were.
        assert client.get("/docs").status_code == 200


def test_run_counts_trigger_filter_workers_and_version_text(dash_api: Api) -> None:
    name = unique("counted")
    text = (f"# version one, as written\nname: {name}\nvariables: {{who: x}}\n"
            "steps:\n  - {name: a, module: echo, queue: chordflow}\n")
    with dash_api.client("author") as client:
        made = client.post("/api/v1/workflows", content=text,
                           headers={"Content-Type": "application/yaml"})
        assert made.status_code == 201, made.text
        version = client.get(f"/api/v1/workflows/{name}/versions/1").json()
        assert version["text"] == text and version["format"] == "yaml"
        run_id = client.post(f"/api/v1/workflows/{name}/runs", json={}).json()["run_id"]
        wait_run(client, run_id)
        counts = client.get("/api/v1/runs/counts", params={"workflow": name}).json()
        assert counts["counts"]["succeeded"] == 1 and counts["total"] == 1
        assert set(counts["counts"]) >= {"pending", "running", "failed", "cancelled"}
        listed = client.get("/api/v1/runs", params={"workflow": name, "trigger": "api"}).json()
        assert [r["run_id"] for r in listed["runs"]] == [run_id]
        assert client.get("/api/v1/runs", params={"workflow": name,
                                                  "trigger": "schedule:x"}).json()["runs"] == []
        step = client.get(f"/api/v1/runs/{run_id}").json()["steps"][0]
        assert step["queue"] == "chordflow" and step["task_id"].startswith(f"{run_id}:a:")
        found = client.get("/api/v1/workers").json()
        names = [w["name"] for w in found["workers"]]
        assert any(n.startswith("w1@") for n in names) and any(n.startswith("w2@") for n in names)
        queue = next(q for q in found["queues"] if q["name"] == "chordflow")
        assert queue["waiting"] == 0 and len(queue["consumers"]) == 2
