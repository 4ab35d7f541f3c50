"""Workflows the flow tests run on Celery workers: importable by path
(``tests.flow.flows:...``), as a worker imports them (PYTHONPATH is the repository)."""

from __future__ import annotations

from chordflow.flow import Depends, Map, Workflow, step


def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


def square(x: int) -> int:
    return x * x


async def total(squares: list[int] = Map(square, over=Depends(numbers))) -> int:
    return sum(squares)


mapped = Workflow(total, name="flow-map")


@step(serializer="pickle")
def make_set() -> set[str]:
    return {"a", "b"}


def count(values: set[str] = Depends(make_set)) -> int:
    assert isinstance(values, set)  # it arrives as it left: a set, not a list
    return len(values)


pickled = Workflow(count, make_set, name="flow-pickle")


def not_json() -> set[int]:
    return {1, 2}


def after(value: set[int] = Depends(not_json)) -> int:
    return len(value)


unserializable = Workflow(after, name="flow-not-json")


@step(retries=2, retry_delay=1.5, timeout=30, queue="reports", priority=7,
      when="${steps.make_set.outputs.result} != null", name="report-count")
def report(values: set[str] = Depends(make_set)) -> int:
    """Count the values (a step with every option)."""
    return len(values)


optioned = Workflow(report, name="flow-options")
