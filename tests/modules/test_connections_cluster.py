"""Connections defined through the API (admin only, no credential in clear) and used by
steps on real Celery workers, which resolve them from the store; the CLI through the
API."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest
from chordflow.connections.models import parse_connection
from chordflow.workflow.loader import load_data

from tests.api.conftest import CHORDFLOW, Api, api  # noqa: F401 (the session's API)
from tests.modules.conftest import MARIADB, Maria, _answers
from tests.servers import ROOT, TEST_SECRET, free_port


def test_only_admins_manage_connections(api: Api) -> None:  # noqa: F811
    name = f"wh-{uuid.uuid4().hex[:6]}"
    body = {"type": "mysql", "hosts": ["db1:3306", "db2:3306"], "login": "etl",
            "credentials": {"password": "api_token"}, "retry_count": 2}
    with api.client("author") as author:
        assert author.put(f"/api/v1/connections/{name}", json=body).status_code == 403
        assert author.get("/api/v1/connections").status_code == 403
    with api.client("admin") as admin:
        created = admin.put(f"/api/v1/connections/{name}", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["credentials"] == {"password": "api_token"}  # a name only
        assert admin.put(f"/api/v1/connections/{name}", json=body).status_code == 200
        listed = admin.get("/api/v1/connections").json()["connections"]
        assert name in [c["name"] for c in listed]
        bad = admin.put(f"/api/v1/connections/{name}x",
                        json={"type": "mysql", "hosts": ["root:pw@db"]})
        assert bad.status_code == 422 and "not in the host" in bad.text
        check = admin.post(f"/api/v1/connections/{name}/check").json()
        assert check["ok"] is False and "no host answered" in check["error"]
        assert TEST_SECRET not in json.dumps(check)
        env = {**api.env, "CHORDFLOW_API_URL": api.url, "CHORDFLOW_API_KEY": api.keys["admin"]}
        listed = subprocess.run([CHORDFLOW, "connections", "list"], env=env,
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert listed.returncode == 0, listed.stderr
        assert name in listed.stdout and "db1:3306, db2:3306" in listed.stdout
        checked = subprocess.run([CHORDFLOW, "connections", "check", name, "--json"],
                                 env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert checked.returncode == 1
        assert json.loads(checked.stdout)["ok"] is False
        assert admin.delete(f"/api/v1/connections/{name}").status_code == 204
        assert admin.get(f"/api/v1/connections/{name}").status_code == 404
    with api.client("admin") as admin:
        actions = {(e["action"], e["target"]) for e in admin.get("/api/v1/audit").json()}
    assert ("connection.put", name) in actions and ("connection.delete", name) in actions


def test_a_workflow_uses_stored_connections_on_celery_workers(
        celery_stack: Any, mongo_url: str) -> None:
    if not _answers(*MARIADB):
        pytest.skip("no MariaDB/MySQL answers at 127.0.0.1:3306 (root, no password)")
    maria = Maria(f"cf_{uuid.uuid4().hex[:10]}")
    maria.sql(f"CREATE DATABASE `{maria.database}`")
    sql_conn, doc_conn = f"maria-{uuid.uuid4().hex[:6]}", f"docs-{uuid.uuid4().hex[:6]}"
    coll = f"copied_{uuid.uuid4().hex[:8]}"
    # Stored as the API stores them (PUT /api/v1/connections/NAME): the workers read
    # them from the store.
    catalog = celery_stack.settings().connection_catalog(
        celery_stack.service().engine.store.db)
    try:
        catalog.put(parse_connection({
            "type": "mysql", "hosts": [f"127.0.0.1:{free_port()}", "127.0.0.1:3306"],
            "login": "root", "options": {"database": maria.database},
            "timeout": 2, "retry_count": 1}, sql_conn))
        catalog.put(parse_connection({
            "type": "mongodb", "hosts": [urlsplit(mongo_url).netloc],
            "options": {"database": "cfcopy"}, "retry_count": 1}, doc_conn))
        doc = {"name": "copy-rows", "steps": [
            {"name": "make", "module": "mysql", "method": "execute", "connection": sql_conn,
             "params": {"sql": "CREATE TABLE t (id INT, label VARCHAR(50))"}},
            {"name": "fill", "module": "mysql", "method": "insert", "connection": sql_conn,
             "depends_on": ["make"],
             "params": {"table": "t", "data": [{"id": 1, "label": "${secrets.api_token}"},
                                               {"id": 2, "label": "two"}]}},
            {"name": "read", "module": "mysql", "method": "query", "connection": sql_conn,
             "depends_on": ["fill"], "params": {"sql": "SELECT id, label FROM t ORDER BY id"}},
            {"name": "save", "module": "mongodb", "method": "insert", "connection": doc_conn,
             "params": {"collection": coll, "data": "${steps.read.outputs.rows}"}},
            {"name": "count", "module": "mongodb", "method": "count", "connection": doc_conn,
             "depends_on": ["save"], "params": {"collection": coll}}]}
        service = celery_stack.service()
        run_id = service.submit(load_data(doc))
        assert service.wait(run_id, 60).finished
        report = service.report(run_id)
        assert report["status"] == "succeeded", report
        steps = report["steps"]
        assert steps["read"]["outputs"]["connected_node"] == "127.0.0.1:3306"
        assert steps["read"]["outputs"]["rows"] == [{"id": 1, "label": "***"},
                                                    {"id": 2, "label": "two"}]
        assert steps["count"]["outputs"]["count"] == 2
        assert TEST_SECRET not in json.dumps(report)
        # The rows really went through: the secret reached MariaDB in clear.
        assert maria.sql(f"SELECT label FROM `{maria.database}`.t WHERE id = 1") == [
            {"label": TEST_SECRET}]

    finally:
        maria.sql(f"DROP DATABASE IF EXISTS `{maria.database}`")
        catalog.delete(sql_conn)
        catalog.delete(doc_conn)
