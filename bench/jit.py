"""Just-in-time tiers: how long making 100 files present on a primary takes.

One ``rclone serve s3`` remote and one ``rclone serve webdav``, one the primary and
the other the secondary (``--primary``: s3, as the replaced service's MinIO, by
default), a Redis, a MongoDB-protocol server, two workers and the API. Each
measurement posts events to ``POST /api/v1/jit/events`` and waits for their runs:

- cold: one event listing 100 files, none on the primary (100 copies);
- warm: the same event again (every file present: nothing copied, one state update);
- cold, 10 events at once: ten events of 10 files each, posted together (the tier's
  one document changed by compare-and-set under contention);
- cold under pressure: 100 new files into a full tier (100 evictions, 100 copies).

Prints, for each, the wall time (first POST to the last run finished), the time inside
the runs' steps, and the bytes copied.

    python bench/jit.py [--files 100] [--size-kb 256] [--primary s3|webdav]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.api.conftest import make_key, start_api  # noqa: E402
from tests.data.rclone_servers import rclone_server, remotes_env  # noqa: E402
from tests.servers import (  # noqa: E402
    celery_worker,
    mongo_server,
    redis_server,
    stop_group,
    worker_env,
)

TIER = "bench"


def post_and_wait(api: httpx.Client, events: list[dict[str, Any]]) -> tuple[float, float, int]:
    """(wall seconds, seconds inside the steps, bytes copied) for ``events`` at once."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(events)) as pool:
        answers = list(pool.map(lambda e: api.post("/api/v1/jit/events", json=e), events))
    for answer in answers:
        answer.raise_for_status()
    inside, copied = 0.0, 0
    for answer in answers:
        run_id = answer.json()["run_id"]
        while True:
            run = api.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.02)
        step = run["steps"][0]
        if run["status"] != "succeeded":
            raise SystemExit(f"run {run_id} {run['status']}: {step.get('error')}")
        inside += step["duration_seconds"] or 0.0
        copied += step["outputs"]["bytes_copied"]
    return time.monotonic() - started, inside, copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--size-kb", type=int, default=256)
    parser.add_argument("--primary", choices=("s3", "webdav"), default="s3")
    args = parser.parse_args()
    # A timeout's SIGTERM unwinds the stack below, so every server it started stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    n, size = args.files, args.size_kb * 1024
    base = Path(tempfile.mkdtemp(prefix="chordflow-bench-jit-"))
    rows: list[tuple[str, float, float, int]] = []
    with ExitStack() as stack:
        s3 = stack.enter_context(rclone_server("s3"))
        dav = stack.enter_context(rclone_server("webdav"))
        primary, secondary = (s3, dav) if args.primary == "s3" else (dav, s3)
        (primary.root / "fast").mkdir()
        origin = secondary.root / "origin"
        for i in range(3 * n):
            path = origin / f"set{i // n}" / f"f{i:04d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(bytes([i % 251]) * size)
        mongo = stack.enter_context(mongo_server())
        broker, _, _ = stack.enter_context(redis_server())
        tiers = {TIER: {"primary": "scratch:fast/cache", "secondary": "archive:origin",
                        "capacity": 2 * n * size, "transfers": 8}}
        env = worker_env(broker, mongo, f"b{uuid.uuid4().hex[:8]}", base / "work",
                         **remotes_env({"scratch": primary, "archive": secondary}),
                         CHORDFLOW_JIT_TIERS=json.dumps(tiers))
        for name in ("w1", "w2"):
            stack.enter_context(celery_worker(env, name, "--concurrency", "4",
                                              log=base / f"{name}.log"))
        key = make_key(env, "bench", "operator")
        proc, url = start_api(env, base / "api.log")
        stack.callback(stop_group, proc)
        api = stack.enter_context(httpx.Client(
            base_url=url, timeout=300, headers={"Authorization": f"Bearer {key}"}))
        files = [[f"set{s}/f{s * n + i:04d}.bin" for i in range(n)] for s in range(3)]
        one = {"tier": TIER, "files": files[0]}
        rows.append((f"cold: 1 event, {n} files", *post_and_wait(api, [one])))
        rows.append((f"warm: the same event, {n} files present", *post_and_wait(api, [one])))
        tens = [{"tier": TIER, "files": files[1][i:i + n // 10]} for i in range(0, n, n // 10)]
        rows.append((f"cold: 10 events of {n // 10} files at once",
                     *post_and_wait(api, tens)))
        # The tier is full (2n files): n new ones evict the n least recently used.
        rows.append((f"cold, full tier: {n} files, {n} evictions",
                     *post_and_wait(api, [{"tier": TIER, "files": files[2]}])))
    table = Table(title=f"Just-in-time tier: {n} files of {args.size_kb} KiB, rclone "
                        f"serve {secondary.kind} -> rclone serve {primary.kind}")
    for column in ("case", "wall (s)", "in steps (s)", "copied (MB)"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for case, wall, inside, copied in rows:
        table.add_row(case, f"{wall:.2f}", f"{inside:.2f}", f"{copied / 1e6:.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
