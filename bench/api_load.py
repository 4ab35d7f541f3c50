"""The HTTP API under concurrent clients, side by side with its peer.

Measures submissions per second and p50/p99 latency of ``POST /api/v1/runs`` (a
10-step workflow, with auth, validation, compilation and the run's records) and of
``GET /api/v1/runs/{id}`` (a run with every step), against the floor of the replaced
FastAPI + MongoDB engine (bench/api_peer.py: store the document, send one message;
read it back). Both are served by uvicorn with the same number of worker processes,
on one Redis and one MongoDB-protocol server started by this script. No Celery worker
runs: this measures the front door, not execution (submitted runs stay queued).

    python bench/api_load.py [--clients 16] [--requests 1000] [--api-workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.servers import (  # noqa: E402
    ROOT,
    free_port,
    mongo_server,
    redis_server,
    stop_group,
    wait_for_port,
    worker_env,
)

BIN = Path(sys.executable).parent


def ten_steps() -> dict[str, Any]:
    steps = [{"name": "s0", "module": "echo", "params": {"x": "${variables.x}"}}]
    steps += [{"name": f"s{i}", "module": "echo", "depends_on": [f"s{i - 1}"],
               "params": {"prev": f"${{steps.s{i - 1}.outputs}}"}} for i in range(1, 10)]
    return {"name": "load", "variables": {"x": 1}, "steps": steps}


def serve(argv: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([*argv, "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
    wait_for_port(port, proc, log=log, timeout=60)
    time.sleep(1.0)  # every uvicorn worker process is up
    return proc, f"http://127.0.0.1:{port}"


async def hammer(url: str, method: str, paths: list[str], body: Any, clients: int,
                 headers: dict[str, str]) -> tuple[float, list[float]]:
    """Send one request per path with ``clients`` at a time; (seconds, latencies)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for path in paths:
        queue.put_nowait(path)
    latencies: list[float] = []

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            while not queue.empty():
                path = queue.get_nowait()
                t0 = time.perf_counter()
                response = await http.request(method, path, json=body)
                latencies.append(time.perf_counter() - t0)
                assert response.status_code < 300, response.text

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


def measure(url: str, submit: str, status: str, n: int, clients: int,
            headers: dict[str, str], body: dict[str, Any], id_field: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        await hammer(url, "POST", [submit] * 20, body, clients, headers)  # warm up
        seconds, post = await hammer(url, "POST", [submit] * n, body, clients, headers)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
            some = (await http.post(submit, json=body)).json()[id_field]
        gseconds, get = await hammer(url, "GET", [status.format(some)] * n, None, clients,
                                     headers)
        return {"post_rps": n / seconds, "post_p50": pct(post, 50), "post_p99": pct(post, 99),
                "get_rps": n / gseconds, "get_p50": pct(get, 50), "get_p99": pct(get, 99)}
    return asyncio.run(go())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--api-workers", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="chordflow-apiload-"))
    with redis_server() as (broker, _, _), mongo_server() as mongo:
        env = worker_env(broker, mongo, f"load{uuid.uuid4().hex[:8]}", work)
        made = subprocess.run([str(BIN / "chordflow"), "keys", "create", "--name", "bench",
                               "--role", "operator", "--json"], env=env, capture_output=True,
                              text=True, timeout=60, check=True, cwd=ROOT)
        key = made.stdout.strip().split('"key": "')[1].split('"')[0]
        workers = ["--workers", str(args.api_workers)]
        ours_proc, ours_url = serve([str(BIN / "chordflow"), "api", *workers], env,
                                    work / "api.log")
        peer_proc, peer_url = serve([str(BIN / "uvicorn"), "bench.api_peer:app", *workers],
                                    env, work / "peer.log")
        try:
            ours = measure(ours_url, "/api/v1/runs", "/api/v1/runs/{}", args.requests,
                           args.clients, {"Authorization": f"Bearer {key}"},
                           {"workflow": ten_steps()}, "run_id")
            peer = measure(peer_url, "/submit", "/status/{}", args.requests, args.clients,
                           {}, ten_steps(), "workflow_id")
        finally:
            stop_group(ours_proc)
            stop_group(peer_proc)
    table = Table(title=f"HTTP API: {args.clients} concurrent clients, {args.requests} "
                        f"requests each, {args.api_workers} API worker processes")
    for col in ("measure", "peer (FastAPI + MongoDB floor)", "chordflow", "chordflow / peer"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    rows = [("POST submissions/s", "post_rps", True), ("POST p50 ms", "post_p50", False),
            ("POST p99 ms", "post_p99", False), ("GET run/s", "get_rps", True),
            ("GET p50 ms", "get_p50", False), ("GET p99 ms", "get_p99", False)]
    for label, key_, _higher in rows:
        table.add_row(label, f"{peer[key_]:.1f}", f"{ours[key_]:.1f}",
                      f"{ours[key_] / peer[key_]:.2f}x")
    console.print(table)
    console.print("chordflow's POST validates and compiles the workflow, checks the key, "
                  "records the run and its 10 steps, and queues its first step; the "
                  "peer stores one document and sends one message.")


if __name__ == "__main__":
    main()
