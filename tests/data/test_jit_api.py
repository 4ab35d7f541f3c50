"""Just-in-time tiers through the real parts: the replaced service's Argo events posted
to a real API, runs on a real worker, rclone moving files between ``rclone serve s3``
(the primary) and ``rclone serve webdav`` (the secondary), the tiers' state in the
MongoDB-protocol server. After each event the accounting is checked against the files
really on the primary."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from tests.data.jit_stack import CHORDFLOW, JitStack, jit_stack
from tests.servers import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "jit"
DATASET = "dataset_basetest"
ADDED = [f"{DATASET}/0210-csv.csv", f"{DATASET}/0298-csv.csv"]
OLD = [f"{DATASET}/old-1.csv", f"{DATASET}/old-2.csv"]
RUNNING = f"{DATASET}/0402-csv.csv"
BIG = f"{DATASET}/big.csv"
ADD_UID = "argo:0b9e2a53-6f3c-4a8e-9d51-7c2f3e1a8b40"
RUNNING_UID = "argo:5d1c7f0e-2b4a-4e9f-8a63-91be0c4d2f17"


@pytest.fixture(scope="module")
def stack(mongo_url: str, s3_remote, webdav_remote, tmp_path_factory) -> Iterator[JitStack]:
    with jit_stack(mongo_url, s3_remote, webdav_remote,
                   tmp_path_factory.mktemp("jit")) as built:
        yield built


def tier_of(stack: JitStack, kind: str) -> str:
    return next(name for name in stack.tiers if name.startswith(f"{kind}-"))


def post(stack: JitStack, body: bytes | str | dict[str, Any], *, content_type: str,
         role: str = "operator", tier: str | None = None) -> dict[str, Any]:
    data = json.dumps(body) if isinstance(body, dict) else body
    with stack.client(role) as api:
        answer = api.post("/api/v1/jit/events", content=data,
                          params={"tier": tier} if tier else None,
                          headers={"Content-Type": content_type})
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def event_run(stack: JitStack, body: bytes | str | dict[str, Any], *,
              content_type: str = "application/json", status: str = "succeeded",
              tier: str | None = None) -> dict[str, Any]:
    """Post an event, wait for its run; the run's only step."""
    accepted = post(stack, body, content_type=content_type, tier=tier)
    run = stack.wait(accepted["run_id"])
    assert run["status"] == status, run
    assert run["trigger"] == "jit-event" and run["workflow"] == f"jit-{accepted['tier']}"
    return dict(run["steps"][0])


def tier_view(stack: JitStack, tier: str) -> dict[str, Any]:
    with stack.client("viewer") as api:
        answer = api.get(f"/api/v1/jit/tiers/{tier}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def exact(stack: JitStack, tier: str) -> dict[str, Any]:
    """The tier as the API shows it, checked against its primary: the same files, the
    same sizes, ``used`` their sum, under capacity, nothing half copied."""
    view = tier_view(stack, tier)
    on_disk = stack.on_primary(tier)
    assert {f["path"]: f["size"] for f in view["files"]} == on_disk
    assert all(f["state"] == "present" for f in view["files"])
    assert view["used"] == sum(on_disk.values()) <= view["capacity"]
    assert view["free"] == view["capacity"] - view["used"]
    return view


def holders(view: dict[str, Any]) -> dict[str, list[str]]:
    return {f["path"]: [h for h in f["holders"] if h.startswith("argo:")]
            for f in view["files"]}


def test_the_argo_events_under_capacity_pressure_copy_and_evict_the_right_files(stack):
    tier = tier_of(stack, "argo")
    stack.put(tier, {ADDED[0]: 1000, ADDED[1]: 1000, OLD[0]: 1500, OLD[1]: 1500,
                     RUNNING: 1200, BIG: 1800})
    # ADD: the JSON file as the replaced service received it; the tier is found from
    # its endpoints and folders.
    step = event_run(stack, (FIXTURES / "ADD_workflow.json").read_bytes())
    assert sorted(step["outputs"]["copied"]) == ADDED and step["outputs"]["evicted"] == []
    assert holders(exact(stack, tier)) == {ADDED[0]: [ADD_UID], ADDED[1]: [ADD_UID]}
    # Plain JSON fills the tier (5000 of 5000 bytes); these files are held by nobody
    # once their run is over, and were used after the ADD's.
    step = event_run(stack, {"tier": tier, "files": OLD})
    assert step["outputs"]["used"] == 5000
    # RUNNING (a log preamble, then the event): 1200 bytes more. The least recently used
    # files are the ADD's, but their workflow still needs them: old-1 goes instead.
    step = event_run(stack, (FIXTURES / "RUNNING_workflow.yaml").read_text(),
                     content_type="text/plain")
    assert step["outputs"]["copied"] == [RUNNING] and step["outputs"]["evicted"] == [OLD[0]]
    view = exact(stack, tier)
    assert [f["path"] for f in view["files"]] == [*ADDED, OLD[1], RUNNING]  # LRU order
    assert view["used"] == 4700
    # SUCCEEDED (YAML): the ADD's workflow is done, its files are released, not copied.
    step = event_run(stack, (FIXTURES / "SUCCEEDED_workflow.yaml").read_text(),
                     content_type="application/yaml")
    assert (step["method"], step["outputs"]["released"]) == ("release", 2)
    assert holders(exact(stack, tier))[ADDED[0]] == []
    # Now they are the first to go.
    step = event_run(stack, {"tier": tier, "files": [BIG]})
    assert sorted(step["outputs"]["evicted"]) == ADDED
    assert step["outputs"]["bytes_evicted"] == 2000 and step["outputs"]["bytes_copied"] == 1800
    view = exact(stack, tier)
    assert [f["path"] for f in view["files"]] == [OLD[1], RUNNING, BIG]
    assert view["used"] == 4500 and holders(view)[RUNNING] == [RUNNING_UID]
    # A warm event copies nothing.
    step = event_run(stack, {"tier": tier, "files": [BIG, OLD[1]]})
    assert step["outputs"]["copied"] == [] and step["outputs"]["evicted"] == []
    # The capacity changes at run time (an admin, from the CLI): lowered below what the
    # tier holds, a run evicts least recently used unheld files down to it.
    env = {**stack.env, "CHORDFLOW_API_URL": stack.url,
           "CHORDFLOW_API_KEY": stack.keys["admin"]}
    done = subprocess.run([CHORDFLOW, "jit", "capacity", tier, "3.5kB", "--json"], env=env,
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    changed = json.loads(done.stdout)
    assert changed["capacity"] == 3500 and changed["trim_run_id"]
    trim = stack.wait(changed["trim_run_id"])["steps"][0]
    # 4500 -> 3500: RUNNING is the least recently used but held by its workflow; BIG
    # and old-2 were used together, BIG sorts first: it goes.
    assert trim["outputs"]["evicted"] == [BIG]
    view = exact(stack, tier)
    assert [f["path"] for f in view["files"]] == [RUNNING, OLD[1]]
    assert (view["capacity"], view["used"]) == (3500, 2700)
    shown = subprocess.run([CHORDFLOW, "jit", "show", tier], env=env, capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
    assert shown.returncode == 0 and RUNNING_UID in shown.stdout, shown.stderr
    with stack.client("viewer") as api:
        listed = api.get("/api/v1/runs", params={"workflow": f"jit-{tier}"}).json()["runs"]
    assert len(listed) == 7  # every event and the trim: runs of their own, recorded


def test_two_events_at_once_lose_no_update(stack):
    tier = tier_of(stack, "race")
    first = [f"p{i}.bin" for i in range(4)]
    second, third = ["n0.bin", "n1.bin"], ["n2.bin", "n3.bin"]
    stack.put(tier, dict.fromkeys(first + second + third, 1000))
    event_run(stack, {"tier": tier, "files": first})
    # Both need 2000 bytes of a full tier at the same moment: each must evict two
    # different files, and neither may undo the other's accounting.
    runs: list[dict[str, Any]] = []
    posts = [threading.Thread(target=lambda f=files, w=who: runs.append(post(
        stack, {"tier": tier, "files": f, "workflow": w},
        content_type="application/json"))) for files, who in ((second, "w1"),
                                                               (third, "w2"))]
    for thread in posts:
        thread.start()
    for thread in posts:
        thread.join(60)
    steps = [stack.wait(r["run_id"])["steps"][0] for r in runs]
    assert [s["status"] for s in steps] == ["succeeded", "succeeded"], steps
    evicted = [p for s in steps for p in s["outputs"]["evicted"]]
    assert sorted(evicted) == first  # each file evicted once, by one of them
    view = exact(stack, tier)
    assert sorted(f["path"] for f in view["files"]) == sorted(second + third)
    assert view["used"] == 4000


def test_a_file_a_run_reads_through_a_tier_is_never_evicted(stack, tmp_path):
    tier = tier_of(stack, "read")
    stack.put(tier, {"r1.csv": 1000, "r3.csv": 1500})
    started, go = tmp_path / "started", tmp_path / "go"
    workflow = {"name": "tier-read", "steps": [{
        "name": "use", "module": "bash", "timeout": 300,
        "stage_in": [{"tier": tier, "source": "r1.csv", "path": "in/r1.csv"}],
        "params": {"cmd": f"wc -c < in/r1.csv; touch {started}; "
                          f"while [ ! -e {go} ]; do sleep 0.05; done"}}]}
    with stack.client("admin") as api:
        answer = api.post("/api/v1/runs", json={"workflow": workflow})
    assert answer.status_code == 201, answer.text
    reader = answer.json()["run_id"]
    _wait_for(started, stack, reader)
    view = exact(stack, tier)
    assert [f["holders"] for f in view["files"]] == [[f"run:{reader}:use:read"]]
    # 1500 bytes wanted, 1000 free, and the only file is being read: refused, nothing
    # evicted.
    step = event_run(stack, {"tier": tier, "files": ["r3.csv"]}, status="failed")
    assert "held by" in step["error"] and "cannot hold" in step["error"]
    assert list(stack.on_primary(tier)) == ["r1.csv"]
    go.touch()
    run = stack.wait(reader)
    assert run["status"] == "succeeded", run
    staged = run["steps"][0]["outputs"]["staging"]["stage_in"][0]
    assert (staged["tier"], staged["tier_copied"], staged["bytes"]) == (tier, True, 1000)
    assert run["steps"][0]["outputs"]["stdout"].strip() == "1000"
    # The read is over: now r1 may go.
    step = event_run(stack, {"tier": tier, "files": ["r3.csv"]})
    assert step["outputs"]["evicted"] == ["r1.csv"]
    assert [f["path"] for f in exact(stack, tier)["files"]] == ["r3.csv"]


def _wait_for(path: Path, stack: JitStack, run_id: str) -> None:
    deadline = time.monotonic() + 180
    while not path.exists():
        with stack.client() as api:
            run = api.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] not in ("failed", "cancelled"), run
        assert time.monotonic() < deadline, f"the reading step did not start: {run}"
        time.sleep(0.05)


def test_bad_events_and_roles_are_refused_with_the_field(stack):
    tier = tier_of(stack, "argo")
    with stack.client("operator") as api:
        bad = api.post("/api/v1/jit/events", content='{"files": ["../x"]}',
                       headers={"Content-Type": "application/json"}, params={"tier": tier})
        assert bad.status_code == 422
        assert bad.json()["errors"][0]["field"] == "files[0]"
        nowhere = api.post("/api/v1/jit/events", json={"files": ["a"], "tier": "nope"})
        assert nowhere.status_code == 422 and "tiers: argo-" in nowhere.json()["detail"]
        assert api.patch(f"/api/v1/jit/tiers/{tier}", json={"capacity": 1}).status_code == 403
        assert api.get("/api/v1/jit/tiers/nope").status_code == 404
    with stack.client("viewer") as api:
        assert api.post("/api/v1/jit/events", json={"files": ["a"], "tier": tier}
                        ).status_code == 403
        listed = {t["name"] for t in api.get("/api/v1/jit/tiers").json()}
    assert listed == set(stack.tiers)


def test_credentials_are_absent_from_records_answers_and_logs(stack):
    """Runs after the other tests of this module: everything they left is searched."""
    secrets = [stack.s3.user, stack.s3.password, stack.dav.user, stack.dav.password]
    client = pymongo.MongoClient(stack.env["CHORDFLOW_MONGO_URL"])
    db = client[stack.env["CHORDFLOW_MONGO_DB"]]
    try:
        records = "\n".join(json.dumps(list(db[name].find()), default=str)
                            for name in db.list_collection_names())
    finally:
        client.close()
    assert "jit-event" in records and stack.answers
    places = {"MongoDB": records, "API answers": "\n".join(stack.answers),
              **{log.name: log.read_text() for log in stack.logs}}
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a credential is in the {where}"
