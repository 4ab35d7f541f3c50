"""The dashboard in headless Chromium: time to first render and to a live update for
runs of 10, 500 and 2,000 steps, and the API calls and bytes each page needs.

Starts a Redis, a MongoDB-protocol server (``MONGO_URL``, else nx-27017), one worker
(``chordflow worker``, 2 prefork processes), ``chordflow api`` with an admin key, and
Debian's Chromium (``/usr/bin/chromium``) through Playwright. For each size, a run of a
``gate`` step (a shell loop waiting for a file) followed by N-1 ``echo`` steps that
depend on it:

- first render: from navigation to the page showing every step of the run's DAG
  (laid out by dagre up to 250 steps, collapsed by depth beyond);
- live update: from the gate step's end as the store records it (``finished_at``) to
  its node turning green in the page (a MutationObserver's clock; one machine, one
  clock), which is the event stream's poll, the workers' event linger and the page;
- calls and bytes: the API requests the page made until its first render, and the
  bytes of their bodies (the event stream, which stays open, counted as one call).

Then the other pages (runs list, a workflow, workers, admin) the same way, without a
live update. ``--screenshots DIR`` also saves the PNGs of docs/dashboard.md there
(``--only-screenshots``: without measuring, a minute instead of several).

    python bench/dashboard.py [--screenshots docs/img [--only-screenshots]]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.dashboard.conftest import chromium_path  # noqa: E402
from tests.servers import (  # noqa: E402
    free_port,
    mongo_server,
    redis_server,
    stop_group,
    wait_for_port,
    worker_env,
)

ROOT = Path(__file__).resolve().parent.parent
CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
SIZES = (10, 500, 2000)


@contextmanager
def cluster(workdir: Path) -> Iterator[tuple[str, str]]:
    """(the API's URL, an admin key) on a fresh Redis, MongoDB and worker."""
    with redis_server() as (broker, _, _), mongo_server() as mongo:
        env = worker_env(broker, mongo, f"dash{uuid.uuid4().hex[:8]}", workdir,
                         CHORDFLOW_VISIBILITY_TIMEOUT="3600")
        made = subprocess.run([CHORDFLOW, "keys", "create", "--name", "admin", "--role",
                               "admin", "--json"], env=env, capture_output=True, text=True,
                              timeout=120, cwd=ROOT, check=True)
        key = json.loads(made.stdout)["key"]
        with (workdir / "worker.log").open("wb") as out:
            worker = subprocess.Popen([CHORDFLOW, "worker", "--hostname", "bench@%h",
                                       "--concurrency", "2", "--loglevel", "WARNING"],
                                      env=env, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True, cwd=ROOT)
        port = free_port()
        with (workdir / "api.log").open("wb") as out:
            api = subprocess.Popen([CHORDFLOW, "api", "--host", "127.0.0.1", "--port",
                                    str(port)], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        try:
            wait_for_port(port, api, log=workdir / "api.log")
            yield f"http://127.0.0.1:{port}", key
        finally:
            stop_group(api)
            stop_group(worker)


def gated(n: int, flag: Path) -> dict[str, Any]:
    """A gate step that waits for ``flag``, then n-1 echo steps after it."""
    gate = {"name": "gate", "module": "bash",
            "params": {"cmd": f"while [ ! -e {flag} ]; do sleep 0.05; done"}}
    return {"name": f"bench-{n}", "steps": [gate] + [
        {"name": f"s{i:04d}", "module": "echo", "depends_on": ["gate"], "params": {"i": i}}
        for i in range(n - 1)]}


class Traffic:
    """The API requests a page makes, and their bodies' bytes."""

    def __init__(self, page: Any):
        self.responses: list[Any] = []
        page.on("response", self.seen)

    def seen(self, response: Any) -> None:
        self.responses.append(response)

    def reset(self) -> None:
        self.responses.clear()

    def totals(self) -> tuple[int, int]:
        calls = [r for r in self.responses if "/api/v1/" in r.url or "/ui/session" in r.url]
        size = 0
        for response in calls:
            if "text/event-stream" in (response.headers.get("content-type") or ""):
                continue  # open until the run ends: counted as a call, not in bytes
            try:
                size += len(response.body())
            except Exception:  # a body the browser did not keep (an aborted request)
                continue
        return len(calls), size


#: Notes (in window.gateSeen) when the gate's node turns green, by the page's clock.
WATCH_GATE = """() => {
  window.gateSeen = null;
  const node = document.querySelector('#dag [data-step="gate"]');
  new MutationObserver((_, observer) => {
    if (node.dataset.status === 'succeeded') {
      window.gateSeen = Date.now() / 1000;
      observer.disconnect();
    }
  }).observe(node, {attributes: true});
}"""


def fresh(page: Any, traffic: Traffic) -> None:
    """Leave the dashboard (its streams and timers stop), then count from zero: each
    page is measured as a first visit, its session call included."""
    page.goto("about:blank")
    traffic.reset()


def measure_run(page: Any, traffic: Traffic, http: httpx.Client, n: int,
                workdir: Path) -> dict[str, Any]:
    flag = workdir / f"gate-{n}-{uuid.uuid4().hex[:6]}"
    made = http.post("/api/v1/runs", json={"workflow": gated(n, flag)})
    made.raise_for_status()
    run_id = made.json()["run_id"]
    try:
        while http.get(f"/api/v1/runs/{run_id}").json()["steps"][0]["status"] != "running":
            time.sleep(0.1)
        fresh(page, traffic)
        t0 = time.perf_counter()
        page.goto(f"/#/runs/{run_id}")
        # Locators, not wait_for_function: the page's CSP forbids evaluating strings.
        page.locator("#dag [data-step]").nth(n - 1).wait_for(timeout=120_000)
        page.locator('#dag [data-step="gate"][data-status="running"]').wait_for(timeout=60_000)
        first = time.perf_counter() - t0
        assert page.locator("#dag [data-step]").count() == n
        calls, size = traffic.totals()
        page.evaluate(WATCH_GATE)
        flag.touch()
        page.locator('#dag [data-step="gate"][data-status="succeeded"]').wait_for(
            timeout=60_000)
        seen = page.evaluate("window.gateSeen")
        gate = http.get(f"/api/v1/runs/{run_id}").json()["steps"][0]
        finished = _unix(gate["finished_at"])
        return {"page": f"run of {n:,} steps", "first": first, "live": seen - finished,
                "calls": calls, "bytes": size, "run_id": run_id}
    finally:
        http.post(f"/api/v1/runs/{run_id}/cancel")


def _unix(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def measure_page(page: Any, traffic: Traffic, label: str, hash_: str,
                 ready: str) -> dict[str, Any]:
    fresh(page, traffic)
    t0 = time.perf_counter()
    page.goto(f"/{hash_}")
    page.wait_for_selector(ready, timeout=60_000)
    page.wait_for_load_state("networkidle")
    first = time.perf_counter() - t0
    calls, size = traffic.totals()
    return {"page": label, "first": first, "live": None, "calls": calls, "bytes": size}


def demo_data(http: httpx.Client, workdir: Path) -> dict[str, str]:
    """A stored workflow with two versions, a finished run with a failed step, a
    schedule: what the screenshots show."""
    name = "sales-report"
    v1 = (f"# Daily sales report\nname: {name}\nvariables:\n  region: emea\n  days: 7\n"
          "steps:\n  - name: fetch\n    module: echo\n"
          "    params: {region: \"${variables.region}\"}\n"
          "  - name: each_store\n    module: echo\n    foreach: [north, south, east, west]\n"
          "    params: {store: \"${item}\"}\n    depends_on: [fetch]\n"
          "  - name: total\n    module: echo\n    depends_on: [each_store]\n")
    v2 = v1.replace("  days: 7\n", "  days: 30\n") + (
        "  - name: publish\n    module: python\n    depends_on: [total]\n"
        "    params: {function: \"tests.dashboard.steps:explode\", args: [30]}\n")
    yaml = {"Content-Type": "application/yaml"}
    http.post("/api/v1/workflows", content=v1, headers=yaml).raise_for_status()
    http.put(f"/api/v1/workflows/{name}", content=v2, headers=yaml).raise_for_status()
    run_id = http.post(f"/api/v1/workflows/{name}/runs", json={}).json()["run_id"]
    while http.get(f"/api/v1/runs/{run_id}").json()["status"] not in ("failed", "succeeded"):
        time.sleep(0.2)
    http.post(f"/api/v1/workflows/{name}/runs",
              json={"variables": {"region": "apac"}}).raise_for_status()
    http.post("/api/v1/schedules", json={"workflow": name, "cron": "0 6 * * *",
                                         "timezone": "Europe/Paris"}).raise_for_status()
    return {"workflow": name, "run": run_id}


def screenshots(page: Any, out: Path, demo: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shots = [("dashboard-runs.png", "#/runs", "#runs-list table"),
             ("dashboard-run.png", f"#/runs/{demo['run']}", "#dag [data-step]"),
             ("dashboard-step.png", f"#/runs/{demo['run']}/steps/publish", "#step-traceback"),
             ("dashboard-workflow.png", f"#/workflows/{demo['workflow']}", "#diff .diff"),
             ("dashboard-workers.png", "#/workers", "#workers table")]
    for name, hash_, ready in shots:
        page.goto(f"/{hash_}")
        page.wait_for_selector(ready, timeout=60_000)
        page.wait_for_timeout(800)  # the live stream's first events
        if name == "dashboard-workflow.png":  # the versions and their diff, below the text
            page.evaluate("document.querySelector('#versions-title').scrollIntoView()")
        page.screenshot(path=str(out / name))
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"/#/runs/{demo['run']}")
    page.wait_for_selector("#dag [data-step]")
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / "dashboard-phone.png"))
    page.set_viewport_size({"width": 1280, "height": 800})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshots", type=Path, help="save the docs' PNGs here")
    parser.add_argument("--only-screenshots", action="store_true",
                        help="with --screenshots: save them without measuring")
    args = parser.parse_args()
    if args.only_screenshots and not args.screenshots:
        parser.error("--only-screenshots needs --screenshots DIR")
    path = chromium_path()
    if path is None:
        raise SystemExit("Debian's chromium package is needed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="chordflow-dashboard-"))
    rows: list[dict[str, Any]] = []
    with cluster(workdir) as (url, key), sync_playwright() as playwright, \
            httpx.Client(base_url=url, timeout=600,
                         headers={"Authorization": f"Bearer {key}"}) as http:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=["--no-sandbox"])
        try:
            context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
            context.request.post("/ui/session", data={"key": key})
            page = context.new_page()
            traffic = Traffic(page)
            demo = demo_data(http, workdir)
            page.goto("/")
            page.wait_for_selector("#runs-list")
            for n in () if args.only_screenshots else SIZES:
                rows.append(measure_run(page, traffic, http, n, workdir))
                console.print(rows[-1])
            for label, hash_, ready in (
                    ("runs list", "#/runs", "#runs-list table"),
                    ("a workflow (2 versions, diff)", f"#/workflows/{demo['workflow']}",
                     "#diff .diff"),
                    ("workflows", "#/workflows", "[data-workflow]"),
                    ("workers", "#/workers", "#workers table"),
                    ("admin", "#/admin", "#audit table")) if not args.only_screenshots else ():
                rows.append(measure_page(page, traffic, label, hash_, ready))
                console.print(rows[-1])
            if args.screenshots:
                screenshots(page, args.screenshots, demo)
        finally:
            browser.close()
    if args.only_screenshots:
        return
    table = Table(title="The dashboard in headless Chromium (one worker, 2 processes)")
    for col in ("page", "first render (s)", "live update (s)", "API calls", "API bytes"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for row in rows:
        table.add_row(row["page"], f"{row['first']:.2f}",
                      "—" if row["live"] is None else f"{row['live']:.2f}",
                      str(row["calls"]), f"{row['bytes']:,}")
    console.print(table)


if __name__ == "__main__":
    main()
