"""chordflow.flow run in this process: what JFlow does and what it lacks (dedup, cycles,
failures, retries, timeouts, Map, when, cancel, sync and async mixed, strict)."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from typing import Any

import pytest
from chordflow.flow import (
    CycleError,
    Depends,
    FlowError,
    Map,
    NotSerializable,
    Workflow,
    WorkflowCancelled,
    WorkflowFailed,
    step,
)


def test_shared_dependency_runs_once_under_concurrency() -> None:
    """Ten dependents awaiting one slow dependency at the same time: it runs once per
    run; two runs at once each run it once."""
    calls: list[int] = []

    async def shared(tag: int) -> int:
        calls.append(tag)
        await asyncio.sleep(0.05)
        return tag

    def dependent(k: int) -> Any:
        async def fn(x: int = Depends(shared)) -> int:
            await asyncio.sleep(0)
            return x * 100 + k
        fn.__name__ = f"dep{k}"
        return fn

    goals = [dependent(k) for k in range(10)]
    workflow = Workflow(*goals)

    async def both() -> list[list[Any]]:
        return list(await asyncio.gather(workflow.run({shared: [1]}),
                                         workflow.run({shared: [2]})))

    first, second = asyncio.run(both())
    assert first == [100 + k for k in range(10)]
    assert second == [200 + k for k in range(10)]
    assert sorted(calls) == [1, 2]


def test_sync_functions_run_in_threads_and_async_ones_on_the_loop() -> None:
    where: dict[str, bool] = {}
    main = threading.get_ident()

    def read(path: str) -> str:
        where["read"] = threading.get_ident() == main
        time.sleep(0.01)  # would block the loop if it ran there
        return path.upper()

    async def parse(text: str = Depends(read)) -> list[str]:
        where["parse"] = threading.get_ident() == main
        return list(text)

    def count(letters: list[str] = Depends(parse), text: str = Depends(read)) -> int:
        return len(letters) + len(text)

    assert Workflow(count).run_sync({read: ["abc"]}) == [6]
    assert where == {"read": False, "parse": True}


def test_run_sync_refuses_a_running_loop_and_run_awaits_in_one() -> None:
    async def one() -> int:
        return 1

    workflow = Workflow(one)

    async def inside() -> list[Any]:
        with pytest.raises(RuntimeError, match="await workflow.run"):
            workflow.run_sync()
        return await workflow.run()

    assert asyncio.run(inside()) == [1]


def test_a_cycle_is_refused_with_its_path() -> None:
    async def a(x: Any = None) -> int:
        return 1

    async def b(y: Any = Depends(a)) -> int:
        return 2

    async def c(z: Any = Depends(b)) -> int:
        return 3

    a.__defaults__ = (Depends(c),)
    with pytest.raises(CycleError) as caught:
        Workflow(c)
    assert caught.value.cycle == ["c", "b", "a", "c"]
    assert "cycle in the workflow: c -> b -> a -> c" in str(caught.value)


def test_failure_marks_dependents_upstream_failed_and_independent_branches_finish() -> None:
    finished: list[str] = []

    async def source() -> int:
        return 1

    async def broken(x: int = Depends(source)) -> int:
        raise ValueError("no good")

    async def after(y: int = Depends(broken)) -> int:
        finished.append("after")
        return y

    async def later(z: int = Depends(after)) -> int:
        return z

    async def slow_branch(x: int = Depends(source)) -> str:
        await asyncio.sleep(0.05)
        finished.append("slow_branch")
        return "done"

    with pytest.raises(WorkflowFailed) as caught:
        Workflow(later, slow_branch).run_sync()
    failed = caught.value
    assert failed.states == {"source": "succeeded", "broken": "failed",
                             "after": "upstream_failed", "later": "upstream_failed",
                             "slow_branch": "succeeded"}
    assert finished == ["slow_branch"]
    assert isinstance(failed.first_error, ValueError)
    assert failed.__cause__ is failed.first_error
    assert set(failed.errors) == {"broken"}
    assert failed.results == {"source": 1, "slow_branch": "done"}
    # The original traceback: the line that raised, in the function that raised it.
    frames = traceback.extract_tb(failed.first_error.__traceback__)
    assert frames[-1].name == "broken" and "no good" in (frames[-1].line or "")
    assert "step 'broken' failed: ValueError('no good')" in str(failed)


def test_continue_on_failure_lets_dependents_run() -> None:
    @step(continue_on_failure=True)
    def optional() -> int:
        raise OSError("offline")

    def report(value: Any = Depends(optional)) -> str:
        return f"got {value}"

    assert Workflow(report).run_sync() == ["got None"]


def test_retries_until_success_and_until_exhausted() -> None:
    attempts: list[int] = []

    @step(retries=3, retry_delay=0.01, retry_backoff=2)
    async def flaky() -> str:
        attempts.append(len(attempts) + 1)
        if len(attempts) < 3:
            raise ConnectionError(f"attempt {len(attempts)}")
        return "ok"

    assert Workflow(flaky).run_sync() == ["ok"]
    assert attempts == [1, 2, 3]

    tries: list[int] = []

    @step(retries=2)
    def always() -> None:
        tries.append(1)
        raise RuntimeError("still broken")

    with pytest.raises(WorkflowFailed) as caught:
        Workflow(always).run_sync()
    assert len(tries) == 3
    assert str(caught.value.first_error) == "still broken"


def test_timeouts_fail_async_and_sync_steps_and_are_retried() -> None:
    attempts: list[int] = []

    @step(timeout=0.05, retries=1)
    async def sleepy() -> str:
        attempts.append(1)
        await asyncio.sleep(30)
        return "late"

    @step(timeout=0.05)
    def blocking() -> str:
        time.sleep(0.5)
        return "late"

    with pytest.raises(WorkflowFailed) as caught:
        Workflow(sleepy, blocking).run_sync()
    errors = caught.value.errors
    assert len(attempts) == 2
    assert isinstance(errors["sleepy"], TimeoutError)
    assert "step 'sleepy' timed out after 0.05s" in str(errors["sleepy"])
    assert "step 'blocking' timed out after 0.05s" in str(errors["blocking"])


def test_map_runs_once_per_element_in_order() -> None:
    seen: list[int] = []

    def numbers(n: int) -> list[int]:
        return list(range(n))

    async def square(x: int, offset: int = Depends(numbers)) -> int:
        seen.append(x)
        await asyncio.sleep(0.001 * (5 - x))  # finish out of order
        return x * x + len(offset)

    async def total(squares: list[int] = Map(square, over=Depends(numbers))) -> int:
        return sum(squares)

    workflow = Workflow(total, Map(square, over=Depends(numbers)))
    assert workflow.steps == ["numbers", "square", "total"]
    result_total, result_squares = workflow.run_sync({numbers: [5]})
    assert result_squares == [5, 6, 9, 14, 21]
    assert result_total == 55
    assert sorted(seen) == [0, 1, 2, 3, 4]


def test_map_failure_names_how_many_elements_and_the_first() -> None:
    def halve(x: int) -> float:
        if x % 2:
            raise ValueError(f"{x} is odd")
        return x / 2

    workflow = Workflow(Map(halve, over=[2, 3, 4, 5]))
    with pytest.raises(WorkflowFailed) as caught:
        workflow.run_sync()
    error = caught.value.errors["halve"]
    assert "2 of 4 elements failed; the first, element 1: ValueError('3 is odd')" in str(error)
    assert isinstance(error.__cause__, ValueError)


def test_map_over_something_not_a_list_fails_naming_it() -> None:
    def one() -> int:
        return 1

    def double(x: int) -> int:
        return 2 * x

    with pytest.raises(WorkflowFailed) as caught:
        Workflow(Map(double, over=Depends(one))).run_sync()
    assert "Map over 'one', whose result is int, not a list" in str(caught.value.errors["double"])


def test_when_predicate_and_condition_skip_steps_and_their_dependents() -> None:
    def stock() -> int:
        return 40

    @step(when=lambda level: level < 10)
    def reorder(level: int = Depends(stock)) -> str:
        return "ordered"

    def confirm(order: str = Depends(reorder)) -> str:
        return "confirmed"

    @step(when="${steps.stock.outputs.result} >= 10")
    def enough(level: int = Depends(stock)) -> str:
        return f"{level} in stock"

    workflow = Workflow(confirm, enough)
    assert workflow.run_sync() == [None, "40 in stock"]


def test_when_must_read_the_steps_dependencies() -> None:
    def a() -> int:
        return 1

    @step(when=lambda nothing: True)
    def b(x: int = Depends(a)) -> int:
        return x

    with pytest.raises(FlowError, match="when= names 'nothing', which is not one of its "
                                        r"dependencies \(x\)"):
        Workflow(b)

    @step(when="${steps.elsewhere.outputs.result} > 1")
    def c(x: int = Depends(a)) -> int:
        return x

    with pytest.raises(FlowError, match="step 'c': when: .*steps.elsewhere"):
        Workflow(c)


def test_cancel_stops_running_work() -> None:
    started = asyncio.Event()
    stopped: list[str] = []

    async def long() -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append("long")
            raise

    async def after(x: None = Depends(long)) -> None:
        stopped.append("after ran")

    workflow = Workflow(after)

    async def scenario() -> WorkflowCancelled:
        run = asyncio.ensure_future(workflow.run())
        await started.wait()
        workflow.cancel()
        with pytest.raises(WorkflowCancelled) as caught:
            await run
        return caught.value

    cancelled = asyncio.run(scenario())
    assert stopped == ["long"]
    assert cancelled.states == {"long": "cancelled", "after": "cancelled"}


def test_cancel_from_another_thread_and_ctrl_c_cancel_the_run() -> None:
    async def long() -> None:
        await asyncio.sleep(30)

    workflow = Workflow(long)
    timer = threading.Timer(0.1, workflow.cancel)
    timer.start()
    with pytest.raises(WorkflowCancelled):
        workflow.run_sync()
    timer.join()

    # Ctrl-C: asyncio.run cancels the main task, which cancels every step.
    stopped: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append(True)
            raise

    async def main() -> None:
        task = asyncio.ensure_future(Workflow(waits).run())
        await asyncio.sleep(0.05)
        task.cancel()  # what asyncio.run does on SIGINT
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert stopped == [True]


def test_entry_points_are_checked_before_anything_runs() -> None:
    ran: list[str] = []

    def person(name: str, age: int = 0) -> dict[str, Any]:
        ran.append(name)
        return {"name": name, "age": age}

    def greet(p: dict[str, Any] = Depends(person)) -> str:
        return p["name"]

    workflow = Workflow(greet)
    with pytest.raises(FlowError, match=r"step 'person' needs 1 to 2 positional arguments "
                                        r"\(name, age\): give entry_points"):
        workflow.run_sync()
    with pytest.raises(FlowError, match=r"entry_points\[person\]: 3 argument\(s\) given"):
        workflow.run_sync({person: ["a", 1, 2]})
    with pytest.raises(FlowError, match="'nobody' is not a step of this workflow"):
        workflow.run_sync({"nobody": []})
    with pytest.raises(FlowError, match=r"entry_points\[person\]: a list"):
        workflow.run_sync({person: "Ann"})  # type: ignore[dict-item]
    assert ran == []
    assert workflow.run_sync({"person": ["Ann"]}) == ["Ann"]


def test_duplicate_step_names_are_refused() -> None:
    def make() -> Any:
        def value() -> int:
            return 1
        return value

    first, second = make(), make()

    def both(a: int = Depends(first), b: int = Depends(second)) -> int:
        return a + b

    with pytest.raises(FlowError, match="two steps are named 'value'.*@step"):
        Workflow(both)


def test_strict_passes_values_as_a_worker_would_receive_them() -> None:
    def pair() -> tuple[int, int]:
        return (1, 2)

    def kind(p: Any = Depends(pair)) -> str:
        return type(p).__name__

    assert Workflow(kind).run_sync() == ["tuple"]
    assert Workflow(kind).run_sync(strict=True) == ["list"]  # JSON has no tuples

    def a_set() -> set[int]:
        return {1}

    def size(s: set[int] = Depends(a_set)) -> int:
        return len(s)

    assert Workflow(size).run_sync() == [1]
    with pytest.raises(WorkflowFailed) as caught:
        Workflow(size).run_sync(strict=True)
    error = caught.value.errors["a_set"]
    assert isinstance(error, NotSerializable)
    assert "step 'a_set': its result would not reach a worker" in str(error)
    assert "@step(serializer=...)" in str(error)
    assert caught.value.states["size"] == "upstream_failed"

    pickled = step(serializer="pickle")(a_set)
    assert Workflow(size).run_sync(strict=True) == [1]
    assert pickled is a_set

    def takes(x: object) -> object:
        return x

    with pytest.raises(NotSerializable, match="step 'takes': its entry-point arguments"):
        Workflow(takes).run_sync({takes: [object()]}, strict=True)


def test_step_options_are_checked_when_given() -> None:
    with pytest.raises(ValueError, match="retries must be an int >= 0"):
        step(retries=-1)
    with pytest.raises(ValueError, match="priority must be 0-9"):
        step(priority=12)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        step(timeout=0)


CTRL_C = """
import asyncio, sys
from chordflow.flow import Workflow

async def long() -> None:
    print("started", flush=True)
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        print("stopped", flush=True)
        raise

try:
    Workflow(long).run_sync()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def test_ctrl_c_stops_the_running_steps_of_run_sync() -> None:
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130, err
    assert out == "stopped\ninterrupted\n"
