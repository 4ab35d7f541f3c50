"""The ``rclone`` step module, embedded, against rclone's own s3, webdav and sftp
servers: every method, progress events, a retry that continues, what a workflow may
not hand rclone, a refusing remote, and credentials in no record."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chordflow.cli.progress import AttemptClock, make_row, progress_text
from chordflow.config import Settings, get_settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import load_data

from tests.data.rclone_servers import RcloneServer, remotes_env
from tests.servers import free_port


@pytest.fixture
def data_env(rclone_remotes: dict[str, RcloneServer],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The process's settings name the three servers (s3, dav, ssh) and a dead one."""
    dead = {"type": "s3", "provider": "Rclone",
            "endpoint": f"http://127.0.0.1:{free_port()}",
            "access_key_id": "${secrets.DEAD_KEY}",
            "secret_access_key": "${secrets.DEAD_SECRET}"}
    env = remotes_env(rclone_remotes, extra_secrets={"DEAD_KEY": "AKIADEADDEADDEAD",
                                                     "DEAD_SECRET": "dead-secret-value-42"})
    remotes = {**json.loads(env["CHORDFLOW_REMOTES"]), "dead": dead}
    env["CHORDFLOW_REMOTES"] = json.dumps(remotes)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


@pytest.fixture
def run(data_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    settings = Settings(workdir=tmp_path / "work", file_roots=[tmp_path],
                        embedded_confined=True,
                        secrets=json.loads(data_env["CHORDFLOW_SECRETS"]))
    with EmbeddedExecutor(settings=settings, threads=8) as executor:
        def run_doc(doc: dict[str, Any]) -> tuple[dict[str, Any], str]:
            plan = executor.compile(load_data(doc))
            run_id = executor.run(plan, timeout=120)
            return run_report(executor.store, run_id, list(plan.order)), run_id

        run_doc.executor = executor  # type: ignore[attr-defined]
        yield run_doc


def secrets_of(env: dict[str, str]) -> list[str]:
    return list(json.loads(env["CHORDFLOW_SECRETS"]).values())


def everything_recorded(executor: EmbeddedExecutor, run_id: str) -> str:
    store = executor.store
    return json.dumps([run_report(store, run_id),
                       [e.to_dict() for e in store.events(run_id)],
                       [(line.stream, line.text) for line in store.logs(run_id)]],
                      default=str)


def step(name: str, method: str, **params: Any) -> dict[str, Any]:
    return {"name": name, "module": "rclone", "method": method, "params": params}


@pytest.mark.parametrize("remote", ["s3", "dav", "ssh"])
def test_every_method(remote: str, rclone_remotes: dict[str, RcloneServer], run: Any,
                      data_env: dict[str, str], tmp_path: Path) -> None:
    server = rclone_remotes[remote]
    bucket = f"mod-{remote}"
    data = server.root / bucket / "data"
    (data / "sub").mkdir(parents=True)
    files = {"a.csv": b"a,b\n1,2\n", "b.csv": b"x\n" * 1000, "skip.log": b"noise",
             "sub/c.csv": os.urandom(200_000)}
    for rel, body in files.items():
        (data / rel).write_bytes(body)
    r = f"{remote}:{bucket}"
    hashes = {"download": True} if remote != "s3" else {}
    doc = {"name": f"every-method-{remote}", "steps": [
        step("mk", "mkdir", path=f"{remote}:made-{remote}"),
        step("ls", "lsjson", path=f"{r}/data", recursive=True, files_only=True,
             include=["*.csv"]),
        step("sz", "size", path=f"{r}/data"),
        step("cp", "copy", source=f"{r}/data", dest="got", exclude=["*.log"]),
        step("cpto", "copyto", source=f"{r}/data/a.csv", dest=f"{r}/copied/renamed.csv"),
        {**step("chk", "check", source=f"{r}/data", dest="../cp/got", exclude=["*.log"]),
         "depends_on": ["cp"]},
        {**step("chk2", "check", source=f"{r}/data", dest="../cp/got",
                fail_on_difference=False), "depends_on": ["cp"]},
        step("hs", "hashsum", path=f"{r}/data", hash="md5", **hashes),
        {**step("sy", "sync", source="../cp/got", dest=f"{r}/synced"), "depends_on": ["cp"]},
        {**step("mv", "move", source=f"{r}/copied", dest=f"{r}/moved"),
         "depends_on": ["cpto"]},
        {**step("dl", "delete", path=f"{r}/synced", include=["b.csv"]), "depends_on": ["sy"]},
        {**step("lsmv", "lsjson", path=f"{r}/moved"), "depends_on": ["mv"]},
        {**step("pg", "purge", path=f"{r}/moved"), "depends_on": ["lsmv"]},
        {**step("dry", "delete", path=f"{r}/data", dry_run=True),
         "depends_on": ["ls", "sz", "cp", "cpto", "chk", "chk2", "hs", "sy"]},
    ]}
    report, run_id = run(doc)
    assert report["status"] == "succeeded", json.dumps(report, indent=1)
    out = {name: s["outputs"] for name, s in report["steps"].items()}
    assert (server.root / f"made-{remote}").is_dir()
    assert out["ls"]["count"] == 3
    assert sorted(e["Path"] for e in out["ls"]["entries"]) == ["a.csv", "b.csv", "sub/c.csv"]
    assert out["sz"]["count"] == 4
    assert out["sz"]["bytes"] == sum(len(b) for b in files.values())
    assert out["cp"]["files"] == 3
    assert out["cp"]["bytes"] == sum(len(b) for n, b in files.items() if n != "skip.log")
    got = tmp_path / "work" / run_id / "cp" / "got"
    assert (got / "sub" / "c.csv").read_bytes() == files["sub/c.csv"]
    assert not (got / "skip.log").exists()
    assert out["cpto"]["files"] == 1
    assert out["chk"]["match"] is True and out["chk"]["matching"] == 3
    assert out["chk2"]["match"] is False
    assert out["chk2"]["missing_on_dest"] == ["skip.log"]
    assert out["hs"]["hashes"] == {rel: hashlib.md5(body).hexdigest()
                                   for rel, body in files.items()}
    assert out["sy"]["files"] == 3
    # A server-side move (webdav, sftp) transfers nothing: what moved is what is there.
    assert [e["Path"] for e in out["lsmv"]["entries"]] == ["renamed.csv"]
    assert (server.root / bucket / "copied" / "renamed.csv").exists() is False
    assert out["dl"]["deletes"] == 1
    assert sorted(p.name for p in (server.root / bucket / "synced").iterdir()) == \
        ["a.csv", "sub"]
    assert not (server.root / bucket / "moved").exists()
    assert out["dry"]["dry_run"] is True and (data / "a.csv").exists()
    recorded = everything_recorded(run.executor, run_id)
    for secret in secrets_of(data_env):
        assert secret not in recorded


def test_progress_events_reach_the_run_and_its_table(
        s3_remote: RcloneServer, run: Any, tmp_path: Path) -> None:
    bucket = s3_remote.root / "mod-progress"
    bucket.mkdir()
    (bucket / "big.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    report, run_id = run({"name": "progress", "steps": [
        step("pull", "copy", source="s3:mod-progress", dest="in",
             flags={"bwlimit": "1M"})]})
    assert report["status"] == "succeeded", report
    events = [e for e in run.executor.store.events(run_id) if e.type == "step_progress"]
    assert events, "no step_progress event"
    assert all(e.step == "pull" and e.data["operation"] == "copy" and e.data["attempt"] == 1
               for e in events)
    last = events[-1].data
    assert last["bytes"] == last["total"] == 2 * 1024 * 1024
    # The table of `chordflow run` and `logs --follow` shows the running step's progress.
    clock = AttemptClock()
    clock.feed(events[0].ts - 1, "step_started", "pull", {"attempt": 1})
    clock.feed(events[-1].ts, "step_progress", "pull", {**last, "rate": 1048576, "eta": 3})
    row = make_row("pull", "rclone.copy", "running", 1, None, None, None, clock,
                   events[-1].ts)
    assert row.progress == "2 MiB / 2 MiB (100%), 1 MiB/s, ETA 3.00s"
    assert progress_text({"message": "3 of 9 files"}) == "3 of 9 files"


def test_a_retry_continues_where_the_failed_attempt_stopped(
        s3_remote: RcloneServer, run: Any, tmp_path: Path) -> None:
    """Each attempt may move 1 MB (``max_transfer``): three files of 600 KiB take three
    attempts, each copying what the one before did not."""
    source = tmp_path / "three"
    source.mkdir()
    bodies = {f"part{i}.bin": os.urandom(600 * 1024) for i in range(3)}
    for name, body in bodies.items():
        (source / name).write_bytes(body)
    (s3_remote.root / "mod-continue").mkdir()
    report, _ = run({"name": "continues", "steps": [{
        **step("push", "copy", source=str(source), dest="s3:mod-continue",
               flags={"max_transfer": "1M", "transfers": 1}), "retries": 4}]})
    push = report["steps"]["push"]
    assert push["status"] == "succeeded", push
    assert push["attempts"] >= 2
    assert push["outputs"]["files"] < 3  # the last attempt did not start over
    for name, body in bodies.items():
        assert (s3_remote.root / "mod-continue" / name).read_bytes() == body


def test_a_refusing_remote_fails_with_rclones_reason_after_retries(
        run: Any, data_env: dict[str, str]) -> None:
    report, run_id = run({"name": "refused", "steps": [{
        **step("ls", "lsjson", path="dead:bucket",
               flags={"retries": 1, "low_level_retries": 1}), "retries": 1}]})
    ls = report["steps"]["ls"]
    assert ls["status"] == "failed" and ls["attempts"] == 2
    assert ls["error"].startswith("step 'ls': rclone lsjson failed, exit code")
    assert "connection refused" in ls["error"]
    recorded = everything_recorded(run.executor, run_id)
    for secret in secrets_of(data_env):
        assert secret not in recorded


@pytest.mark.parametrize(("params", "message"), [
    ({"path": ":s3,access_key_id=AK:bucket"}, "on-the-fly remotes and connection strings"),
    ({"path": "s3,region=x:bucket"}, "on-the-fly remotes and connection strings"),
    ({"path": "nowhere:bucket"}, "no remote 'nowhere' is configured (known: dav, dead, s3"),
    ({"path": "/etc"}, "params.path '/etc' is outside the allowed roots"),
])
def test_what_a_step_may_not_name_fails_it_at_once(
        params: dict[str, Any], message: str, run: Any) -> None:
    report, _ = run({"name": "refused-location", "steps": [
        {**step("ls", "lsjson", **params), "retries": 3}]})
    ls = report["steps"]["ls"]
    assert ls["status"] == "failed" and ls["attempts"] == 1  # retrying cannot help
    assert message in ls["error"] and ls["error"].startswith("step 'ls': ")


@pytest.mark.parametrize(("params", "field"), [
    ({"path": "s3:x", "flags": {"config": "/tmp/evil.conf"}}, "params.flags.config"),
    ({"path": "s3:x", "flags": {"transfers": 1000}}, "params.flags.transfers"),
    ({"path": "s3:x", "flags": {"bwlimit": "1M --rc"}}, "params.flags.bwlimit"),
    ({"path": "s3:x", "include": ["a\n--rc"]}, "params.include.0"),
    ({"path": "s3:x", "hash": "rot13"}, "params.hash"),
])
def test_bad_params_are_refused_at_validation_naming_the_field(
        params: dict[str, Any], field: str, run: Any) -> None:
    method = "hashsum" if "hash" in params else "lsjson"
    with pytest.raises(ValidationFailed) as caught:
        run({"name": "bad-params", "steps": [step("ls", method, **params)]})
    assert f"step 'ls', field '{field}'" in str(caught.value)
