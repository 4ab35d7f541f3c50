"""``stage_in`` / ``stage_out`` on steps, through rclone and a real ``rclone serve s3``,
run by the embedded executor (the Celery workers on two hosts: test_stage_hosts.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.data.rclone import run_rclone
from chordflow.data.remotes import Remotes, parse_remotes
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.errors import ValidationFailed
from chordflow.workflow.loader import LoadFailed, load_data

from tests.data.rclone_servers import RcloneServer

MB = 1024 * 1024


def upload(server: RcloneServer, local: Path, dest: str) -> None:
    """Put fixtures on the server through the server (rclone serve caches its listings,
    so files written behind its back appear late)."""
    remotes = Remotes(parse_remotes({"archive": server.remote("archive")}),
                      secrets=server.secrets("archive"))
    run_rclone(["copy", str(local), dest], remotes=remotes, timeout=60).check("upload")


@pytest.fixture
def bucket(s3_remote: RcloneServer, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A bucket of its own on the shared server: (its name, its directory)."""
    name = f"b{uuid.uuid4().hex[:10]}"
    local = tmp_path / "fixtures"
    (local / "ref" / "index").mkdir(parents=True)
    (local / "ref" / "genome.fa").write_text(">chr1\nACGT\n" * 1000)
    (local / "ref" / "index" / "a.idx").write_text("index a")
    (local / "ref" / "index" / "b.idx").write_text("index b")
    upload(s3_remote, local, f"archive:{name}")
    yield name, s3_remote.root / name


@pytest.fixture
def settings(tmp_path: Path, s3_remote: RcloneServer) -> Settings:
    return Settings(
        workdir=tmp_path / "work", file_roots=[tmp_path / "roots"], embedded_confined=True,
        remotes={"archive": s3_remote.remote("archive")}, secrets=s3_remote.secrets("archive"),
        stage_cache_dir=tmp_path / "stage-cache", stage_cache_bytes=100 * MB)


def run(settings: Settings, doc: dict[str, Any], **variables: Any) -> dict[str, Any]:
    with EmbeddedExecutor(settings=settings, threads=4) as ex:
        plan = ex.compile(load_data(doc))
        run_id = ex.run(plan, variables or None, timeout=60)
        report = run_report(ex.store, run_id, list(plan.order))
    assert report["status"] in ("succeeded", "failed"), report
    return report


def steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return report["steps"]  # type: ignore[no-any-return]


def test_inputs_are_staged_in_and_outputs_out(settings: Settings, bucket: tuple[str, Path]):
    name, path = bucket
    doc = {"name": "stage", "variables": {"bucket": name}, "steps": [
        {"name": "prepare", "module": "echo", "params": {"ref": "ref"}},
        {"name": "align", "module": "bash",
         "stage_in": [
             # templated like params: a variable and an earlier step's output
             {"source": "archive:${variables.bucket}/${steps.prepare.outputs.ref}/genome.fa",
              "path": "inputs/genome.fa"},
             {"source": "archive:${variables.bucket}/ref/index", "path": "inputs/index"}],
         "params": {"cmd": "mkdir -p results && wc -l < inputs/genome.fa > results/lines "
                           "&& cat inputs/index/*.idx > results/indexes && echo done > log"},
         "stage_out": [{"path": "results/", "dest": "archive:${variables.bucket}/out/${run.id}/"},
                       {"path": "log", "dest": "archive:${variables.bucket}/logs/"}]},
    ]}
    report = run(settings, doc)
    assert report["status"] == "succeeded", report
    align = steps(report)["align"]
    staging = align["outputs"]["staging"]
    assert staging["stage_in"] == [
        {"source": f"archive:{name}/ref/genome.fa", "path": "inputs/genome.fa", "cache": "miss",
         "bytes": 11000, "link": "hardlink"},
        {"source": f"archive:{name}/ref/index", "path": "inputs/index", "cache": "miss",
         "bytes": 14, "link": "hardlink"}]
    assert [(e["path"], e["files"]) for e in staging["stage_out"]] == [("results/", 2),
                                                                      ("log", 1)]
    out = path / "out" / report["run_id"]
    assert (out / "lines").read_text().strip() == "2000"
    assert (out / "indexes").read_text() == "index aindex b"
    assert (path / "logs" / "log").read_text() == "done\n"

    # A second run on this host finds both in its cache.
    again = steps(run(settings, doc))["align"]["outputs"]["staging"]["stage_in"]
    assert [e["cache"] for e in again] == ["hit", "hit"]


def test_link_modes(settings: Settings, bucket: tuple[str, Path]):
    name, _ = bucket
    doc = {"name": "links", "steps": [{
        "name": "look", "module": "bash",
        "stage_in": [
            {"source": f"archive:{name}/ref/genome.fa", "path": "hard.fa"},
            {"source": f"archive:{name}/ref/genome.fa", "path": "copy.fa", "link": "copy"},
            {"source": f"archive:{name}/ref/genome.fa", "path": "soft.fa", "link": "symlink"}],
        # the copy is the step's own to change; the hard link is the cache's (read-only)
        "params": {"cmd": "echo more >> copy.fa && stat -c '%h %a' hard.fa && "
                          "readlink soft.fa && wc -c < copy.fa"}}]}
    look = steps(run(settings, doc))["look"]
    assert look["status"] == "succeeded", look
    hard, target, size = look["outputs"]["stdout"].splitlines()
    links, perms = hard.split()
    assert int(links) >= 2 and not int(perms, 8) & 0o222  # a hard link, read-only
    assert target.startswith(str(settings.stage_cache_dir / "objects"))
    assert int(size) == 11000 + len("more\n")
    assert [e["cache"] for e in look["outputs"]["staging"]["stage_in"]] == [
        "miss", "hit", "hit"]


def test_a_failing_entry_names_the_step_the_entry_and_rclone_s_error_after_retries(
        settings: Settings, bucket: tuple[str, Path]):
    name, _ = bucket
    doc = {"name": "missing", "steps": [
        {"name": "needs", "module": "echo", "retries": 1,
         "stage_in": [{"source": f"archive:{name}/ref/genome.fa", "path": "ok.fa"},
                      {"source": f"archive:no-{name}/such.fa", "path": "x.fa"}]},
        {"name": "absent", "module": "echo",
         "stage_in": [{"source": f"archive:{name}/no/such.fa", "path": "x.fa"}]}]}
    found = steps(run(settings, doc))
    needs = found["needs"]
    assert needs["status"] == "failed"
    assert needs["attempts"] == 2  # the step's retries apply
    assert needs["error"].startswith(
        f"step 'needs': stage_in[1] archive:no-{name}/such.fa: rclone lsjson failed, exit "
        "code 3 (directory not found)"), needs["error"]
    # An object store cannot tell a missing object from an empty folder: neither stages.
    assert found["absent"]["error"] == (
        f"step 'absent': stage_in[0] archive:{name}/no/such.fa: not found (no file there, "
        "nor a folder with files)")

    out = {"name": "push", "steps": [{
        "name": "push", "module": "echo",
        "stage_out": [{"path": "never-written", "dest": f"archive:{name}/x"}]}]}
    push = steps(run(settings, out))["push"]
    assert push["status"] == "failed"
    assert "step 'push': stage_out[0] never-written: the step left no such file" in push["error"]


def test_entries_that_could_reach_anything_else_are_refused(settings: Settings,
                                                            tmp_path: Path):
    def errors(*entries: dict[str, Any], key: str = "stage_in") -> list[str]:
        doc = {"name": "bad", "steps": [{"name": "s", "module": "echo",
                                          key: list(entries)}]}
        with pytest.raises((ValidationFailed, LoadFailed)) as caught:
            with EmbeddedExecutor(settings=settings) as ex:
                ex.compile(load_data(doc))
        return [str(e) for e in caught.value.errors]

    assert errors({"source": "archive:b/x", "path": "../elsewhere"}) == [
        "step 's', field 'stage_in[0].path': must stay inside the step's scratch directory "
        "(no '..')"]
    assert errors({"path": "/etc/passwd", "dest": "archive:b/"}, key="stage_out") == [
        "step 's', field 'stage_out[0].path': must be relative to the step's scratch "
        "directory"]
    assert errors({"source": "archive:b/x", "path": "x", "tier": "fast"}) == [
        "step 's', field 'stage_in[0].tier': tier 'fast' is not configured: no "
        "just-in-time tier is (CHORDFLOW_JIT_TIERS); remove 'tier' to stage through the "
        "host cache"]
    assert errors({"source": "archive:b/x", "path": "x", "link": "move"})[0].startswith(
        "step 's', field 'stage_in[0].link':")

    # Checked once rendered, too: values that arrive through references.
    (tmp_path / "secret.txt").write_text("not yours")
    doc = {"name": "rendered", "variables": {"src": ":s3,endpoint=http://evil:x/y",
                                             "local": str(tmp_path / "secret.txt"),
                                             "up": "../../x"},
           "steps": [
               {"name": "fly", "module": "echo",
                "stage_in": [{"source": "${variables.src}", "path": "x"}]},
               {"name": "local", "module": "echo",
                "stage_in": [{"source": "${variables.local}", "path": "x"}]},
               {"name": "climb", "module": "echo",
                "stage_in": [{"source": "archive:b/x", "path": "${variables.up}"}]}]}
    found = steps(run(settings, doc))
    assert all(s["status"] == "failed" and s["attempts"] == 1 for s in found.values())
    assert "on-the-fly remotes and connection strings are refused" in found["fly"]["error"]
    assert "is a local path outside the step's allowed roots" in found["local"]["error"]
    assert found["climb"]["error"] == ("step 'climb': stage_in[0].path: must stay inside "
                                       "the step's scratch directory (no '..')")


def test_the_workflow_schema_describes_staging():
    from chordflow.workflow.models import workflow_json_schema

    schema = json.dumps(workflow_json_schema())
    assert "StageIn" in schema and "StageOut" in schema
