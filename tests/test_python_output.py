"""A ``python`` step's prints are its captured output, step by step even when steps
run at once in one process (the embedded executor's threads, a threads-pool worker),
and nothing of them reaches the process's own stdout."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.workflow.loader import load_data

LABELS = [f"p{i}" for i in range(6)]


def chatty() -> dict[str, Any]:
    return {"name": "chatty", "steps": [
        {"name": label, "module": "python",
         "params": {"function": "tests.helpers.functions:chatter", "args": [label]}}
        for label in LABELS]}


def check_streams(lines: list[Any]) -> None:
    for label in LABELS:
        out = "".join(ln.text for ln in lines if ln.step.split("#")[0].split("[")[0] == label
                      and ln.stream == "stdout")
        err = "".join(ln.text for ln in lines if ln.step.split("#")[0].split("[")[0] == label
                      and ln.stream == "stderr")
        assert out == "".join(f"{label} line {i}\n" for i in range(20)) + f"{label} done", out
        assert err == "".join(f"{label} err {i}\n" for i in range(20)), err


def test_prints_are_captured_per_step_in_the_embedded_threads(settings, capfd) -> None:
    ex = EmbeddedExecutor(None, settings=settings, threads=8)
    try:
        plan = ex.compile(load_data(chatty()))
        run_id = ex.run(plan, None, timeout=60)
        assert ex.store.get_run(run_id).status == "succeeded"
        check_streams(ex.store.logs(run_id))
    finally:
        ex.close()
    seen = capfd.readouterr()
    assert "line" not in seen.out and " err " not in seen.err
    # Put back: the process's streams are its own again once no step runs.
    assert type(sys.stdout).__name__ != "StepStream"
    assert type(sys.stderr).__name__ != "StepStream"


@pytest.mark.slow
def test_prints_are_captured_per_step_on_celery_workers(celery_stack) -> None:
    service = celery_stack.service()
    run_id = service.submit(load_data(chatty()))
    assert str(service.wait(run_id, 60)) == "succeeded"
    check_streams(service.engine.store.logs(run_id))
