"""Fixtures of the fault tests: one stack per module (Redis and nx-27017 of its own,
since they are stopped and restarted), fresh workers and a fresh workload per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.stack import FaultStack, fault_stack
from tests.faults.workload import Workload


@pytest.fixture(scope="module")
def stack() -> Iterator[FaultStack]:
    with fault_stack() as stack:
        yield stack


@pytest.fixture
def fresh(stack: FaultStack) -> Iterator[FaultStack]:
    """The module's stack, with its workers stopped (and everything resumed) after."""
    try:
        yield stack
    finally:
        stack.stop_workers()
        if stack.redis.proc is None:
            stack.redis.start()
        if stack.mongo.proc is None:
            stack.mongo.start()


@pytest.fixture
def service(fresh: FaultStack) -> Iterator[object]:
    from chordflow.service import RunService

    svc = RunService.celery(fresh.settings())
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture
def workload(tmp_path: Path) -> Workload:
    return Workload(tmp_path)
