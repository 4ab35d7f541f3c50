"""Steps that are jobs, run by the embedded executor against the real test job service
(tests/jobs/jobservice.py): a BV-BRC app (JSON-RPC) and a generic HTTP job succeed with
their results as outputs; a failed job, a vanished job and one past its job_timeout
fail their step, saying so; the token is sent and never recorded in clear."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.jobs.services import JobConfigError
from chordflow.modules.job import app_modules
from chordflow.modules.registry import Registry, load_registry
from chordflow.workflow.loader import load_data

from tests.jobs.conftest import JOB_TOKEN, KEY_TOKEN, JobService


def registry_for(service: JobService, **policy: Any) -> Registry:
    registry = load_registry()
    env = service.env(**policy)
    for module in app_modules(json.loads(env["CHORDFLOW_JOB_APPS"]),
                              json.loads(env["CHORDFLOW_JOB_SERVICES"])):
        registry.add(module)
    return registry


def run(doc: dict[str, Any], registry: Registry, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    settings = Settings(workdir=tmp_path / "work", secrets={"BVBRC_TOKEN": JOB_TOKEN})
    with EmbeddedExecutor(registry, settings=settings, threads=4) as ex:
        plan = ex.compile(load_data(doc))
        run_id = ex.run(plan, timeout=60)
        events = [e.to_dict() for e in ex.store.events(run_id)]
        return run_report(ex.store, run_id, list(plan.order)), events


def test_apps_and_http_jobs_succeed_with_outputs(job_service: JobService,
                                                 tmp_path: Path) -> None:
    doc = {
        "workflow_name": "assembly-embedded",
        "base_context": {"out": "/tester@bvbrc/home/asm"},
        "steps": [
            {"step_name": "assemble", "app": "GenomeAssembly2",
             "params": {"output_path": "${out}", "output_file": "contigs",
                        "recipe": "auto", "test_duration": 1.0},
             "outputs": {"contigs": "${params.output_path}/.${params.output_file}/contigs.fa"}},
            {"step_name": "sleep", "app": "Sleeper",
             "params": {"after": "${steps.assemble.outputs.job_id}", "test_duration": 0.5}},
        ],
        "workflow_outputs": ["${steps.assemble.outputs.contigs}",
                             "${steps.sleep.outputs.result}"],
    }
    report, events = run(doc, registry_for(job_service), tmp_path)
    assert report["status"] == "succeeded", report
    assemble = report["steps"]["assemble"]["outputs"]
    job = job_service.jobs()[assemble["job_id"]]
    assert job["app"] == "GenomeAssembly2" and job["status"] == "completed"
    assert job["workspace"] == "/tester@bvbrc/home/asm"  # start_app's third argument
    assert assemble["task_id"] == assemble["job_id"]
    assert assemble["output_folder"] == "/tester@bvbrc/home/asm/.contigs"
    assert assemble["task"]["status"] == "completed"
    sleep = report["steps"]["sleep"]["outputs"]
    assert job_service.jobs()[sleep["job_id"]]["params"]["after"] == assemble["job_id"]
    assert report["outputs"] == {"assemble.contigs": "/tester@bvbrc/home/asm/.contigs/contigs.fa",
                                 "sleep.result": {"answer": 42, "job": sleep["job_id"]}}
    # It waited as messages: one attempt each, several wake-ups, each recorded.
    assert report["steps"]["assemble"]["attempts"] == 1
    waits = [e for e in events if e["type"] == "step_waiting" and e["step"] == "assemble"]
    assert len(waits) >= 2 and waits[0]["data"]["job"] == assemble["job_id"]
    # The configured service's polling: poll_interval 0.5, then backoff 1.5 (max 2).
    assert [w["data"]["after"] for w in waits][:2] == [0.5, 0.75]
    assert JOB_TOKEN not in json.dumps([report, events])


def test_inline_http_job_with_backoff(job_service: JobService, tmp_path: Path) -> None:
    doc = {"name": "inline-http", "steps": [{
        "name": "job", "module": "job", "method": "http",
        "params": {"submit_url": f"{job_service.url}/jobs", "body": {"params":
                                                                     {"test_duration": 1.2}},
                   "status_url": f"{job_service.url}/jobs/{{id}}", "id_path": "job.id",
                   "state_path": "state", "done_states": ["completed"],
                   "result_path": "result.answer", "token": "${secrets.BVBRC_TOKEN}",
                   "poll_interval": 0.2, "backoff": 2.0, "max_poll_interval": 0.8}}]}
    report, events = run(doc, load_registry(), tmp_path)
    assert report["status"] == "succeeded", report
    assert report["steps"]["job"]["outputs"]["result"] == 42
    delays = [e["data"]["after"] for e in events if e["type"] == "step_waiting"]
    assert delays[:3] == [0.2, 0.4, 0.8] and set(delays[3:]) <= {0.8}  # backoff, capped


def test_failed_vanished_and_timed_out_jobs_fail_their_steps(job_service: JobService,
                                                             tmp_path: Path) -> None:
    doc = {"workflow_name": "bad-jobs", "steps": [
        {"step_name": "fails", "app": "GenomeAssembly2",
         "params": {"test_duration": 0.5, "test_fail": True}},
        {"step_name": "vanishes", "app": "GenomeAnnotation",
         "params": {"test_duration": 30, "test_vanish_after": 0.8}},
        {"step_name": "http_vanishes", "app": "Sleeper",  # its status URL answers 404
         "params": {"test_duration": 30, "test_vanish_after": 0.8}},
    ]}
    report, _ = run(doc, registry_for(job_service), tmp_path)
    steps = report["steps"]
    assert report["status"] == "failed"
    assert steps["fails"]["status"] == "failed"
    assert "failed (failed)" in steps["fails"]["error"]
    assert "BV-BRC app service" in steps["fails"]["error"]
    assert steps["vanishes"]["status"] == "failed"
    assert "is gone from the BV-BRC app service" in steps["vanishes"]["error"]
    assert steps["http_vanishes"]["status"] == "failed"
    assert f"is gone from the job service at {job_service.url}/jobs: the service no " \
        "longer knows it" in steps["http_vanishes"]["error"]

    slow = {"workflow_name": "slow-job", "steps": [
        {"step_name": "slow", "app": "GenomeAssembly2", "params": {"test_duration": 60}}]}
    report, _ = run(slow, registry_for(job_service, job_timeout=1.5), tmp_path)
    error = report["steps"]["slow"]["error"]
    assert "did not finish within 1.5s (job_timeout); it was cancelled" in error
    job_id = error.split()[1]
    assert job_service.jobs()[job_id]["status"] == "deleted"  # killed on the service


def test_bad_service_configuration_names_the_field() -> None:
    with pytest.raises(JobConfigError, match="job_apps.X: no job service 'nope'"):
        app_modules({"X": "nope"}, {})
    with pytest.raises(JobConfigError, match="job_services.s: .*url"):
        app_modules({}, {"s": {"client": "bvbrc"}})
    with pytest.raises(JobConfigError, match="job_services.k: .*token_secret: not with "
                       "token_from key"):
        app_modules({}, {"k": {"client": "bvbrc", "url": "http://x/", "token_from": "key",
                               "token_secret": "T"}})
    with pytest.raises(JobConfigError, match="job_services.k: token_from"):
        app_modules({}, {"k": {"client": "bvbrc", "url": "http://x/", "token_from": "user"}})
    with pytest.raises(JobConfigError, match="job_services.h: .*state_path.*JSONPath"):
        app_modules({}, {"h": {"client": "http", "submit_url": "http://x/", "status_url":
                               "http://x/{id}", "state_path": "a[[["}})


def test_a_duplicate_wake_up_polls_the_recorded_job_and_never_submits_again(
        job_service: JobService, tmp_path: Path) -> None:
    """What the reconciler's resend of a lost wake-up does: the message finds the job's
    id in the step's record, so it polls that job; the service gets one job only."""
    from chordflow.engine.dispatch import TaskMessage

    doc = {"workflow_name": "duplicate-wake-up", "steps": [
        {"step_name": "once", "app": "GenomeAssembly2",
         "params": {"output_path": "/tester@bvbrc/home/dup", "test_duration": 2}}]}
    settings = Settings(workdir=tmp_path / "work", secrets={"BVBRC_TOKEN": JOB_TOKEN})
    with EmbeddedExecutor(registry_for(job_service), settings=settings, threads=4) as ex:
        run_id = ex.submit(ex.compile(load_data(doc)))
        deadline = time.monotonic() + 30
        while not (ex.store.get_steps(run_id, ["once"])["once"].job or {}).get("polls"):
            assert time.monotonic() < deadline, "the job was never submitted"
            time.sleep(0.05)
        record = ex.store.get_steps(run_id, ["once"])["once"]
        assert record.status == "queued" and record.attempts == 0  # waiting, no slot
        job_id = record.job["state"]["id"]
        ex.dispatch(TaskMessage(run_id, "once", None, 1, "duplicate-wake-up"))
        ex.wait(run_id, 60)
        report = run_report(ex.store, run_id, ["once"])
    assert report["status"] == "succeeded", report
    assert report["steps"]["once"]["outputs"]["job_id"] == job_id
    assert report["steps"]["once"]["attempts"] == 1
    mine = [k for k, v in job_service.jobs().items() if v["workspace"] == "/tester@bvbrc/home/dup"]
    assert mine == [job_id]


def test_a_keys_token_is_masked_in_all_a_job_call_leaves() -> None:
    """Unit test of chordflow.jobs.key_tokens.masked: a service that echoes the token
    in an error, a wait state or a result leaves only ``***`` behind."""
    from chordflow.errors import StepFailed, StepWaiting
    from chordflow.jobs.key_tokens import masked
    from chordflow.modules.context import CapturingLogger, StepContext
    from chordflow.modules.limits import Captured

    captured = Captured(None)
    ctx = StepContext(run_id="r", step="s", attempt=1, captured=captured,
                      logger=CapturingLogger(logging.getLogger("t"), {}, captured))

    def echo(raise_: Exception | None) -> Any:
        def call(c: StepContext) -> Any:
            c.logger.warning("refused with %s", KEY_TOKEN)
            if raise_ is not None:
                raise raise_
            return {"task": {"auth": KEY_TOKEN}}
        return call

    assert masked(KEY_TOKEN, ctx, echo(None)) == {"task": {"auth": "***"}}
    final = StepFailed(f"Invalid token {KEY_TOKEN}")
    final.final = True
    with pytest.raises(StepFailed) as failed:
        masked(KEY_TOKEN, ctx, echo(final))
    assert str(failed.value) == "Invalid token ***" and failed.value.final
    with pytest.raises(StepWaiting) as waiting:
        masked(KEY_TOKEN, ctx, echo(StepWaiting(2, {"id": "1", "echo": KEY_TOKEN})))
    assert waiting.value.state == {"id": "1", "echo": "***"} and waiting.value.after == 2
    with pytest.raises(StepFailed, match=r"^RuntimeError: boom \*\*\*$"):
        masked(KEY_TOKEN, ctx, echo(RuntimeError(f"boom {KEY_TOKEN}")))
    lines = json.dumps(captured.lines())
    assert "refused with ***" in lines and KEY_TOKEN not in lines
