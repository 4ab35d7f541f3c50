"""Staging through the host cache vs each step downloading its own copy.

One ``rclone serve s3`` remote holding one object (200 MB), a Redis, a MongoDB-protocol
server and two workers (each a "host" with its own stage cache directory and queue,
2 processes each). A workflow of 20 steps, ten per host, each reading the whole object:

- (a) each step runs ``rclone copyto`` itself, then reads its copy: what the replaced
  data-staging service's users did in a ``bash`` step;
- (b) each step names the object in ``stage_in`` and reads it: one download per host
  into the host's cache (cold at the start), a hard link for every step;
- (c) the floor: no workflow at all; per host, one ``rclone copyto`` and then the
  host's ten reads (two at a time, as its two processes would), both hosts at once.

Prints the wall time (submit to finished) and the bytes moved over the network for each.
Targets: (b) at least 5x faster than (a), and within 1.3x of (c).

    python bench/staging.py [--size-mb 200] [--steps 20] [--quick]

(The just-in-time tiers' measurements, 100 files made present on a primary from cold
and from warm, are a benchmark of their own.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chordflow.config import Settings  # noqa: E402
from chordflow.data.binary import find_binary  # noqa: E402
from chordflow.service import RunService  # noqa: E402
from chordflow.workflow.loader import load_data  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.servers import (  # noqa: E402
    celery_worker,
    free_port,
    mongo_server,
    redis_server,
    stop,
    wait_for_port,
    worker_env,
)

MB = 1024 * 1024
HOSTS = ("host-a", "host-b")
CONCURRENCY = 2
READ = "cat obj.bin > /dev/null && wc -c < obj.bin"


def rclone_env(port: int, user: str, password: str) -> dict[str, str]:
    """The remote ``s3`` as rclone's environment (what a step of (a) carries itself)."""
    return {"RCLONE_CONFIG": os.devnull, "RCLONE_CONFIG_S3_TYPE": "s3",
            "RCLONE_CONFIG_S3_PROVIDER": "Rclone",
            "RCLONE_CONFIG_S3_ENDPOINT": f"http://127.0.0.1:{port}",
            "RCLONE_CONFIG_S3_ACCESS_KEY_ID": user,
            "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": password}


def self_copy_doc(steps: int, env: dict[str, str]) -> dict[str, Any]:
    rclone = find_binary()
    return {"name": "bench-self-copy", "steps": [
        {"name": f"read{i}", "module": "bash", "queue": f"q-{HOSTS[i % len(HOSTS)]}",
         "params": {"cmd": f"{rclone} copyto s3:data/obj.bin obj.bin && {READ}",
                    "env": env}}
        for i in range(steps)]}


def staged_doc(steps: int) -> dict[str, Any]:
    return {"name": "bench-stage-in", "steps": [
        {"name": f"read{i}", "module": "bash", "queue": f"q-{HOSTS[i % len(HOSTS)]}",
         "stage_in": [{"source": "s3:data/obj.bin", "path": "obj.bin"}],
         "params": {"cmd": READ}}
        for i in range(steps)]}


def run(service: RunService, doc: dict[str, Any], size: int) -> tuple[float, list[Any]]:
    """Wall seconds from submit to finished, and the step records."""
    started = time.perf_counter()
    run_id = service.submit(load_data(doc))
    status = service.wait(run_id, 600, poll=0.05)
    wall = time.perf_counter() - started
    records = list(service.engine.store.get_steps(run_id).values())
    failed = [(r.name, r.error) for r in records if str(r.status) != "succeeded"]
    if not status.finished or failed:
        raise SystemExit(f"{doc['name']}: {status} {failed[:3]}")
    wrong = [r.name for r in records if r.outputs["stdout"].strip() != str(size)]
    if wrong:
        raise SystemExit(f"{doc['name']}: steps read a partial object: {wrong[:3]}")
    return wall, records


def floor(base: Path, steps: int, env: dict[str, str]) -> float:
    """One download per host, then the host's reads, both hosts at once."""
    rclone = find_binary()
    per_host = [steps // len(HOSTS) + (1 if i < steps % len(HOSTS) else 0)
                for i in range(len(HOSTS))]

    def host(i: int) -> None:
        where = base / f"floor-{i}"
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        subprocess.run([rclone, "copyto", "s3:data/obj.bin", str(where / "obj.bin")],
                       env={"PATH": os.environ["PATH"], **env}, check=True, timeout=1800)
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            list(pool.map(lambda _: subprocess.run(["sh", "-c", READ], cwd=where,
                                                   check=True, capture_output=True,
                                                   timeout=600), range(per_host[i])))

    started = time.perf_counter()
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        list(pool.map(host, range(len(HOSTS))))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="20 MB, 6 steps: a smoke run")
    args = parser.parse_args()
    size_mb, steps = (20, 6) if args.quick else (args.size_mb, args.steps)
    size = size_mb * MB
    console = Console()
    base = Path(tempfile.mkdtemp(prefix="chordflow-bench-staging-"))
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    served = base / "s3"
    (served / "data").mkdir(parents=True)
    chunk = os.urandom(MB)
    with (served / "data" / "obj.bin").open("wb") as out:
        for _ in range(size_mb):
            out.write(chunk)
    try:
        with ExitStack() as stack:
            broker, _, _ = stack.enter_context(redis_server())
            mongo = stack.enter_context(mongo_server())
            port = free_port()
            s3 = subprocess.Popen(
                [find_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", str(served)],
                env={"PATH": "/usr/bin:/bin", "HOME": str(base), "RCLONE_CONFIG": os.devnull,
                     "RCLONE_AUTH_KEY": f'"{user},{password}"'},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(stop, s3)
            wait_for_port(port, s3)
            env = rclone_env(port, user, password)
            db = f"bench{uuid.uuid4().hex[:8]}"
            remote = {"s3": {"type": "s3", "provider": "Rclone",
                             "endpoint": f"http://127.0.0.1:{port}",
                             "access_key_id": user, "secret_access_key": password}}
            caches = {host: base / f"cache-{host}" for host in HOSTS}
            for host in HOSTS:
                worker = worker_env(broker, mongo, db, base / "work" / host,
                                    CHORDFLOW_REMOTES=json.dumps(remote),
                                    CHORDFLOW_STAGE_CACHE_DIR=str(caches[host]))
                stack.enter_context(celery_worker(
                    worker, host, "--queues", f"q-{host}", "--concurrency", str(CONCURRENCY),
                    log=base / f"{host}.log"))
            service = RunService.celery(Settings(broker_url=broker, mongo_url=mongo,
                                                 mongo_db=db, workdir=base / "work" / "cli"))
            stack.callback(service.close)

            console.print(f"{steps} steps reading one {size_mb} MB object, "
                          f"{len(HOSTS)} workers x {CONCURRENCY} processes")
            wall_a, _ = run(service, self_copy_doc(steps, env), size)
            for cache in caches.values():  # cold caches: (b) downloads once per host
                shutil.rmtree(cache, ignore_errors=True)
            wall_b, records = run(service, staged_doc(steps), size)
            moved_b = sum(r.outputs["staging"]["stage_in"][0]["bytes"] for r in records
                          if r.outputs["staging"]["stage_in"][0]["cache"] == "miss")
            wall_c = floor(base, steps, env)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    table = Table(title=f"{steps} steps x one {size_mb} MB object, 2 worker hosts")
    for column in ("workload", "wall (s)", "bytes moved", "vs (b)"):
        table.add_column(column, justify="left" if column == "workload" else "right")
    rows = [("(a) each step runs rclone copy", wall_a, steps * size),
            ("(b) stage_in via the host cache", wall_b, moved_b),
            ("(c) floor: one download per host", wall_c, len(HOSTS) * size)]
    for name, wall, moved in rows:
        table.add_row(name, f"{wall:.2f}", f"{moved / MB:,.0f} MB", f"{wall / wall_b:.2f}x")
    console.print(table)
    faster, near = wall_a / wall_b, wall_b / wall_c
    console.print(f"(b) is {faster:.1f}x faster than (a) (target >= 5x: "
                  f"{'met' if faster >= 5 else 'missed'}), {near:.2f}x the floor "
                  f"(target <= 1.3x: {'met' if near <= 1.3 else 'missed'})")


if __name__ == "__main__":
    main()
