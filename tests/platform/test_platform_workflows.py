"""The replaced procedures platform's workflows, in its own format, run unchanged:
embedded, on the MongoDB store and on Celery workers (the ``run_workflow`` fixture),
against real MariaDB and MongoDB-protocol servers; its module classes loaded from the
modules path. (Its README's own example runs in tests/test_dialects.py.)"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import load_registry
from chordflow.workflow.loader import load_data

from tests.servers import ROOT, free_port

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
#: What the workers load too (CHORDFLOW_MODULES_PATH): the platform class ops.Probe.
APPS = load_registry([FIXTURES / "apps"])


def read(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "platform" / name).read_text())


def mariadb() -> None:
    """Skip, naming the reason, where no MariaDB answers at 127.0.0.1:3306."""
    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=1).close()
    except OSError:
        pytest.skip("no MariaDB/MySQL at 127.0.0.1:3306 (root, no password)")


def test_common_modules_workflow_runs_unchanged(run_workflow, tmp_path: Path) -> None:
    doc = read("modules_common.json")
    # A file of the test's own instead of the fixture's /tmp path; the rest verbatim.
    doc["variables"]["out_xlsx"] = str(tmp_path / "active_servers.xlsx")
    report = run_workflow(doc, registry=APPS)
    assert report["status"] == "succeeded", report["error"]
    steps = report["steps"]
    assert steps["echo"]["outputs"]["msg"] == "ret from ret from hello world"
    assert steps["to_df"]["outputs"]["data"]["columns"] == ["host", "status", "cpu"]
    assert [r["host"] for r in steps["read_xlsx"]["outputs"]["data"]] == \
        ["web01", "web03", "web04"]
    fetched = steps["parallel_fetch"]["outputs"]
    assert fetched["status"] is True and fetched["errors"] == []
    assert fetched["results"]["api_orders"]["msg"] == "ret from orders"
    merged = steps["parallel_process"]["outputs"]["data"]
    assert [r["host"] for r in merged] == ["web01", "web04"]  # both chunks, in order
    # The platform's own class (tests/fixtures/apps/ops/Probe.py) read the context.
    assert steps["probe"]["outputs"] == {"status": True, "total": 166}


def test_procedures_take_depends_on_foreach_when_and_options(run_workflow) -> None:
    doc = {"name": f"opts-{uuid.uuid4().hex[:6]}", "variables": {"hosts": ["a", "b"]},
           "procedures": [
               {"name": "first", "mod": "common.Kt", "method": "prt1",
                "params": {"msg": "one"}},
               {"name": "side", "mod": "common.Kt", "method": "prt1",
                "params": {"msg": "side"}, "depends_on": []},
               {"name": "each", "mod": "common.Kt", "method": "prt1",
                "params": {"msg": "@item #@item_index"}, "foreach": "@var.hosts",
                "retries": 1, "timeout": 30},
               {"name": "joined", "mod": "ops.Probe", "method": "echo",
                "params": {"n": "@each.items"}, "depends_on": ["each", "side"]},
               {"name": "never", "mod": "common.Kt", "method": "prt1",
                "params": {"msg": "x"}, "when": "@first.msg == 'nope'"},
           ]}
    wf = load_data(doc)
    side, each = wf.steps[1], wf.steps[2]
    assert side.depends_on == [] and each.depends_on == ["side"]
    assert each.foreach == "${variables.hosts}" and (each.retries, each.timeout) == (1, 30)
    report = run_workflow(doc, registry=APPS)
    assert report["status"] == "succeeded", report["error"]
    steps = report["steps"]
    assert [i["msg"] for i in steps["each"]["outputs"]["items"]] == \
        ["ret from a #0", "ret from b #1"]
    assert steps["never"]["status"] == "skipped"
    # The class saw the results so far: every step listed before it.
    assert steps["joined"]["outputs"]["seen"] == ["each", "first", "side"]
    assert steps["joined"]["outputs"]["runtime"] == ["run_id", "start_time", "step",
                                                     "workflow"]


def test_mysql_workflow_with_cluster_failover(run_workflow) -> None:
    mariadb()
    table = f"t_{uuid.uuid4().hex[:8]}"
    dead = free_port()  # nothing listens there: the first host fails over
    doc = {"name": "mysql-demo", "procedures": [
        {"name": "db_connect", "mod": "mysql.MySQL", "method": "cluster_connect",
         "params": {"hosts": [{"host": "127.0.0.1", "port": dead, "username": "root",
                               "database": "test"},
                              {"host": "127.0.0.1", "port": 3306, "username": "root",
                               "database": "test"}],
                    "retry_on_error": True, "timeout": 1000, "retry_count": 1,
                    "retry_delay": 0.1}},
        {"name": "create", "mod": "mysql.MySQL", "method": "execute",
         "params": {"sql": f"CREATE TABLE IF NOT EXISTS {table} "
                           "(id INT PRIMARY KEY, name VARCHAR(40), n INT)"}},
        {"name": "add", "mod": "mysql.MySQL", "method": "cluster_insert",
         "params": {"table": table, "data": [{"id": 1, "name": "a", "n": 1},
                                             {"id": 2, "name": "b", "n": 2}]}},
        {"name": "bump", "mod": "mysql.MySQL", "method": "cluster_insertWithUK",
         "params": {"table": table, "data": [{"id": 2, "name": "b", "n": 20}],
                    "update_cols": ["n"], "key_cols": ["id"]}},
        {"name": "rows", "mod": "mysql.MySQL", "method": "cluster_query",
         "params": {"sql": f"SELECT id, n FROM {table} WHERE id >= %s ORDER BY id",
                    "params": [1]}},
        {"name": "tables", "mod": "mysql.MySQL", "method": "showTables", "params": {}},
        {"name": "drop", "mod": "mysql.MySQL", "method": "execute",
         "params": {"sql": f"DROP TABLE {table}"}},
        {"name": "db_close", "mod": "mysql.MySQL", "method": "cluster_disconnect",
         "params": {}},
    ]}
    report = run_workflow(doc, registry=APPS)
    assert report["status"] == "succeeded", report["error"]
    steps = report["steps"]
    assert steps["db_connect"]["outputs"] == {"status": True,
                                              "connected_node": "127.0.0.1:3306"}
    assert steps["rows"]["outputs"]["rows"] == [{"id": 1, "n": 1}, {"id": 2, "n": 20}]
    assert table in steps["tables"]["outputs"]["tables"]
    assert steps["db_close"]["outputs"] == {"status": True}


def test_mongodb_workflow(run_workflow, mongo_url: str) -> None:
    host, port = mongo_url.removeprefix("mongodb://").split("/")[0].rsplit(":", 1)
    coll = f"platform_{uuid.uuid4().hex[:8]}"  # nx-27017 shares collections: unique
    doc = {"name": "mongo-demo", "procedures": [
        {"name": "m_connect", "mod": "mongodb.MongoDB", "method": "connect",
         "params": {"host": host, "port": int(port), "database": "platform"}},
        {"name": "add", "mod": "mongodb.MongoDB", "method": "insert",
         "params": {"collection": coll, "data": [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]}},
        {"name": "one", "mod": "mongodb.MongoDB", "method": "findOne",
         "params": {"collection": coll, "query": {"k": 2}, "projection": {"_id": 0}}},
        {"name": "n", "mod": "mongodb.MongoDB", "method": "count",
         "params": {"collection": coll, "query": {}}},
        {"name": "m_close", "mod": "mongodb.MongoDB", "method": "disconnect", "params": {}},
    ]}
    report = run_workflow(doc, registry=APPS)
    assert report["status"] == "succeeded", report["error"]
    steps = report["steps"]
    assert steps["m_connect"]["outputs"]["connected_node"] == f"{host}:{port}"
    assert steps["n"]["outputs"]["count"] == 2
    assert json.dumps(steps["one"]["outputs"]).count('"v": "b"') == 1


def test_connect_conversion_and_its_errors() -> None:
    wf = load_data({"name": "ssh", "variables": {"box": "10.0.0.5"}, "procedures": [
        {"name": "ssh_connect", "mod": "common.Ssh", "method": "connect",
         "params": {"host": "@var.box", "username": "deploy", "key_file": "@sys.ssh_key",
                    "timeout": 10}},
        {"name": "run_deploy", "mod": "common.Ssh", "method": "run_script",
         "params": {"script_path": "/opt/deploy.sh", "args": "--env production"}},
        {"name": "ssh_close", "mod": "common.Ssh", "method": "disconnect", "params": {}},
        {"name": "after", "mod": "common.Kt", "method": "prt1", "params": {"msg": "x"}}]})
    connect, script = wf.steps[0], wf.steps[1]
    assert connect.connection == script.connection == {
        "type": "ssh", "hosts": ["10.0.0.5"], "login": "deploy", "timeout": 10,
        "credentials": {"private_key": "ssh_key"}}
    assert (script.module, script.params["args"]) == ("ssh", ["--env", "production"])
    assert wf.steps[3].connection is None  # disconnect ended it
    with pytest.raises(ValidationFailed) as info:
        load_data({"procedures": [
            {"name": "c", "mod": "mysql.MySQL", "method": "connect",
             "params": {"host": "db", "username": "u", "password": "hunter2"}},
            {"name": "q", "mod": "mongodb.MongoDB", "method": "find",
             "params": {"collection": "x"}}]})
    located = {(e.step, e.field): e.message for e in info.value.errors}
    assert "recorded in clear" in located[("c", "params.password")]
    assert "hunter2" not in str(info.value)
    assert "no mongodb.MongoDB connect before it" in located[("q", "connection")]


def test_module_files_neither_kind_are_one_line_and_the_rest_load(tmp_path: Path) -> None:
    mods = tmp_path / "mod"
    (mods / "common").mkdir(parents=True)
    (mods / "common" / "Kt.py").write_text(
        "class Kt:\n    def __init__(self, logger):\n        self.logger = logger\n\n"
        "    def prt1(self, context, params):\n        return {'status': 0, 'msg': 'x'}\n")
    (mods / "plain.py").write_text("X = 1\n")
    (mods / "broken.py").write_text("def oops(:\n")
    registry = load_registry([mods])
    assert "common.Kt" in registry.names() and "kt" in registry.names()
    assert len(registry.problems) == 2
    done = subprocess.run([CHORDFLOW, "modules", "--json"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT,
                          env={**_env(), "CHORDFLOW_MODULES_PATH": str(mods)})
    assert done.returncode == 0, done.stderr
    assert "common.Kt" in {m["name"] for m in json.loads(done.stdout)}
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "Traceback" not in done.stderr
    assert any("plain.py" in line and "neither a chordflow module" in line
               for line in lines)
    assert any("broken.py:1" in line and "SyntaxError" in line for line in lines)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CHORDFLOW_")}


def test_stateless_and_stateful_modules_convert_to_native_methods() -> None:
    wf = load_data({"name": "conv", "variables": {"rows": [{"host": "w1", "cpu": 7}]},
                    "procedures": [
        {"name": "mail", "mod": "common.Notify", "method": "email",
         "params": {"smtp_host": "smtp.example.com", "smtp_port": 587, "username": "bot",
                    "password": "@sys.smtp_pw", "from_addr": "a@example.com",
                    "to_addrs": ["b@example.com"], "subject": "s", "body": "b",
                    "use_tls": True}},
        {"name": "kc", "mod": "kafkaclient.Kafka", "method": "connect_consumer",
         "params": {"bootstrap_servers": "k1:9092,k2:9092", "group_id": "g",
                    "topics": ["t"], "auto_offset_reset": "earliest"}},
        {"name": "take", "mod": "kafkaclient.Kafka", "method": "consume",
         "params": {"max_messages": 5, "timeout_ms": 2000}},
        {"name": "es", "mod": "elasticsearchclient.ElasticSearch", "method": "connect",
         "params": {"hosts": ["https://es1:9200"], "api_key": "@sys.es_key"}},
        {"name": "mk", "mod": "elasticsearchclient.ElasticSearch", "method": "createIndex",
         "params": {"index": "logs"}},
        {"name": "pc", "mod": "prometheus.Prometheus", "method": "connect",
         "params": {"gateway": "http://pgw:9091", "job": "server_monitor"}},
        {"name": "cpu", "mod": "prometheus.Prometheus", "method": "dicts2prom",
         "params": {"data": "@var.rows", "metric_name": "server_cpu", "metric_desc": "CPU",
                    "metric_type": "gauge", "value_col": "cpu", "label_cols": ["host"]}},
        {"name": "push", "mod": "prometheus.Prometheus", "method": "push", "params": {}}]})
    steps = {s.name: s for s in wf.steps}
    assert steps["mail"].connection == {
        "type": "smtp", "hosts": ["smtp.example.com:587"], "login": "bot",
        "credentials": {"password": "smtp_pw"}, "options": {"security": "starttls"}}
    assert "password" not in steps["mail"].params
    assert steps["kc"].connection == {"type": "kafka", "hosts": ["k1:9092", "k2:9092"]}
    assert (steps["take"].module, steps["take"].params) == ("kafka", {
        "topics": ["t"], "group_id": "g", "auto_offset_reset": "earliest",
        "max_messages": 5, "timeout": 2.0})
    assert steps["mk"].connection == {"type": "elasticsearch", "hosts": ["https://es1:9200"],
                                      "credentials": {"api_key": "es_key"}}
    assert (steps["mk"].module, steps["mk"].method) == ("elasticsearch", "create_index")
    assert (steps["push"].module, steps["push"].method) == ("prometheus", "push")
    assert steps["push"].params == {"data": "${variables.rows}", "job": "server_monitor",
                                    "metrics": [{"name": "server_cpu", "help": "CPU",
                                                 "type": "gauge", "value": "cpu",
                                                 "labels": ["host"]}]}
    assert steps["push"].connection == {"type": "pushgateway", "hosts": ["http://pgw:9091"]}
    from chordflow.engine.plan import compile_plan

    compile_plan(wf, APPS)  # every native method takes these params
