"""What a step may leave behind: its outputs (``CHORDFLOW_MAX_OUTPUT_BYTES``) and its
captured output (``CHORDFLOW_MAX_LOG_BYTES``), on every executor and store.

Measured before these limits (issue 12): a step returning 50 MB failed with
"internal error: DocumentTooLarge"; a step printing 100 MB succeeded with every line
of its output silently dropped. Now the first fails with its size and the limit, the
second keeps the head and the tail of what it printed and says how much was cut.

Most tests run with small limits (64 KiB) so that they stay quick: the embedded
executors get them through the ``settings`` fixture, Celery through a worker of this
module started with the two variables set, serving a queue of its own that the steps
name. The tests marked ``default-limits`` run against the defaults, at full size.
"""

from __future__ import annotations

import json
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chordflow.config import Settings
from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.mongo_store import MongoStore
from chordflow.engine.records import LogLine
from chordflow.engine.report import run_report
from chordflow.modules.limits import Captured, HeadTail, format_bytes, utf8_size
from chordflow.workflow.loader import load_data

from tests.servers import celery_worker

SMALL = 64 * 1024
#: The queue of this module's small-limit Celery worker.
QUEUE = "small-limits"
DEFAULTS = pytest.mark.parametrize("limits", [{}], ids=["default-limits"])

Run = Callable[..., tuple[dict[str, Any], list[LogLine]]]


@pytest.fixture
def limits() -> dict[str, int]:
    """The limits a test runs with (``DEFAULTS`` overrides them: none set)."""
    return {"max_output_bytes": SMALL, "max_log_bytes": SMALL}


@pytest.fixture
def settings(tmp_path: Path, limits: dict[str, int]) -> Settings:
    return Settings(workdir=tmp_path / "work", **limits)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small_worker(celery_stack: Any, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[None]:
    """A Celery worker with the small limits, serving ``QUEUE`` only."""
    env = celery_stack.env(CHORDFLOW_MAX_OUTPUT_BYTES=str(SMALL),
                           CHORDFLOW_MAX_LOG_BYTES=str(SMALL))
    log = tmp_path_factory.mktemp("limits") / "small.log"
    with celery_worker(env, "small", "--queues", QUEUE, "--pool", "threads",
                       "--concurrency", "2", log=log):
        yield


@pytest.fixture(params=["embedded", "embedded-mongo", "celery"])
def run(request: pytest.FixtureRequest, settings: Settings, limits: dict[str, int]
        ) -> Iterator[Run]:
    """Run a workflow to the end; return its report and what its steps printed.

    Like conftest's ``run_workflow``, on each executor and store, but it also reads the
    run's captured output from the store the run was recorded in, which only the
    runner knows. With small limits, Celery runs the steps on ``small_worker``.
    """
    closing: list[Any] = []
    if request.param == "celery":
        service = request.getfixturevalue("celery_stack").service()
        small = bool(limits)
        if small:
            request.getfixturevalue("small_worker")

        def on_celery(doc: dict[str, Any], timeout: float = 60
                      ) -> tuple[dict[str, Any], list[LogLine]]:
            if small:
                doc = {**doc, "steps": [{**s, "queue": QUEUE} for s in doc["steps"]]}
            run_id = service.submit(load_data(doc))
            assert service.wait(run_id, timeout).finished, f"not finished in {timeout}s"
            return service.report(run_id), service.engine.store.logs(run_id)

        yield on_celery
        return
    url = request.getfixturevalue("mongo_url") if request.param == "embedded-mongo" else None

    def embedded(doc: dict[str, Any], timeout: float = 60
                 ) -> tuple[dict[str, Any], list[LogLine]]:
        store = MongoStore(url, f"t{uuid.uuid4().hex[:12]}") if url else None
        ex = EmbeddedExecutor(settings=settings, threads=4, store=store)
        closing.append(ex)
        plan = ex.compile(load_data(doc))
        run_id = ex.run(plan, timeout=timeout)
        report = run_report(ex.store, run_id, list(plan.order))
        assert report["status"] in ("succeeded", "failed"), report
        return report, ex.store.logs(run_id)

    yield embedded
    for ex in closing:
        ex.close()


def returns(size: int) -> dict[str, Any]:
    """A ``python`` step whose ``result`` output is a string of ``size`` characters."""
    return {"module": "python", "params": {"function": "operator:mul", "args": ["x", size]}}


def printing(size: int) -> str:
    """A command printing a start line, ``size`` bytes in one line, and an end line."""
    return f"echo the-start; head -c {size} /dev/zero | tr '\\0' x; echo; echo the-end"


def stdout_of(lines: list[LogLine], step: str) -> list[str]:
    return [ln.text for ln in lines if ln.step == step and ln.stream == "stdout"]


def notices(lines: list[LogLine]) -> list[str]:
    return [ln.text for ln in lines if "of output cut" in ln.text]


# -- outputs ---------------------------------------------------------------------------

def test_outputs_over_the_limit_fail_the_step_for_good_naming_size_and_limit(run: Run) -> None:
    report, _ = run({"name": "big-out", "steps": [
        {"name": "big", "retries": 2, **returns(100_000)},
        {"name": "small", **returns(1_000)},
        {"name": "after", "module": "echo", "params": {"x": "${steps.big.outputs.result}"}},
    ]})
    big = report["steps"]["big"]
    assert report["status"] == "failed"
    assert big["status"] == "failed" and big["attempts"] == 1  # final: not retried
    assert big["error"] == (
        "step 'big': its outputs are 97.7 KiB, over the limit of 64 KiB "
        "(CHORDFLOW_MAX_OUTPUT_BYTES); write large data to a file and output its path")
    assert big["outputs"] is None
    assert report["steps"]["small"]["status"] == "succeeded"
    assert report["steps"]["small"]["outputs"] == {"result": "x" * 1_000}
    assert report["steps"]["after"]["status"] == "upstream_failed"


def test_a_foreach_element_over_the_limit_is_named(run: Run) -> None:
    report, _ = run({"name": "big-each", "steps": [
        {"name": "each", "foreach": [10, 100_000], "module": "python",
         "params": {"function": "operator:mul", "args": ["x", "${item}"]}}]})
    assert report["steps"]["each"]["status"] == "failed"
    assert "item 1: step 'each[1]': its outputs are 97.7 KiB, over the limit of 64 KiB" \
        in report["steps"]["each"]["error"]


@DEFAULTS
def test_a_real_50_mb_output_fails_with_its_size_not_document_too_large(
        run: Run, limits: dict[str, int]) -> None:
    report, _ = run({"name": "huge-out", "steps": [{"name": "huge", **returns(50_000_000)}]})
    error = report["steps"]["huge"]["error"]
    assert report["steps"]["huge"]["status"] == "failed", report["steps"]["huge"]
    assert error.startswith("step 'huge': its outputs are 47.7 MiB, over the limit of 4 MiB "
                            "(CHORDFLOW_MAX_OUTPUT_BYTES)"), error
    assert "DocumentTooLarge" not in error


def test_a_chatty_bash_step_succeeds_its_streams_cut_to_fit_the_outputs(run: Run) -> None:
    report, lines = run({"name": "chatty", "steps": [
        {"name": "talk", "module": "bash",
         "params": {"cmd": f"{printing(1_000_000)}; ({printing(300_000)}) >&2"}}]})
    talk = report["steps"]["talk"]
    assert talk["status"] == "succeeded", talk
    out, err = talk["outputs"]["stdout"], talk["outputs"]["stderr"]
    # The head and the tail of each stream, and what was cut between them.
    assert out.startswith("the-start\nxxx") and out.endswith("xxx\nthe-end\n")
    assert err.startswith("the-start\nxxx") and err.endswith("xxx\nthe-end\n")
    assert "KiB of stdout cut" in out and "KiB of stderr cut" in err
    assert len(json.dumps(talk["outputs"])) <= SMALL


# -- captured output -------------------------------------------------------------------

def test_printing_more_than_the_log_limit_keeps_head_tail_and_a_cut_notice(run: Run) -> None:
    report, lines = run({"name": "loud", "steps": [
        {"name": "loud", "module": "bash", "params": {"cmd": printing(1_000_000)}}]})
    assert report["steps"]["loud"]["status"] == "succeeded"
    texts = [ln.text for ln in lines if ln.step == "loud"]
    stdout = stdout_of(lines, "loud")
    assert stdout[0].startswith("the-start\nxxx") and stdout[-1].endswith("xxx\nthe-end\n")
    [notice] = notices(lines)
    kept = sum(utf8_size(t) for t in texts if t != notice)
    assert kept <= SMALL
    # Everything is accounted for: what is kept and what the notice counts (the printed
    # lines, and bash's "exit code 0" message after them).
    total = len("the-start\n") + 1_000_000 + len("\nthe-end\n") + len("INFO exit code 0")
    assert notice == f"[... {format_bytes(total - kept)} of output cut: " \
                     "CHORDFLOW_MAX_LOG_BYTES is 64 KiB; the head and the tail are kept ...]"
    assert stdout.index(notice) not in (0, len(stdout) - 1)  # between head and tail
    assert [ln.attempt for ln in lines] == [1] * len(lines)


@DEFAULTS
def test_printing_100_mb_succeeds_and_keeps_the_head_and_the_tail(
        run: Run, limits: dict[str, int]) -> None:
    report, lines = run({"name": "flood", "steps": [
        {"name": "flood", "module": "bash", "params": {"cmd": printing(100_000_000)}}]})
    flood = report["steps"]["flood"]
    assert flood["status"] == "succeeded", flood
    stdout = stdout_of(lines, "flood")
    assert stdout[0].startswith("the-start\nxxx") and stdout[-1].endswith("xxx\nthe-end\n")
    assert notices(lines) == ["[... 94.4 MiB of output cut: CHORDFLOW_MAX_LOG_BYTES is "
                              "1 MiB; the head and the tail are kept ...]"]
    assert sum(utf8_size(ln.text) for ln in lines) < 1024 * 1024 + 1024
    out = flood["outputs"]["stdout"]
    assert out.startswith("the-start\nxxx") and out.endswith("xxx\nthe-end\n")
    assert "MiB of stdout cut" in out and len(out) <= 1024 * 1024


@DEFAULTS
def test_printing_100_mb_holds_a_bounded_amount_of_memory(
        settings: Settings, limits: dict[str, int]) -> None:
    """In one process, so the peak of what Python allocates can be measured (about
    5 MiB; reading it all at once, as ``communicate`` did, peaked at 286 MiB)."""
    with EmbeddedExecutor(settings=settings, threads=2) as ex:
        plan = ex.compile(load_data({"name": "mem", "steps": [
            {"name": "flood", "module": "bash", "params": {"cmd": printing(100_000_000)}}]}))
        tracemalloc.start()
        try:
            run_id = ex.run(plan, timeout=60)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ex.store.get_run(run_id).status == "succeeded"
    assert peak < 20 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while 95 MiB were cut"


def test_an_attempt_logging_a_lot_keeps_its_first_and_last_messages(run: Run) -> None:
    report, lines = run({"name": "chatter", "steps": [
        {"name": "log", "module": "python",
         "params": {"function": "tests.helpers.noisy:log_many", "args": [5_000]}}]})
    assert report["steps"]["log"]["status"] == "succeeded", report["steps"]["log"]
    texts = [ln.text for ln in lines if ln.step == "log"]
    assert texts[0] == "INFO message 0 of 5000"
    assert texts[-1] == "INFO message 4999 of 5000"
    [notice] = notices(lines)
    assert notice.startswith("[... ") and texts.index(notice) > 0
    assert sum(utf8_size(t) for t in texts if t != notice) <= SMALL


@pytest.mark.parametrize("run", ["embedded-mongo"], indirect=True)
@pytest.mark.parametrize("limits", [{"max_log_bytes": 40 * 1024 * 1024}], ids=["40MiB"])
def test_a_line_longer_than_a_document_is_stored_in_pieces(
        run: Run, limits: dict[str, int]) -> None:
    """36 MB in one line: as one document it would be over MongoDB's 16 MB limit."""
    report, lines = run({"name": "long-line", "steps": [
        {"name": "line", "module": "bash",
         "params": {"cmd": "head -c 36000000 /dev/zero | tr '\\0' y; echo; echo done"}}]})
    assert report["steps"]["line"]["status"] == "succeeded"
    stdout = stdout_of(lines, "line")
    assert len(stdout) > 4  # in pieces, each far below the document limit
    assert max(len(t) for t in stdout) <= 4 * 1024 * 1024
    assert "".join(stdout) == "y" * 36_000_000 + "\ndone\n"
    assert notices(lines) == []


@pytest.mark.parametrize("run", ["embedded-mongo"], indirect=True)
def test_output_the_store_refuses_leaves_a_line_saying_it_was_lost(run: Run) -> None:
    """A lone surrogate cannot be encoded to BSON: the step's output is refused."""
    report, lines = run({"name": "lost", "steps": [
        {"name": "odd", "module": "python",
         "params": {"function": "tests.helpers.noisy:log_surrogate"}}]})
    assert report["steps"]["odd"]["status"] == "succeeded"
    [line] = [ln for ln in lines if ln.step == "odd"]
    assert line.stream == "log" and line.attempt == 1
    assert line.text.startswith("WARNING the output of this attempt could not be stored")


# -- the bounded buffers themselves ----------------------------------------------------

def test_head_tail_keeps_whole_characters_and_counts_every_byte_it_cut() -> None:
    buffer = HeadTail(1000)
    text = "é€a" * 2000  # 2, 3 and 1 bytes
    for start in range(0, len(text), 7):
        buffer.write(text[start:start + 7])
    head, cut, tail = buffer.parts()
    assert text.startswith(head) and text.endswith(tail)
    assert utf8_size(head) <= 500 and utf8_size(tail) <= 500
    assert utf8_size(head) + cut + utf8_size(tail) == utf8_size(text)
    head, cut, tail = buffer.parts(100)
    assert text.startswith(head) and text.endswith(tail)
    assert utf8_size(head) + utf8_size(tail) <= 100
    assert utf8_size(head) + cut + utf8_size(tail) == utf8_size(text)


def test_captured_output_merges_its_cuts_into_one_notice() -> None:
    captured = Captured(1024)
    captured.add("log", "INFO started")
    captured.add("stdout", "a" * 400)
    captured.add_gap("stdout", 5000)  # cut by the process's own buffer
    captured.add("stdout", "b" * 2000)
    captured.add("log", "INFO done")
    lines = captured.lines()
    texts = [text for _, _, text in lines]
    assert texts[0] == "INFO started" and texts[-1] == "INFO done"
    [notice] = [t for t in texts if "cut" in t]
    kept = sum(utf8_size(t) for t in texts if t != notice)
    assert kept <= 1024
    total = len("INFO started") + 400 + 5000 + 2000 + len("INFO done")
    assert captured.cut == total - kept
    assert notice.startswith(f"[... {format_bytes(total - kept)} of output cut")
