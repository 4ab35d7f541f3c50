"""The mysql module on the machine's MariaDB: bound parameters, writes, failover,
reconnecting, masked credentials."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from chordflow.engine.plan import compile_plan
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data

from tests.modules.conftest import Maria
from tests.servers import free_port


def _maria(**extra: Any) -> dict[str, Any]:
    return {"type": "mysql", "hosts": ["127.0.0.1:3306"], "login": "root", **extra}


def _step(name: str, method: str, params: dict[str, Any], after: str | None = None,
          connection: Any = "maria") -> dict[str, Any]:
    step = {"name": name, "module": "mysql", "method": method, "connection": connection,
            "params": params}
    if after:
        step["depends_on"] = [after]
    return step


def test_query_insert_update_upsert_with_bound_values(maria: Maria, run_embedded: Any) -> None:
    db = maria.database
    trap = "x'); DROP TABLE people; --"
    doc = {"name": "mysql-crud", "variables": {"trap": trap}, "steps": [
        _step("create", "execute", {"database": db, "sql":
              "CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(200), n INT)"}),
        _step("insert", "insert", {"table": f"{db}.people", "data": [
            {"id": 1, "name": "${variables.trap}", "n": 1}, {"id": 2, "name": "bo", "n": 2}]},
            "create"),
        _step("update", "update", {"table": f"{db}.people", "where": {"id": 2},
                                   "data": {"n": 20}}, "insert"),
        _step("upsert", "upsert", {"table": f"{db}.people", "key_cols": ["id"],
                                   "data": [{"id": 2, "name": "bo", "n": 21},
                                            {"id": 3, "name": "cy", "n": 3}]}, "update"),
        _step("select", "query", {"database": db, "sql":
              "SELECT id, name, n FROM people WHERE name = %s OR id > %s ORDER BY id",
              "params": ["${variables.trap}", 1]}, "upsert"),
        _step("tables", "show_tables", {"database": db}, "select"),
        _step("databases", "show_databases", {}, "select"),
    ]}
    report = run_embedded(doc, {"maria": _maria()})
    assert report["status"] == "succeeded", report
    steps = report["steps"]
    assert steps["insert"]["outputs"]["affected_rows"] == 2
    assert steps["update"]["outputs"]["affected_rows"] == 1
    assert steps["upsert"]["outputs"]["affected_rows"] == 3  # 2 for the change, 1 new
    rows = steps["select"]["outputs"]["rows"]
    # The value is data, stored and matched as it is: the table is still there.
    assert rows == [{"id": 1, "name": trap, "n": 1}, {"id": 2, "name": "bo", "n": 21},
                    {"id": 3, "name": "cy", "n": 3}]
    assert steps["select"]["outputs"]["connected_node"] == "127.0.0.1:3306"
    assert steps["tables"]["outputs"]["tables"] == ["people"]
    assert db in steps["databases"]["outputs"]["databases"]


def test_failover_skips_an_unreachable_first_host(maria: Maria, run_embedded: Any) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    conn = _maria(hosts=[dead, "127.0.0.1:3306"], timeout=2, retry_count=2, retry_delay=0.1)
    doc = {"name": "mysql-failover", "steps": [
        _step("ask", "query", {"sql": "SELECT 1 + %s AS two", "params": [1]},
              connection=f"cluster-{uuid.uuid4().hex[:6]}")]}
    name = doc["steps"][0]["connection"]
    report = run_embedded(doc, {name: conn})
    assert report["status"] == "succeeded", report
    out = report["steps"]["ask"]["outputs"]
    assert out["rows"] == [{"two": 2}]
    assert out["connected_node"] == "127.0.0.1:3306"


def test_no_host_answering_fails_naming_every_host(run_embedded: Any) -> None:
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    doc = {"name": "mysql-down", "steps": [_step("ask", "query", {"sql": "SELECT 1"})]}
    report = run_embedded(doc, {"maria": _maria(hosts=dead, timeout=1, retry_count=2,
                                                retry_delay=0)})
    assert report["status"] == "failed"
    error = report["steps"]["ask"]["error"]
    assert "no host answered (2 passes over 2 hosts)" in error
    assert dead[0] in error and dead[1] in error


def test_reconnects_after_the_server_drops_the_connection(maria: Maria,
                                                           run_embedded: Any) -> None:
    conn = {f"drop-{uuid.uuid4().hex[:6]}": _maria()}
    name = next(iter(conn))
    doc = {"name": "mysql-id", "steps": [
        _step("who", "query", {"sql": "SELECT CONNECTION_ID() AS id"}, connection=name)]}
    first = run_embedded(doc, conn)["steps"]["who"]["outputs"]["rows"][0]["id"]
    again = run_embedded(doc, conn)["steps"]["who"]["outputs"]["rows"][0]["id"]
    assert again == first  # the pooled client served the second run
    maria.sql(f"KILL {int(first)}")
    report = run_embedded(doc, conn)
    assert report["status"] == "succeeded", report
    assert report["steps"]["who"]["outputs"]["rows"][0]["id"] != first


def test_a_reference_in_sql_text_is_refused_at_validation() -> None:
    doc = {"name": "mysql-inject", "variables": {"id": "1 OR 1=1"}, "steps": [
        _step("ask", "query", {"sql": "SELECT * FROM t WHERE id = ${variables.id}"})]}
    with pytest.raises(ValidationFailed) as caught:
        compile_plan(load_data(doc), default_registry())
    [error] = caught.value.errors
    assert (error.step, error.field) == ("ask", "params.sql")
    assert "placeholder" in error.message and "params.params" in error.message


def test_a_table_name_must_be_an_identifier(maria: Maria, run_embedded: Any) -> None:
    doc = {"name": "mysql-ident", "steps": [
        _step("ins", "insert", {"table": "t; DROP DATABASE x", "data": {"a": 1}})]}
    report = run_embedded(doc, {"maria": _maria()})
    assert report["status"] == "failed"
    assert "params.table" in report["steps"]["ins"]["error"]


def test_credentials_come_from_secrets_and_are_masked(maria: Maria, run_embedded: Any) -> None:
    user, password = f"cf{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    maria.sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", [password])
    maria.sql(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY %s", [password])
    try:
        conn = {"app": _maria(login=user, credentials={"password": "app_pw"})}
        doc = {"name": "mysql-secret", "steps": [
            _step("echo", "query", {"sql": "SELECT %s AS said, CURRENT_USER() AS me",
                                    "params": ["${secrets.app_pw}"]}, connection="app")]}
        report = run_embedded(doc, conn, secrets={"app_pw": password})
        assert report["status"] == "succeeded", report
        row = report["steps"]["echo"]["outputs"]["rows"][0]
        assert row["me"].startswith(user)
        assert row["said"] == "***"
        assert password not in json.dumps(report)

        plain = {"name": "mysql-nosecret", "steps": [
            _step("me", "query", {"sql": "SELECT CURRENT_USER() AS me"}, connection="app")]}
        missing = run_embedded(plain, conn, secrets={})
        assert missing["status"] == "failed"
        error = missing["steps"]["me"]["error"]
        assert "field 'connection'" in error
        assert "credentials.password names secret 'app_pw', which is not configured" in error
    finally:
        maria.sql(f"DROP USER IF EXISTS '{user}'@'%'")
        maria.sql(f"DROP USER IF EXISTS '{user}'@'localhost'")
