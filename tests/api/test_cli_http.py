"""The ``chordflow`` command over HTTP (submit, runs, logs, workflows, and status,
cancel and rerun with CHORDFLOW_API_URL set), run as a real subprocess against a real
uvicorn server, real workers, Redis and MongoDB."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.api.conftest import Api
from tests.servers import ROOT, free_port

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
FINISHED = ("succeeded", "failed", "cancelled")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def env_for(api: Api, role: str | None = "author", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in api.env.items() if k != "CHORDFLOW_API_KEY"}
    env["CHORDFLOW_API_URL"] = api.url
    if role is not None:
        env["CHORDFLOW_API_KEY"] = api.keys[role]
    return {**env, **extra}


def cli(api: Api, *args: str, role: str | None = "author", timeout: float = 90,
        **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHORDFLOW, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env_for(api, role, **extra))


def write(tmp_path: Path, document: dict[str, Any], suffix: str = ".yaml") -> str:
    path = tmp_path / f"{unique('wf')}{suffix}"
    path.write_text(json.dumps(document) if suffix == ".json" else yaml.safe_dump(document))
    return str(path)


def good(name: str) -> dict[str, Any]:
    return {"name": name, "variables": {"x": 1}, "steps": [
        {"name": "a", "module": "echo", "params": {"x": "${variables.x}"}},
        {"name": "b", "module": "bash", "params": {"cmd": "echo hi"}, "depends_on": ["a"]}]}


def with_step(name: str, cmd: str) -> dict[str, Any]:
    return {"name": name, "steps": [
        {"name": "a", "module": "echo", "params": {"x": 1}},
        {"name": "b", "module": "bash", "params": {"cmd": cmd}, "depends_on": ["a"]}]}


def run_of(api: Api, run_id: str) -> dict[str, Any]:
    with api.client("viewer") as client:
        response = client.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


def wait_until(api: Api, run_id: str, statuses: tuple[str, ...],
               timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = run_of(api, run_id)
        if run["status"] in statuses:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(0.1)


def step_started(run: dict[str, Any], step: str) -> bool:
    return any(s["name"] == step and s["status"] == "running" for s in run["steps"])


# -- submit -------------------------------------------------------------------------------

def test_submit_wait_json_reports_the_run(api: Api, tmp_path: Path) -> None:
    name = unique("cli-ok")
    done = cli(api, "submit", write(tmp_path, good(name), ".json"), "--wait", "--json",
               "--var", "x=7")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)  # stdout is the GET /runs/{id} document alone
    assert run["status"] == "succeeded" and run["workflow"] == name
    assert run["variables"] == {"x": 7}
    a, b = run["steps"]
    assert (a["name"], a["outputs"]) == ("a", {"x": 7})
    assert b["outputs"]["stdout"] == "hi\n"
    assert run["run_id"] in done.stderr  # "run ... waiting" goes to stderr


def test_submit_wait_of_a_failing_run_exits_1(api: Api, tmp_path: Path) -> None:
    done = cli(api, "submit", write(tmp_path, with_step(unique("cli-fail"), "exit 3")),
               "--wait")
    assert done.returncode == 1, done.stderr
    assert ": failed" in done.stdout
    assert "b: failed" in done.stdout and "a: succeeded" in done.stdout
    assert "2 steps: 1 failed, 1 succeeded; wall time " in done.stdout  # the summary line


def test_submit_invalid_workflow_exits_2_naming_step_and_field(api: Api,
                                                                 tmp_path: Path) -> None:
    bad = {"name": unique("cli-bad"), "steps": [
        {"name": "a", "module": "nope"},
        {"name": "b", "module": "echo", "depends_on": ["missing"]}]}
    done = cli(api, "submit", write(tmp_path, bad), "--wait")
    assert done.returncode == 2
    assert "step 'a', field 'module'" in done.stderr
    assert "step 'b', field 'depends_on'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    unknown_var = cli(api, "submit", write(tmp_path, good(unique("cli-var"))),
                      "--var", "nope=1")
    assert unknown_var.returncode == 2 and "nope" in unknown_var.stderr
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("steps: [unclosed")
    broken = cli(api, "submit", str(not_yaml))
    assert broken.returncode == 2 and "not valid JSON or YAML" in broken.stderr
    missing = cli(api, "submit", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_submit_names_an_unnamed_workflow_after_its_file(api: Api, tmp_path: Path) -> None:
    name = unique("cli-stem")
    path = tmp_path / f"{name}.yaml"
    document = good("x")
    del document["name"]
    path.write_text(yaml.safe_dump(document))
    done = cli(api, "submit", str(path), "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["workflow"] == name


def test_submit_then_status_logs_and_cancel(api: Api, tmp_path: Path) -> None:
    name = unique("cli-slow")
    done = cli(api, "submit", write(tmp_path, with_step(name, "echo started; sleep 60")))
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()  # the run id alone on stdout
    assert len(run_id) == 32 and "\n" not in run_id
    wait_until(api, run_id, ("running",))
    deadline = time.monotonic() + 30
    while not step_started(run_of(api, run_id), "b"):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    status = cli(api, "status", run_id)
    assert status.returncode == 0, status.stderr
    assert f"run {run_id}: running" in status.stdout
    assert "a: succeeded (attempts 1)" in status.stdout and "b: running" in status.stdout

    logs = cli(api, "logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "run_created" in logs.stdout and "step_started b" in logs.stdout
    only_a = cli(api, "logs", run_id, "--step", "a")
    assert "step_succeeded a" in only_a.stdout and "step_started b" not in only_a.stdout

    cancelled = cli(api, "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"run {run_id}: cancelled"
    run = wait_until(api, run_id, FINISHED)
    assert run["status"] == "cancelled"

    again = cli(api, "cancel", run_id)
    assert again.returncode == 2
    assert "only a pending or running run can be cancelled" in again.stderr
    as_json = cli(api, "status", run_id, "--json")
    report = json.loads(as_json.stdout)
    assert report["status"] == "cancelled" and report["steps"]["b"]["status"] == "cancelled"


def test_status_over_http_prints_what_status_from_mongodb_prints(api: Api,
                                                                   tmp_path: Path) -> None:
    done = cli(api, "submit", write(tmp_path, good(unique("cli-same"))), "--wait", "--json")
    run_id = json.loads(done.stdout)["run_id"]
    over_http = cli(api, "status", run_id, "--json")
    direct = subprocess.run([CHORDFLOW, "status", run_id, "--json"], capture_output=True,
                            text=True, timeout=60, cwd=ROOT,
                            env={k: v for k, v in api.env.items()
                                 if k not in ("CHORDFLOW_API_URL", "CHORDFLOW_API_KEY")})
    assert over_http.returncode == direct.returncode == 0, (over_http.stderr, direct.stderr)
    assert json.loads(over_http.stdout) == json.loads(direct.stdout)
    text = cli(api, "status", run_id)
    assert text.stdout.splitlines()[0] == f"run {run_id}: succeeded"


def test_unknown_run_exits_2_with_the_servers_reason(api: Api) -> None:
    missing = uuid.uuid4().hex
    for command in ("status", "cancel", "rerun", "logs"):
        done = cli(api, command, missing)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert missing in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_while_waiting_cancels_the_run(api: Api, tmp_path: Path) -> None:
    name = unique("cli-int")
    proc = subprocess.Popen([CHORDFLOW, "submit", write(tmp_path, with_step(name, "sleep 60")),
                             "--wait"], cwd=ROOT, env=env_for(api), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        run_id = None
        with api.client("viewer") as client:
            while run_id is None or not step_started(run_of(api, run_id), "b"):
                assert time.monotonic() < deadline and proc.poll() is None
                found = client.get("/api/v1/runs", params={"workflow": name}).json()["runs"]
                run_id = found[0]["run_id"] if found else None
                time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 130, (stdout, stderr)
    assert f"run {run_id} cancelled" in stderr and "Traceback" not in stderr
    assert wait_until(api, run_id, FINISHED)["status"] == "cancelled"


# -- runs, logs, rerun --------------------------------------------------------------------

def test_runs_lists_by_workflow_and_status(api: Api, tmp_path: Path) -> None:
    name = unique("cli-list")
    ok = cli(api, "submit", write(tmp_path, good(name)), "--wait", "--json")
    assert ok.returncode == 0, ok.stderr
    failing = with_step(name, "exit 3")
    bad = cli(api, "submit", write(tmp_path, failing), "--wait", "--json")
    assert bad.returncode == 1, bad.stderr
    ok_id, bad_id = json.loads(ok.stdout)["run_id"], json.loads(bad.stdout)["run_id"]

    listed = cli(api, "runs", "--workflow", name, "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs] == [bad_id, ok_id]  # newest first
    assert {r["workflow"] for r in runs} == {name}

    only_failed = json.loads(cli(api, "runs", "--workflow", name, "--status", "failed",
                                 "--json").stdout)
    assert [r["run_id"] for r in only_failed] == [bad_id]
    both = json.loads(cli(api, "runs", "--workflow", name, "-s", "failed", "-s",
                          "succeeded", "--json").stdout)
    assert len(both) == 2
    assert len(json.loads(cli(api, "runs", "--workflow", name, "--limit", "1",
                              "--json").stdout)) == 1

    table = cli(api, "runs", "--workflow", name, role="viewer")
    assert table.returncode == 0, table.stderr
    assert ok_id in table.stdout and bad_id in table.stdout and "failed" in table.stdout
    none = cli(api, "runs", "--workflow", unique("none"))
    assert none.returncode == 0 and none.stdout == "" and "no runs" in none.stderr
    wrong = cli(api, "runs", "--status", "bogus")
    assert wrong.returncode == 2 and "status" in wrong.stderr


def test_logs_follow_prints_events_until_the_run_ends(api: Api, tmp_path: Path) -> None:
    name = unique("cli-follow")
    done = cli(api, "submit", write(tmp_path, with_step(name, "sleep 1; echo followed")))
    run_id = done.stdout.strip()
    follow = cli(api, "logs", run_id, "--follow", timeout=60)
    assert follow.returncode == 0, follow.stderr
    lines = follow.stdout.splitlines()
    types = [line.split()[1] for line in lines if not line.startswith("---")
             and len(line.split()) > 1 and "T" in line.split()[0]]
    assert types[0] == "run_created" and "run_succeeded" in types
    assert "step_succeeded" in types
    assert any(line.startswith("--- b stdout (attempt 1, ") for line in lines)
    assert "followed" in lines
    # Following a finished run prints its events and ends at once.
    again = cli(api, "logs", run_id, "--follow", "--step", "b", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "step_succeeded b" in again.stdout and "run_created" not in again.stdout
    assert "--- b stdout (attempt 1, " in again.stdout


def test_rerun_over_http(api: Api, tmp_path: Path) -> None:
    flag = tmp_path / unique("flag")
    name = unique("cli-rerun")
    failed = cli(api, "submit", write(tmp_path, with_step(name, f"test -f {flag} || exit 3")),
                 "--wait", "--json")
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stdout)["run_id"]
    flag.write_text("now it works")

    rerun = cli(api, "rerun", run_id, "--wait", "--json")
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)  # the CLI's run report shape, as without the API
    assert report["run_id"] == run_id and report["status"] == "succeeded"
    assert report["steps"]["b"]["status"] == "succeeded"
    assert report["steps"]["a"]["attempts"] == 1  # kept, not run again

    refused = cli(api, "rerun", run_id)
    assert refused.returncode == 2
    assert "only a failed or cancelled run can be re-run" in refused.stderr

    failing = cli(api, "submit", write(tmp_path, with_step(unique("cli-rerun"), "exit 4")),
                  "--wait", "--json")
    other = json.loads(failing.stdout)["run_id"]
    no_wait = cli(api, "rerun", other)
    assert no_wait.returncode == 0, no_wait.stderr
    assert no_wait.stdout.strip() == f"run {other}: re-running b"
    assert wait_until(api, other, FINISHED)["status"] == "failed"
    again = cli(api, "rerun", other, "--wait")
    assert again.returncode == 1 and f"run {other}: failed" in again.stdout


# -- stored workflows ---------------------------------------------------------------------

def test_workflows_end_to_end(api: Api, tmp_path: Path) -> None:
    name = unique("cli-stored")
    v1 = write(tmp_path, good(name))
    created = cli(api, "workflows", "create", v1, "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert body["name"] == name and body["version"] == 1
    taken = cli(api, "workflows", "create", v1)
    assert taken.returncode == 2 and "exists" in taken.stderr

    changed = good(name)
    changed["steps"][1]["params"]["cmd"] = "echo changed"
    changed["steps"].append({"name": "c", "module": "echo", "params": {"y": 2},
                             "depends_on": ["b"]})
    updated = cli(api, "workflows", "update", name, write(tmp_path, changed))
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.strip() == f"updated workflow {name} (version 2)"

    listed = cli(api, "workflows", "list", "--json")
    entries = [w for w in json.loads(listed.stdout)["workflows"] if w["name"] == name]
    assert entries and entries[0]["version"] == 2
    assert name in cli(api, "workflows", "list").stdout

    shown = cli(api, "workflows", "show", name)
    assert shown.returncode == 0, shown.stderr
    assert f"name: {name}" in shown.stdout and "version: 2" in shown.stdout
    assert "echo changed" in shown.stdout
    first = json.loads(cli(api, "workflows", "show", name, "--version", "1",
                           "--json").stdout)
    assert first["version"] == 1 and first["document"] == good(name)

    versions = cli(api, "workflows", "versions", name, "--json")
    assert [v["version"] for v in json.loads(versions.stdout)["versions"]] == [1, 2]
    table = cli(api, "workflows", "versions", name)
    assert table.returncode == 0 and "1" in table.stdout and "2" in table.stdout

    diff = cli(api, "workflows", "diff", name, "--from", "1", "--to", "2")
    assert diff.returncode == 0, diff.stderr
    assert cli(api, "workflows", "diff", name, "1", "2").stdout == diff.stdout
    assert "added: c" in diff.stdout and "changed: b (params)" in diff.stdout
    assert '-        "cmd": "echo hi"' in diff.stdout
    assert '+        "cmd": "echo changed"' in diff.stdout
    as_json = json.loads(cli(api, "workflows", "diff", name, "--json").stdout)
    assert (as_json["from_version"], as_json["to_version"]) == (1, 2)
    same = cli(api, "workflows", "diff", name, "2", "2")
    assert "are identical" in same.stdout

    disabled = cli(api, "workflows", "disable", name)
    assert disabled.returncode == 0 and disabled.stdout.strip() == f"workflow {name}: disabled"
    refused = cli(api, "workflows", "run", name, "--wait")
    assert refused.returncode == 2 and "disabled" in refused.stderr
    assert cli(api, "workflows", "enable", name).returncode == 0

    ran = cli(api, "workflows", "run", name, "--wait", "--json", "--var", "x=5")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded" and run["workflow"] == name
    assert [s["name"] for s in run["steps"]] == ["a", "b", "c"]
    assert run["steps"][0]["outputs"] == {"x": 5}
    old = cli(api, "workflows", "run", name, "--version", "1", "--wait")
    assert old.returncode == 0, old.stderr
    steps = [line.split(":")[0].strip() for line in old.stdout.splitlines()[1:]]
    assert "a" in steps and "c" not in steps  # version 1 has no c
    assert "b: succeeded" in old.stdout
    no_wait = cli(api, "workflows", "run", name)
    assert no_wait.returncode == 0 and len(no_wait.stdout.strip()) == 32

    new_name = unique("cli-renamed")
    renamed = cli(api, "workflows", "rename", name, new_name)
    assert renamed.returncode == 0, renamed.stderr
    assert renamed.stdout.strip() == f"renamed workflow {name} to {new_name}"
    gone = cli(api, "workflows", "show", name)
    assert gone.returncode == 2 and name in gone.stderr

    deleted = cli(api, "workflows", "delete", new_name)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"deleted workflow {new_name}"
    after = cli(api, "workflows", "run", new_name)
    assert after.returncode == 2 and new_name in after.stderr
    assert new_name not in cli(api, "workflows", "list").stdout
    everything = json.loads(cli(api, "workflows", "list", "--all", "--json").stdout)
    kept = [w for w in everything["workflows"] if w["name"] == new_name]
    assert kept and kept[0]["deleted"] is True


def test_workflows_create_refuses_an_invalid_document(api: Api, tmp_path: Path) -> None:
    bad = {"name": unique("cli-bad"), "steps": [{"name": "a", "module": "nope"}]}
    done = cli(api, "workflows", "create", write(tmp_path, bad))
    assert done.returncode == 2 and "step 'a', field 'module'" in done.stderr


# -- keys, roles and reachability ---------------------------------------------------------

def test_a_missing_key_exits_2_with_the_401_detail(api: Api, tmp_path: Path) -> None:
    for args in (("runs",), ("submit", write(tmp_path, good(unique("cli-nokey")))),
                 ("workflows", "list"), ("status", uuid.uuid4().hex)):
        done = cli(api, *args, role=None)
        assert done.returncode == 2, args
        assert "an API key is required" in done.stderr and "Traceback" not in done.stderr
    wrong = cli(api, "runs", role=None, CHORDFLOW_API_KEY="cf_not-a-key")
    assert wrong.returncode == 2 and "unknown or revoked" in wrong.stderr


def test_a_viewer_cannot_submit(api: Api, tmp_path: Path) -> None:
    done = cli(api, "submit", write(tmp_path, good(unique("cli-viewer"))), role="viewer")
    assert done.returncode == 2
    assert "this needs the operator role" in done.stderr and "Traceback" not in done.stderr
    wf = cli(api, "workflows", "create", write(tmp_path, good(unique("cli-viewer"))),
             role="viewer")
    assert wf.returncode == 2 and "author role" in wf.stderr
    assert cli(api, "runs", "--limit", "1", role="viewer").returncode == 0


def test_an_unreachable_api_exits_2(api: Api, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("runs",), ("submit", write(tmp_path, good("x"))), ("status", "x"),
                 ("workflows", "list")):
        done = cli(api, *args, CHORDFLOW_API_URL=url)
        assert done.returncode == 2, args
        assert f"cannot reach the chordflow API at {url}" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_api_url_may_name_the_api_prefix(api: Api) -> None:
    done = cli(api, "runs", "--limit", "1", "--json", CHORDFLOW_API_URL=api.url + "/api/v1/")
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout), list)


def test_error_bodies_are_reported() -> None:
    """The client's error parsing, without a server: FastAPI's validation errors and
    non-JSON bodies are reported too."""
    from chordflow.client import ApiError

    validation = httpx.Response(422, json={"detail": [
        {"loc": ["query", "limit"], "msg": "Input should be greater than 0"}]})
    assert "query.limit: Input should be greater than 0" in str(ApiError.of(validation))
    workflow = httpx.Response(422, json={"detail": "x", "errors": [
        {"step": "a", "field": "module", "message": "unknown module 'nope'"}]})
    assert "step 'a', field 'module': unknown module 'nope'" in str(ApiError.of(workflow))
    html = httpx.Response(502, text="<html>bad gateway</html>")
    assert str(ApiError.of(html)) == "HTTP 502 Bad Gateway"  # never the page itself


# -- following runs (issue 13) ------------------------------------------------------------

def test_logs_follow_of_a_cancelled_run_exits_1(api: Api, tmp_path: Path) -> None:
    done = cli(api, "submit", write(tmp_path, with_step(unique("cli-fcancel"), "sleep 60")))
    run_id = done.stdout.strip()
    wait_until(api, run_id, ("running",))
    proc = subprocess.Popen([CHORDFLOW, "logs", run_id, "--follow"], cwd=ROOT,
                            env=env_for(api, "viewer"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        assert proc.poll() is None
        assert cli(api, "cancel", run_id).returncode == 0
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 1, (stdout, stderr)
    assert "run_cancelled" in stdout


def test_status_watch_waits_and_exits_with_the_runs_code(api: Api, tmp_path: Path) -> None:
    ok = cli(api, "submit", write(tmp_path, with_step(unique("cli-watch"), "sleep 1")))
    watched = cli(api, "status", ok.stdout.strip(), "--watch", role="viewer")
    assert watched.returncode == 0, watched.stderr
    assert "b: succeeded" in watched.stdout and "2 steps: 2 succeeded" in watched.stdout
    bad = cli(api, "submit", write(tmp_path, with_step(unique("cli-watch"), "sleep 1; exit 3")))
    failed = cli(api, "status", bad.stdout.strip(), "--watch", "--json", role="viewer")
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["steps"]["b"]["status"] == "failed"


def test_submit_wait_marks_a_tolerated_failure(api: Api, tmp_path: Path) -> None:
    document = with_step(unique("cli-tolerant"), "exit 3")
    document["steps"][1]["continue_on_failure"] = True
    done = cli(api, "submit", write(tmp_path, document), "--wait")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "b: failed (attempts 1, tolerated)" in done.stdout
    assert "2 steps: 1 succeeded, 1 tolerated" in done.stdout


def test_version_and_help_need_no_api() -> None:
    from chordflow import __version__

    done = subprocess.run([CHORDFLOW, "--version"], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin",
                                           "CHORDFLOW_API_URL": "http://127.0.0.1:1"})
    assert done.returncode == 0 and done.stdout.strip() == f"chordflow {__version__}"
    for args in (("submit", "-h"), ("logs", "-h"), ("schedules", "create", "-h")):
        shown = subprocess.run([CHORDFLOW, *args], capture_output=True, text=True, timeout=30)
        assert shown.returncode == 0 and "Example: chordflow" in shown.stdout, args


def test_a_404_html_page_is_reported_as_its_status_line() -> None:
    from chordflow.client import ApiError

    page = httpx.Response(404, text="<html><body><h1>404 Not Found</h1></body></html>",
                          headers={"content-type": "text/html"})
    error = ApiError.of(page)
    assert (error.status, error.code, error.message) == (404, "not_found", "HTTP 404 Not Found")
