"""Where a step's files may be: its run's scratch directory and the admin's roots.

Every test runs on each executor (``run_workflow``: embedded, embedded on MongoDB, and
real Celery workers). The embedded executor of the tests is confined like a worker
(``embedded_confined``), with the test's ``tmp_path`` as its admin root; the workers
have the session's temporary directory as theirs (tests/conftest.py). In both cases the
scratch directories of all runs lie inside that root, which is the case the rule "never
another run's" must hold in.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.paths import confine
from chordflow.workflow.loader import load_data

#: A file every test host has and anyone may read (never a secret one such as shadow).
HOST_FILE = "/etc/passwd"


@pytest.fixture
def outside() -> Iterator[Path]:
    """A directory outside every allowed root (not under pytest's temporary tree)."""
    path = Path(tempfile.mkdtemp(prefix="chordflow-outside-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def step(name: str, module: str, method: str | None = None, **params: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "module": module, "params": params}
    if method:
        found["method"] = method
    return found


def refused(report: dict[str, Any], name: str, fld: str, path: str) -> str:
    """The step failed because ``path`` is outside the roots; return its error."""
    s = report["steps"][name]
    assert s["status"] == "failed", s
    error = s["error"]
    assert error.startswith(
        f"step '{name}': params.{fld} '{path}' is outside the allowed roots ("), error
    assert f"this run's scratch directory {os.sep}" in error
    assert error.endswith("set CHORDFLOW_FILE_ROOTS to allow more"), error
    return str(error)


def test_a_run_cannot_read_another_runs_files(run_workflow):
    first = run_workflow({"name": "owner", "steps": [
        step("keep", "file", "write", path="private.txt", data="mine")]})
    assert first["status"] == "succeeded", first
    written = Path(first["steps"]["keep"]["outputs"]["path"])
    assert written.read_text() == "mine"
    assert written.parts[-3:] == (first["run_id"], "keep", "private.txt")

    relative = f"../../{first['run_id']}/keep/private.txt"
    second = run_workflow({"name": "snoop", "steps": [
        {**step("read", "file", "read", path=relative), "continue_on_failure": True},
        {**step("absolute", "file", "read", path=str(written)),
         "continue_on_failure": True},
        {**step("overwrite", "file", "write", path=relative, data="theirs"),
         "continue_on_failure": True},
    ]})
    error = refused(second, "read", "path", relative)
    assert f"{second['run_id']}" in error and "another run's" in error
    refused(second, "absolute", "path", str(written))  # even though a root contains it
    refused(second, "overwrite", "path", relative)
    assert written.read_text() == "mine"


def test_the_steps_of_one_run_pass_files(run_workflow):
    report = run_workflow({"name": "pass", "steps": [
        step("make", "file", "write", path="shared.json", data={"n": 1}),
        step("by_path", "file", "read", path="${steps.make.outputs.path}"),
        {**step("relative", "file", "read", path="../make/shared.json"),
         "depends_on": ["make"]},
    ]})
    assert report["status"] == "succeeded", report
    assert report["steps"]["by_path"]["outputs"]["data"] == {"n": 1}
    assert report["steps"]["relative"]["outputs"]["data"] == {"n": 1}


def test_host_files_are_refused(run_workflow, outside):
    assert Path(HOST_FILE).is_file() and os.access(HOST_FILE, os.R_OK)
    climb = "../" * 12 + HOST_FILE.lstrip("/")
    target = outside / "planted.txt"
    report = run_workflow({"name": "host", "steps": [
        {**step("abs", "file", "read", path=HOST_FILE, format="text"),
         "continue_on_failure": True},
        {**step("climb", "file", "read", path=climb, format="text"),
         "continue_on_failure": True},
        {**step("plant", "file", "write", path=str(target), data="x"),
         "continue_on_failure": True},
    ]})
    refused(report, "abs", "path", HOST_FILE)
    refused(report, "climb", "path", climb)
    refused(report, "plant", "path", str(target))
    assert not target.exists()


def test_symlinks_cannot_lead_out(run_workflow, outside):
    plant = ("ln -s /etc/passwd to-host && ln -s /etc to-etc && "
             f"ln -s {outside}/written.txt to-outside && ln -s {outside} to-dir && ls")
    failing = {"continue_on_failure": True, "depends_on": ["links"]}
    report = run_workflow({"name": "links", "steps": [
        step("links", "bash", cmd=plant),
        {**step("read_link", "file", "read", path="../links/to-host", format="text"),
         **failing},
        {**step("read_via_dir", "file", "read", path="../links/to-etc/passwd",
                format="text"), **failing},
        {**step("write_link", "file", "write", path="../links/to-outside", data="x",
                format="text"), **failing},
        {**step("write_via_dir", "file", "write", path="../links/to-dir/new.txt",
                data="x"), **failing},
    ]})
    assert report["steps"]["links"]["status"] == "succeeded", report["steps"]["links"]
    refused(report, "read_link", "path", "../links/to-host")
    refused(report, "read_via_dir", "path", "../links/to-etc/passwd")
    refused(report, "write_link", "path", "../links/to-outside")
    refused(report, "write_via_dir", "path", "../links/to-dir/new.txt")
    assert list(outside.iterdir()) == []


def test_a_path_inside_an_admin_root_is_allowed(run_workflow, tmp_path):
    # tmp_path is inside the root of both the tests' embedded executor and the workers.
    target = tmp_path / "shared" / "data.json"
    report = run_workflow({"name": "rooted", "steps": [
        step("w", "file", "write", path=str(target), data=[1, 2]),
        step("r", "file", "read", path="${steps.w.outputs.path}"),
        {**step("sh", "bash", cmd="cat data.json", cwd=str(target.parent)),
         "depends_on": ["w"]},
    ]})
    assert report["status"] == "succeeded", report
    assert report["steps"]["r"]["outputs"]["data"] == [1, 2]
    assert report["steps"]["w"]["outputs"]["path"] == str(target.resolve())
    assert report["steps"]["sh"]["outputs"]["stdout"].split() == ["[", "1,", "2", "]"]


def test_bash_cwd_is_confined_too(run_workflow):
    report = run_workflow({"name": "cwd", "steps": [
        {**step("etc", "bash", cmd="ls", cwd="/etc"), "continue_on_failure": True},
        {**step("up", "bash", cmd="ls", cwd="../.."), "continue_on_failure": True},
        step("run_dir", "bash", cmd="pwd", cwd=".."),
    ]})
    refused(report, "etc", "cwd", "/etc")
    refused(report, "up", "cwd", "../..")
    assert report["steps"]["run_dir"]["outputs"]["stdout"].rstrip().endswith(
        f"/{report['run_id']}")


def test_the_local_embedded_executor_is_unconfined_unless_told(tmp_path):
    """``chordflow run`` and the Python API run the local user's own workflows."""
    doc = {"name": "local", "steps": [step("r", "file", "read", path=HOST_FILE,
                                           format="text")]}
    for confined, expected in ((False, "succeeded"), (True, "failed")):
        settings = Settings(workdir=tmp_path / "work", embedded_confined=confined)
        with EmbeddedExecutor(settings=settings, threads=2) as ex:
            plan = ex.compile(load_data(doc))
            report = run_report(ex.store, ex.run(plan, timeout=30), list(plan.order))
        assert report["steps"]["r"]["status"] == expected, report["steps"]["r"]


def test_file_roots_setting_takes_paths_and_commas(monkeypatch):
    monkeypatch.setenv("CHORDFLOW_FILE_ROOTS", f"/data{os.pathsep}/srv/in, /srv/out")
    assert Settings().file_roots == [Path("/data"), Path("/srv/in"), Path("/srv/out")]
    monkeypatch.delenv("CHORDFLOW_FILE_ROOTS")
    assert Settings().file_roots == []


def test_confine_names_the_roots_and_resolves_relative_paths(tmp_path):
    ctx = StepContext(run_id="r1", step="s", attempt=1, logger=logging.getLogger("t"),
                      workdir_root=tmp_path / "work", file_roots=(tmp_path / "data",))
    assert confine(ctx, "out.txt", "path") == (tmp_path / "work/r1/s/out.txt").resolve()
    assert confine(ctx, str(tmp_path / "data/x"), "path") == (tmp_path / "data/x").resolve()
    with pytest.raises(StepFailed) as info:
        confine(ctx, "../../r2/s/x", "path")
    assert str(info.value) == (
        f"step 's': params.path '../../r2/s/x' is outside the allowed roots (this run's "
        f"scratch directory {(tmp_path / 'work/r1').resolve()}, "
        f"{(tmp_path / 'data').resolve()}; "
        "another run's scratch directory is never allowed): set CHORDFLOW_FILE_ROOTS to "
        "allow more")
    free = StepContext(run_id="r1", step="s", attempt=1, logger=logging.getLogger("t"),
                       workdir_root=tmp_path / "work")
    assert confine(free, HOST_FILE, "path") == Path(HOST_FILE)  # unconfined: as given
