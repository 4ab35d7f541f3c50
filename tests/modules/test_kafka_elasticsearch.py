"""The kafka and elasticsearch modules: their requests and client settings (unit
tests), and a real server where CHORDFLOW_TEST_KAFKA / CHORDFLOW_TEST_ELASTICSEARCH
name one (skipped, saying so, elsewhere)."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pytest
from chordflow.connections.catalog import resolve_credentials
from chordflow.connections.models import Host, parse_connection
from chordflow.errors import StepFailed
from chordflow.modules import kafka
from chordflow.modules.elasticsearch import bulk_body, request_for


def test_kafka_sasl_ssl_settings() -> None:
    conn = parse_connection({"type": "kafka", "hosts": ["k1:9093"], "login": "svc",
                             "credentials": {"password": "kafka_pw"},
                             "options": {"security_protocol": "sasl_ssl",
                                         "sasl_mechanism": "SCRAM-SHA-512",
                                         "client_id": "cf", "acks": 1, "retries": 5}})
    resolved = resolve_credentials(conn, {"kafka_pw": "s3cret"})
    config = kafka.producer_config(resolved, Host("k1", 9093), 5.0)
    assert config["bootstrap_servers"] == ["k1:9093"]
    assert config["security_protocol"] == "SASL_SSL"
    assert (config["sasl_mechanism"], config["sasl_plain_username"],
            config["sasl_plain_password"]) == ("SCRAM-SHA-512", "svc", "s3cret")
    assert (config["acks"], config["retries"], config["client_id"]) == (1, 5, "cf")
    assert config["ssl_check_hostname"] is True
    assert config["max_block_ms"] == 5000


def test_kafka_refuses_an_unknown_protocol() -> None:
    conn = parse_connection({"type": "kafka", "hosts": ["k1"],
                             "options": {"security_protocol": "TLS"}})
    with pytest.raises(StepFailed, match="PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"):
        kafka.client_config(resolve_credentials(conn, {}), Host("k1", 9092), 1.0)


def test_kafka_values_are_json_unless_text() -> None:
    assert kafka.encode({"a": 1}) == b'{"a":1}'
    assert kafka.encode("plain") == b"plain"
    assert kafka.decode(b'{"a":1}') == {"a": 1}
    assert kafka.decode(b"plain") == "plain"


def test_elasticsearch_requests_escape_names_into_paths() -> None:
    assert request_for("search", {"index": "logs-*", "query": None, "size": 5}) == \
        ("POST", "/logs-%2A/_search", {}, {"query": {"match_all": {}}, "size": 5})
    assert request_for("get", {"index": "a", "id": "x/../_all"}) == \
        ("GET", "/a/_doc/x%2F..%2F_all", {}, None)
    verb, path, query, body = request_for("index", {"index": "a", "id": 7,
                                                    "document": {"k": 1}, "refresh": True})
    assert (verb, path, query, body) == ("PUT", "/a/_doc/7", {"refresh": "true"}, {"k": 1})
    assert request_for("update", {"index": "a", "id": "1", "doc": {"k": 2}, "upsert": True}
                       )[3] == {"doc": {"k": 2}, "doc_as_upsert": True}
    assert request_for("create_index", {"index": "a", "mappings": {"properties": {}}}) == \
        ("PUT", "/a", {}, {"mappings": {"properties": {}}})
    assert request_for("health", {"index": None})[:2] == ("GET", "/_cluster/health")
    with pytest.raises(StepFailed, match="params.index"):
        request_for("delete_index", {"index": ".."})


def test_elasticsearch_bulk_is_ndjson() -> None:
    text = bulk_body([{"document": {"a": 1}}, {"action": "delete", "id": 3, "index": "b"},
                      {"action": "update", "id": 4, "document": {"c": 1}}], "a")
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [{"index": {"_index": "a"}}, {"a": 1}, {"delete": {"_index": "b", "_id": "3"}},
                     {"update": {"_index": "a", "_id": "4"}}, {"doc": {"c": 1}}]
    assert text.endswith("\n")
    with pytest.raises(StepFailed, match=r"operations\[0\].id"):
        bulk_body([{"action": "create", "document": {}}], "a")


KAFKA = os.environ.get("CHORDFLOW_TEST_KAFKA")
ELASTIC = os.environ.get("CHORDFLOW_TEST_ELASTICSEARCH")


@pytest.mark.skipif(not KAFKA, reason="no Kafka: set CHORDFLOW_TEST_KAFKA=host:port "
                                      "to run against one")
def test_kafka_send_consume_list(run_embedded: Any) -> None:
    topic, group = f"cf-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    doc = {"name": "kafka", "steps": [
        {"name": "send", "module": "kafka", "method": "send", "connection": "k",
         "params": {"topic": topic, "data": [{"n": 1}, {"n": 2}], "many": True, "key": "k"}},
        {"name": "read", "module": "kafka", "method": "consume", "connection": "k",
         "depends_on": ["send"],
         "params": {"topics": topic, "group_id": group, "max_messages": 2, "timeout": 20}},
        {"name": "topics", "module": "kafka", "method": "list_topics", "connection": "k",
         "depends_on": ["send"]}]}
    report = run_embedded(doc, {"k": {"type": "kafka", "hosts": [KAFKA]}})
    assert report["status"] == "succeeded", report
    assert [m["value"] for m in report["steps"]["read"]["outputs"]["messages"]] == \
        [{"n": 1}, {"n": 2}]
    assert topic in report["steps"]["topics"]["outputs"]["topics"]


@pytest.mark.skipif(not ELASTIC, reason="no Elasticsearch: set "
                    "CHORDFLOW_TEST_ELASTICSEARCH=http://host:9200 to run against one")
def test_elasticsearch_index_search_delete(run_embedded: Any) -> None:
    index = f"cf-{uuid.uuid4().hex[:8]}"

    def step(name: str, method: str, params: dict[str, Any], after: str | None = None
             ) -> dict[str, Any]:
        return {"name": name, "module": "elasticsearch", "method": method, "connection": "es",
                "params": {"index": index, **params}, "depends_on": [after] if after else []}

    doc = {"name": "es", "steps": [
        step("mk", "create_index", {}),
        step("put", "index", {"id": "1", "document": {"t": "hello"}, "refresh": True}, "mk"),
        step("bulk", "bulk", {"operations": [{"id": "2", "document": {"t": "world"}}],
                              "refresh": True}, "put"),
        step("find", "search", {"query": {"match": {"t": "world"}}}, "bulk"),
        step("one", "get", {"id": "1"}, "find"),
        step("health", "health", {}, "one"),
        step("rm", "delete_index", {}, "health")]}
    report = run_embedded(doc, {"es": {"type": "elasticsearch", "hosts": [ELASTIC]}})
    assert report["status"] == "succeeded", report
    assert report["steps"]["find"]["outputs"]["hits"] == [{"_id": "2", "t": "world"}]
    assert report["steps"]["one"]["outputs"]["document"] == {"t": "hello"}
