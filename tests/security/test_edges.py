"""Secure defaults around the edges: Flower needs a login, worker metrics listen on
this host only, the API's documents can be turned off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.api.conftest import start_api
from tests.servers import ROOT, celery_worker, free_port, stop_group

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")


def test_flower_refuses_to_start_without_a_login(celery_stack):
    env = {k: v for k, v in celery_stack.env().items() if not k.startswith("FLOWER_")}
    done = subprocess.run([CHORDFLOW, "flower", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert "Flower needs a login" in done.stderr and "--no-login" in done.stderr


def listening_addresses(port: int) -> set[str]:
    """The local addresses a TCP socket listens on at ``port`` (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_worker_metrics_listen_on_this_host_only_unless_told(celery_stack, tmp_path):
    port = free_port()
    log = tmp_path / "metrics-worker.log"
    with celery_worker(celery_stack.env(), "metrics-local", "--queues", "nothing-here",
                       "--metrics-port", str(port), log=log):
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).status_code == 200
    port = free_port()
    with celery_worker(celery_stack.env(), "metrics-all", "--queues", "nothing-here",
                       "--metrics-port", str(port), "--metrics-host", "0.0.0.0",
                       log=tmp_path / "metrics-all.log"):
        assert listening_addresses(port) == {"00000000"}  # every address


def test_the_api_documents_can_be_turned_off(celery_stack, tmp_path):
    proc, url = start_api(celery_stack.env(CHORDFLOW_API_DOCS="false"), tmp_path / "api.log")
    try:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(url + path, timeout=10).status_code == 404, path
        assert httpx.get(url + "/api/v1/health", timeout=10).status_code == 200
    finally:
        stop_group(proc)
