"""The mongodb module on the session's MongoDB-protocol server (nx-27017 or MONGO_URL)."""

from __future__ import annotations

import os
import uuid
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers import free_port


def _conn(mongo_url: str, **extra: Any) -> dict[str, Any]:
    netloc = urlsplit(mongo_url).netloc.rsplit("@", 1)[-1]
    return {"type": "mongodb", "hosts": [netloc], "options": {"database": "cfmod"},
            "retry_count": 1, **extra}


def _step(name: str, method: str, params: dict[str, Any], after: str | None = None
          ) -> dict[str, Any]:
    step = {"name": name, "module": "mongodb", "method": method, "connection": "docs",
            "params": params}
    if after:
        step["depends_on"] = [after]
    return step


def test_insert_find_update_count_delete(mongo_url: str, run_embedded: Any) -> None:
    coll = f"people_{uuid.uuid4().hex[:8]}"  # nx-27017 shares collections across tests
    dead = f"127.0.0.1:{free_port()}"
    conn = _conn(mongo_url)
    conn["hosts"] = [dead, *conn["hosts"]]  # the first host is down: fail over
    conn["timeout"] = 2
    doc = {"name": "mongo-crud", "variables": {"who": "bo"}, "steps": [
        _step("ins", "insert", {"collection": coll, "data": [
            {"name": "ada", "n": 1}, {"name": "bo", "n": 2}, {"name": "cy", "n": 3}]}),
        _step("upd", "update", {"collection": coll, "query": {"name": "bo"},
                                "data": {"n": 20}}, "ins"),
        _step("find", "find", {"collection": coll, "query": {"n": {"$gte": 2}},
                               "projection": {"_id": 0}, "sort": [["n", 1]]}, "upd"),
        _step("one", "find_one", {"collection": coll,
                                  "query": {"name": "${variables.who}"},
                                  "projection": {"_id": 0, "n": 1}}, "upd"),
        _step("del", "delete", {"collection": coll, "query": {"name": "ada"}}, "find"),
        _step("count", "count", {"collection": coll}, "del"),
    ]}
    report = run_embedded(doc, {"docs": conn})
    assert report["status"] == "succeeded", report
    steps = report["steps"]
    assert steps["ins"]["outputs"]["count"] == 3
    assert all(isinstance(i, str) for i in steps["ins"]["outputs"]["inserted_ids"])
    assert steps["upd"]["outputs"]["matched"] == 1
    assert steps["find"]["outputs"]["documents"] == [{"name": "cy", "n": 3},
                                                     {"name": "bo", "n": 20}]
    assert steps["one"]["outputs"] == {"document": {"n": 20}, "found": True,
                                       "connected_node": conn["hosts"][1]}
    assert steps["del"]["outputs"]["deleted"] == 1
    assert steps["count"]["outputs"]["count"] == 2
    assert steps["count"]["outputs"]["connected_node"] == conn["hosts"][1]


def test_aggregate(mongo_url: str, run_embedded: Any) -> None:
    if not os.environ.get("MONGO_URL"):
        pytest.skip("nx-27017 (the test MongoDB-protocol server) has no aggregation; "
                    "set MONGO_URL to a real MongoDB to run this")
    coll = f"agg_{uuid.uuid4().hex[:8]}"
    doc = {"name": "mongo-agg", "steps": [
        _step("ins", "insert", {"collection": coll, "data": [{"k": "a", "v": 1},
                                                            {"k": "a", "v": 2}]}),
        _step("agg", "aggregate", {"collection": coll, "pipeline": [
            {"$group": {"_id": "$k", "total": {"$sum": "$v"}}}]}, "ins")]}
    report = run_embedded(doc, {"docs": _conn(mongo_url)})
    assert report["steps"]["agg"]["outputs"]["documents"] == [{"_id": "a", "total": 3}]


def test_a_database_is_required(mongo_url: str, run_embedded: Any) -> None:
    conn = _conn(mongo_url, options={})
    doc = {"name": "mongo-nodb", "steps": [_step("c", "count", {"collection": "x"})]}
    report = run_embedded(doc, {"docs": conn})
    assert report["status"] == "failed"
    assert "params.database" in report["steps"]["c"]["error"]
