"""Named connections: definitions, where they come from, and what a workflow's
``connection:`` field must be (errors naming the step and the field)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.connections.catalog import (
    Catalog,
    ConnectionConflict,
    ConnectionInvalid,
    ConnectionMissing,
)
from chordflow.connections.models import parse_connection, parse_connections
from chordflow.engine.plan import compile_plan
from chordflow.errors import ValidationFailed
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data
from pydantic import ValidationError

from tests.servers import ROOT

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


def test_a_definition_never_holds_a_credential() -> None:
    with pytest.raises(ValueError, match="put the user in 'login' and the password"):
        parse_connection({"type": "mysql", "hosts": ["root:pw@db:3306"]})
    with pytest.raises(ValueError, match="put the user in 'login'"):
        parse_connection({"type": "elasticsearch", "hosts": ["https://u:p@es:9200"]})
    with pytest.raises(ValidationError, match="credentials.password"):
        parse_connection({"type": "mysql", "hosts": ["db"], "options": {"password": "x"}})
    with pytest.raises(ValidationError, match="must name a secret"):
        parse_connection({"type": "mysql", "hosts": ["db"],
                          "credentials": {"password": "hunter2 with spaces"}})


def test_hosts_ports_and_urls() -> None:
    conn = parse_connection({"type": "elasticsearch",
                             "hosts": ["es1", "es2:9201", "https://es3", "[::1]:9202"]})
    assert [h.node for h in conn.parsed_hosts()] == ["es1:9200", "es2:9201", "es3:443",
                                                     "::1:9202"]
    assert conn.parsed_hosts()[2].url == "https://es3:443"
    with pytest.raises(ValueError, match=r"hosts\[0\].*port must be a number"):
        parse_connection({"type": "mysql", "hosts": ["db:abc"]})


def test_settings_read_connections_from_the_environment_and_the_config_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHORDFLOW_CONNECTIONS", json.dumps(
        [{"name": "wh", "type": "mysql", "hosts": "db1:3306,db2:3306"}]))
    assert Settings().connections["wh"].hosts == ["db1:3306", "db2:3306"]
    monkeypatch.delenv("CHORDFLOW_CONNECTIONS")
    config = tmp_path / "chordflow.yaml"
    config.write_text("connections:\n  mail:\n    type: smtp\n    hosts: [mx:587]\n"
                      "    login: bot\n    credentials: {password: mail_pw}\n")
    monkeypatch.setenv("CHORDFLOW_CONFIG", str(config))
    assert Settings().connections["mail"].credentials == {"password": "mail_pw"}
    config.write_text("connections:\n  bad: {type: ftp, hosts: [x]}\n")
    with pytest.raises(ValidationError, match="connection 'bad'"):
        Settings()


def test_store_definitions_beside_the_settings(mongo_url: str) -> None:
    import pymongo

    db = pymongo.MongoClient(mongo_url)[f"c{uuid.uuid4().hex[:8]}"]
    fixed = parse_connections({"fixed": {"type": "mysql", "hosts": ["db"]}})
    catalog = Catalog(fixed, db, ttl=0)
    name = f"stored-{uuid.uuid4().hex[:6]}"  # nx-27017 shares collections across tests
    stored = parse_connection({"type": "mongodb", "hosts": ["m1", "m2"],
                               "credentials": {"password": "mongo_pw"}}, name)
    assert catalog.put(stored, "admin-key") is True
    assert catalog.put(stored, "admin-key") is False  # replaced
    assert catalog.get(name) == stored
    entry = {e["name"]: e for e in catalog.entries()}[name]
    assert entry["source"] == "api" and entry["credentials"] == {"password": "mongo_pw"}
    with pytest.raises(ConnectionConflict, match="defined in the settings"):
        catalog.put(parse_connection({"type": "mysql", "hosts": ["x"]}, "fixed"))
    resolved = catalog.resolve(name, {"mongo_pw": "s3cret"})
    assert resolved.credential("password") == "s3cret"
    with pytest.raises(ConnectionInvalid, match="secret 'mongo_pw', which is not configured"):
        catalog.resolve(name, {})
    assert catalog.delete(name) is True
    with pytest.raises(ConnectionMissing, match=f"connection '{name}' is not defined"):
        catalog.get(name)


def _compile(step: dict[str, Any]) -> list[tuple[str | None, str | None, str]]:
    try:
        compile_plan(load_data({"name": "c", "steps": [step]}), default_registry())
    except ValidationFailed as exc:
        return [(e.step, e.field, e.message) for e in exc.errors]
    return []


def test_the_connection_field_is_checked_at_validation() -> None:
    assert _compile({"name": "e", "module": "echo", "connection": "wh"}) == [
        ("e", "connection", "module 'echo' takes no connection")]
    [(step, fld, message)] = _compile({
        "name": "q", "module": "mysql", "params": {"sql": "SELECT 1"},
        "connection": {"type": "mongodb", "hosts": ["m"]}})
    assert (step, fld) == ("q", "connection.type")
    assert "needs a connection of type mysql" in message
    [(step, fld, message)] = _compile({
        "name": "q", "module": "mysql", "params": {"sql": "SELECT 1"},
        "connection": {"type": "mysql"}})
    assert (step, fld) == ("q", "connection") and "hosts" in message
    assert _compile({"name": "q", "module": "mysql", "params": {"sql": "SELECT 1"},
                     "connection": {"type": "mysql", "hosts": ["db"]}}) == []


def test_a_step_naming_an_unknown_connection_fails_naming_it(run_embedded: Any) -> None:
    report = run_embedded({"name": "nope", "steps": [
        {"name": "q", "module": "mysql", "connection": "nowhere",
         "params": {"sql": "SELECT 1"}}]}, {"wh": {"type": "mysql", "hosts": ["db"]}})
    assert report["status"] == "failed"
    assert report["steps"]["q"]["error"] == (
        "step 'q', field 'connection': connection 'nowhere' is not defined (wh)")
    assert report["steps"]["q"]["attempts"] == 1  # final: retrying cannot help


def test_modules_list_their_connection_types() -> None:
    done = subprocess.run([CHORDFLOW, "modules", "--json"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    modules = {m["name"]: m for m in json.loads(done.stdout)}
    assert modules["mysql"]["connection_types"] == ["mysql"]
    assert modules["mysql"]["runs_code"] is True and modules["ssh"]["runs_code"] is True
    assert modules["mongodb"]["runs_code"] is False
    methods = {m["name"]: m for m in modules["mysql"]["methods"]}
    assert set(methods) >= {"query", "insert", "update", "upsert", "execute",
                            "show_databases", "show_tables"}
    params = {p["name"]: p for p in methods["query"]["params"]}
    assert "bound by the driver" in params["params"]["description"]
    assert {m["name"] for m in modules["mongodb"]["methods"]} >= {
        "find", "find_one", "insert", "update", "delete", "count", "aggregate"}
    assert {m["name"] for m in modules["ssh"]["methods"]} >= {
        "run", "run_script", "upload", "download"}


def test_cli_lists_shows_and_checks_local_connections(maria_port_open: bool) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "CHORDFLOW_CONNECTIONS": json.dumps({
        "maria": {"type": "mysql", "hosts": ["127.0.0.1:1", "127.0.0.1:3306"],
                  "retry_count": 1, "timeout": 2},
        "locked": {"type": "mysql", "hosts": ["db"], "credentials": {"password": "pw"}}})}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CHORDFLOW, "connections", *args], env=env, capture_output=True,
                              text=True, timeout=60, cwd=ROOT)

    listed = json.loads(cli("list", "--json").stdout)["connections"]
    assert [(c["name"], c["source"]) for c in listed] == [("locked", "settings"),
                                                           ("maria", "settings")]
    shown = cli("show", "locked")
    assert "credentials: password=pw" in shown.stdout
    locked = cli("check", "locked")
    assert locked.returncode == 1
    assert "secret 'pw', which is not configured" in locked.stdout.replace("\n", " ")
    missing = cli("show", "nowhere")
    assert missing.returncode == 2 and "connection 'nowhere' is not defined" in missing.stderr
    if maria_port_open:
        ok = cli("check", "maria")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "ok, connected to 127.0.0.1:3306" in ok.stdout


@pytest.fixture
def maria_port_open() -> bool:
    from tests.modules.conftest import MARIADB, _answers

    return _answers(*MARIADB)


class _FlakyDriver:
    """A driver whose clients are numbers, and whose first operation breaks (a unit
    test of the pool's reconnect, without a server)."""

    types = ("mysql",)

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.closed: list[int] = []

    def open(self, resolved: Any, host: Any, timeout: float) -> int:
        if host.port == 1:
            raise ConnectionRefusedError("refused")
        self.opened.append(host.node)
        return len(self.opened)

    def close(self, client: int) -> None:
        self.closed.append(client)

    def broken(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionResetError)

    def alive(self, client: int) -> bool:
        return True


def test_the_pool_reconnects_once_after_a_broken_connection() -> None:
    from chordflow.connections.catalog import resolve_credentials
    from chordflow.connections.pool import Pool

    conn = parse_connection({"type": "mysql", "hosts": ["h:1", "h:2"], "retry_count": 1})
    driver = _FlakyDriver()
    pool = Pool(resolve_credentials(conn, {}), driver)
    calls: list[int] = []

    def operation(session: Any) -> str:
        calls.append(session.client)
        if len(calls) == 1:
            raise ConnectionResetError("server went away")
        return session.node

    assert pool.run(operation) == "h:2"  # the first host refused, the second served
    assert calls == [1, 2] and driver.closed == [1]  # the broken client was dropped
    assert pool.run(lambda s: s.client) == 2  # the good one went back to the pool
    with pytest.raises(ValueError):  # the request's own error: not retried, kept
        pool.run(lambda s: (_ for _ in ()).throw(ValueError("bad SQL")))
    assert pool.run(lambda s: s.client) == 2

    strict = Pool(resolve_credentials(conn.model_copy(update={"retry_on_error": False}), {}),
                  _FlakyDriver())
    with pytest.raises(ConnectionResetError):
        strict.run(lambda s: (_ for _ in ()).throw(ConnectionResetError("gone")))
