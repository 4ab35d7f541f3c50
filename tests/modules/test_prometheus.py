"""The prometheus module: metrics built from records, written as a node_exporter
textfile, pushed to Debian's real Pushgateway."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.servers import free_port

RECORDS = [{"host": "a", "disk": "sda", "used": 40, "ms": 0.2},
           {"host": "b", "disk": "sdb", "used": 75.5, "ms": 0.7}]
METRICS = [{"name": "disk_used_percent", "help": "Disk use", "value": "used",
            "labels": ["host", "disk"]},
           {"name": "probe_seconds", "type": "histogram", "value": "ms",
            "buckets": [0.5, 1.0]}]


def test_build_and_write_a_textfile(run_embedded: Any, tmp_path: Path) -> None:
    target = tmp_path / "textfiles" / "disks.prom"
    doc = {"name": "prom-file", "variables": {"rows": RECORDS}, "steps": [
        {"name": "build", "module": "prometheus", "method": "build",
         "params": {"data": "${variables.rows}", "metrics": METRICS}},
        {"name": "write", "module": "prometheus", "method": "write",
         "params": {"data": "${variables.rows}", "metrics": METRICS, "path": str(target)}}]}
    report = run_embedded(doc)
    assert report["status"] == "succeeded", report
    text = report["steps"]["build"]["outputs"]["text"]
    assert 'disk_used_percent{disk="sdb",host="b"} 75.5' in text
    assert 'probe_seconds_bucket{le="0.5"} 1.0' in text
    written = target.read_text()
    assert 'disk_used_percent{disk="sda",host="a"} 40.0' in written
    assert 'probe_seconds_count 2.0' in written
    assert report["steps"]["write"]["outputs"]["samples"] >= 2


def test_a_bad_record_names_its_index(run_embedded: Any) -> None:
    doc = {"name": "prom-bad", "steps": [
        {"name": "build", "module": "prometheus", "method": "build",
         "params": {"data": [{"used": 1, "host": "a", "disk": "x"},
                             {"used": "lots", "host": "b", "disk": "y"}],
                    "metrics": METRICS[:1]}}]}
    report = run_embedded(doc)
    assert report["status"] == "failed"
    assert "params.data[1].used: 'lots' is not a number" in report["steps"]["build"]["error"]


def test_push_to_a_pushgateway_with_failover(pushgateway: str, run_embedded: Any) -> None:
    job = f"cf_{uuid.uuid4().hex[:8]}"
    conn = {"type": "pushgateway", "hosts": [f"127.0.0.1:{free_port()}", pushgateway],
            "timeout": 2, "retry_count": 1}
    doc = {"name": "prom-push", "steps": [
        {"name": "push", "module": "prometheus", "method": "push", "connection": "pgw",
         "params": {"data": RECORDS, "metrics": METRICS, "job": job,
                    "grouping_key": {"instance": "batch1"}}}]}
    report = run_embedded(doc, {"pgw": conn})
    assert report["status"] == "succeeded", report
    assert report["steps"]["push"]["outputs"]["connected_node"] == \
        pushgateway.removeprefix("http://")
    scraped = httpx.get(f"{pushgateway}/metrics", timeout=10).text
    assert f'disk_used_percent{{disk="sda",host="a",instance="batch1",job="{job}"}} 40' \
        in scraped
