"""Every workflow in examples/ runs as its header says, through the real parts.

The embedded ones run as ``chordflow run examples/X --json`` subprocesses from the
repository's root, as a newcomer types them; the Celery one runs on real workers (the
session's stack plus a one-slot worker of its own queue); the stored one is created,
scheduled and triggered through a real API with the ``chordflow`` command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chordflow.engine.state import RunStatus
from chordflow.workflow.loader import load_file

from tests.api.conftest import Api, api  # noqa: F401  (the session's real API)
from tests.servers import ROOT, celery_worker

CHORDFLOW = str(Path(sys.executable).parent / "chordflow")
EXAMPLES = ROOT / "examples"
#: Every example and the test that runs it (a new example needs a test: checked below).
COVERED = {
    "sales-report.yaml": "test_sales_report_etl_over_local_files",
    "foreach-files.yaml": "test_foreach_files",
    "when-branches.yaml": "test_when_branches_both_ways",
    "retries-timeouts.yaml": "test_retries_and_timeouts",
    "procedures-dialect.json": "test_procedures_dialect",
    "dag-engine-dialect.json": "test_dag_engine_dialect",
    "python_api.py": "test_python_api_from_another_directory",
    "flow_quickstart.py": "test_flow_quickstart_prints_and_runs_from_the_command_line",
    "queues-priorities.yaml": "test_queues_and_priorities_on_celery",
    "daily-digest.yaml": "test_stored_workflow_with_a_schedule",
}


def local_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The user's environment without chordflow settings, scratch dirs in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORDFLOW_")}
    return {**env, "CHORDFLOW_WORKDIR": str(tmp_path / "work"), **extra}


def run_example(tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    # A Python example (chordflow.flow) is named as package.module:workflow.
    target = f"examples.{name[:-3]}:workflow" if name.endswith(".py") else f"examples/{name}"
    done = subprocess.run([CHORDFLOW, "run", target, "--json", *args],
                          cwd=ROOT, env=local_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["status"] == "succeeded", report
    return report


def test_every_example_has_a_test_and_validates(tmp_path: Path) -> None:
    present = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".yaml", ".json", ".py")}
    assert present == set(COVERED)
    tests = {name for name in globals() if name.startswith("test_")}
    assert set(COVERED.values()) <= tests
    for name in sorted(n for n in present if not n.endswith(".py")):
        done = subprocess.run([CHORDFLOW, "validate", f"examples/{name}"], cwd=ROOT,
                              env=local_env(tmp_path), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"{name}: {done.stdout}{done.stderr}"


def test_sales_report_etl_over_local_files(tmp_path: Path) -> None:
    report = run_example(tmp_path, "sales-report.yaml", "--var", f"out={tmp_path}")
    assert report["outputs"]["top_customer"] == "cyd"
    assert report["outputs"]["large_orders"] == 4
    written = json.loads(Path(report["outputs"]["report"]).read_text())
    assert written["top_order"]["total"] == 310
    assert sorted(p.name for p in tmp_path.glob("region-*.json")) == [
        "region-apac.json", "region-eu.json", "region-us.json"]


def test_foreach_files(tmp_path: Path) -> None:
    report = run_example(tmp_path, "foreach-files.yaml", "--var", f"out={tmp_path}")
    files = [item["path"] for item in report["outputs"]["files"]]
    assert files == [str(tmp_path / n) for n in
                     ("0-monday.txt", "1-tuesday.txt", "2-wednesday.txt")]
    assert [int(w["stdout"]) for w in report["outputs"]["words"]] == [4, 3, 6]
    assert json.loads((tmp_path / "index.json").read_text())["files"][1]["size"] == 13


def test_when_branches_both_ways(tmp_path: Path) -> None:
    low = run_example(tmp_path, "when-branches.yaml", "--var", f"out={tmp_path}")
    assert low["outputs"] == {"reorder": "succeeded", "enough": "skipped"}
    assert low["steps"]["confirm"]["status"] == "succeeded"
    assert json.loads((tmp_path / "order-coffee.json").read_text())["quantity"] == 20
    high = run_example(tmp_path, "when-branches.yaml", "--var", f"out={tmp_path}/b",
                       "--var", "stock=40")
    assert high["outputs"] == {"reorder": "skipped", "enough": "succeeded"}
    assert high["steps"]["confirm"]["status"] == "skipped"  # skipped with its parent
    assert high["steps"]["enough"]["outputs"]["stdout"] == "40 coffee in stock, no order\n"


def test_retries_and_timeouts(tmp_path: Path) -> None:
    report = run_example(tmp_path, "retries-timeouts.yaml")
    assert report["outputs"]["flaky_attempts"] == 3
    assert report["outputs"]["flaky_said"] == "succeeded on attempt 3\n"
    assert report["outputs"]["slow_status"] == "failed"
    assert "timed out" in report["outputs"]["slow_error"]
    slow = report["steps"]["slow"]
    took = (datetime.fromisoformat(slow["finished_at"])
            - datetime.fromisoformat(slow["started_at"])).total_seconds()
    assert took < 10  # killed at its 1 s timeout, not after its 30 s sleep


def test_procedures_dialect(tmp_path: Path) -> None:
    report = run_example(tmp_path, "procedures-dialect.json", "--var", f"out={tmp_path}")
    assert report["workflow"] == "stock-procedures"
    assert report["steps"]["report"]["outputs"]["stdout"] == (
        "2 items at 10 or more, most: tea. Questions: stock@example.com\n")
    assert len(json.loads((tmp_path / "stock.json").read_text())) == 3


def test_dag_engine_dialect(tmp_path: Path) -> None:
    report = run_example(tmp_path, "dag-engine-dialect.json",
                         "--var", f"workspace_output_folder={tmp_path}")
    fasta = tmp_path / "Assembly" / "my_assembly.contigs.fasta"
    assert report["outputs"] == {"annotate.contigs": "2\n",
                                 "assemble.contigs_fasta": str(fasta)}
    assert fasta.read_text().startswith(">contig_1\n")
    assert report["steps"]["annotate"]["outputs"]["organism"] == "Streptococcus pneumoniae"


def test_python_api_from_another_directory(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(EXAMPLES / "python_api.py")], cwd=tmp_path,
                          env=local_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    status, _, outputs = done.stdout.strip().partition(" ")
    assert status == "succeeded"
    assert json.loads(outputs) == {"summary": {"mean": 25, "top": [40, 30, 20]}}


def test_flow_quickstart_prints_and_runs_from_the_command_line(tmp_path: Path) -> None:
    """``python examples/flow_quickstart.py`` prints the JFlow Quickstart's lines; the
    module's ``workflow`` runs as recorded steps with ``chordflow run pkg.mod:attr``."""
    done = subprocess.run([sys.executable, "examples/flow_quickstart.py"], cwd=ROOT,
                          env=local_env(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ("Creating hi\n{'name': 'Joe Mama'} Hi Joe Mama Once\n"
                           "{'name': 'Joe Mama'} Hi Joe Mama Twice\n1 2\n")
    report = run_example(tmp_path, "flow_quickstart.py")
    assert report["outputs"] == {"say_hi": 1, "say_hi_twice": 2}
    assert report["steps"]["create_hi"]["outputs"] == {"result": "Hi Joe Mama"}


def test_queues_and_priorities_on_celery(celery_stack: Any, tmp_path: Path) -> None:
    """The `reports` steps run on the one-slot `reports` worker, highest priority
    first; the others on the session's workers (queue `chordflow`)."""
    service = celery_stack.service()
    with celery_worker(celery_stack.env(), "reports", "--queues", "reports",
                       "--concurrency", "1", log=tmp_path / "reports.log"):
        run_id = service.submit(load_file(EXAMPLES / "queues-priorities.yaml"))
        assert service.wait(run_id, timeout=90) is RunStatus.SUCCEEDED
        records = service.engine.store.get_steps(run_id)
    reports = ("warmup", "monthly", "urgent", "weekly")
    assert {n: records[n].worker.split("@")[0] for n in reports} == \
        dict.fromkeys(reports, "reports")
    assert records["extract"].worker.split("@")[0] in ("w1", "w2")
    order = sorted(("monthly", "urgent", "weekly"), key=lambda n: records[n].started_at)
    assert order == ["urgent", "weekly", "monthly"]
    assert service.report(run_id)["outputs"]["reports"][0] == "urgent report of 3 rows\n"


def test_stored_workflow_with_a_schedule(api: Api) -> None:  # noqa: F811
    """The header's commands, as written, against a real API and workers."""
    env = {**{k: v for k, v in api.env.items() if k != "CHORDFLOW_API_KEY"},
           "CHORDFLOW_API_URL": api.url, "CHORDFLOW_API_KEY": api.keys["author"]}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CHORDFLOW, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    # The README's distributed quickstart: submit the file and wait for its report.
    submitted = cli("submit", "examples/daily-digest.yaml", "--wait")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "succeeded" in submitted.stdout
    created = cli("workflows", "create", "examples/daily-digest.yaml")
    assert created.returncode == 0, created.stderr
    scheduled = cli("schedules", "create", "daily-digest", "--cron", "0 6 * * *",
                    "--timezone", "Europe/Paris", "--var", "team=ops", "--json")
    assert scheduled.returncode == 0, scheduled.stderr
    schedule = json.loads(scheduled.stdout)
    try:
        assert schedule["cron"] == "0 6 * * *" and schedule["variables"] == {"team": "ops"}
        listed = cli("schedules", "list")
        assert listed.returncode == 0 and schedule["id"] in listed.stdout, listed.stderr
        triggered = cli("schedules", "trigger", schedule["id"], "--wait", "--json")
        assert triggered.returncode == 0, triggered.stdout + triggered.stderr
        report = json.loads(triggered.stdout)
        assert report["status"] == "succeeded"
        assert report["outputs"]["team"] == "ops"
        assert report["outputs"]["digest"].endswith("/digest/digest.json")
    finally:
        assert cli("schedules", "delete", schedule["id"]).returncode == 0


@pytest.mark.parametrize("name", sorted(COVERED))
def test_example_header_says_how_to_run_it(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    assert f"examples/{name}" in text, f"{name} does not say how to run it"
