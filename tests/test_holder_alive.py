"""Who holds a running attempt: ``tasks.runtime.holder_alive`` against the replies
Celery's ``inspect().active()`` gives (a stub stands in for the control channel; the
real one is exercised by the SIGKILL and duplicate tests in tests/integration)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tasks.runtime import holder_alive

NODE, OTHER = "celery@a", "celery@b"
TASK = "run:step:1"


class _Inspect:
    def __init__(self, replies: dict[str, list[dict[str, Any]]] | None):
        self.replies = replies

    def active(self) -> dict[str, list[dict[str, Any]]] | None:
        return self.replies


class _App:
    """Just enough of a Celery app: ``app.control.inspect(...).active()``."""

    def __init__(self, replies: dict[str, list[dict[str, Any]]] | None):
        self.control = self
        self.replies = replies

    def inspect(self, destination: list[str], timeout: float) -> _Inspect:
        return _Inspect({k: v for k, v in (self.replies or {}).items() if k in destination})


def entry(pid: int, task_id: str = TASK) -> dict[str, Any]:
    return {"id": task_id, "worker_pid": pid}


ME = os.getpid()


@pytest.mark.parametrize(("replies", "asker", "asking", "alive"), [
    # Another node: its listing decides.
    ({NODE: [entry(1)]}, OTHER, "x", True),
    ({NODE: [entry(1, "else")]}, OTHER, "x", False),  # it lost the task (pool killed)
    ({}, OTHER, "x", False),  # the node does not answer: gone
    # The same node, asking as a redelivery of the very task (prefork):
    ({NODE: [entry(ME)]}, NODE, TASK, False),  # only the asker itself runs it
    ({NODE: [entry(ME), entry(ME + 1)]}, NODE, TASK, True),  # another process still does
    ({NODE: [entry(ME + 1)]}, NODE, TASK, True),  # the asker not listed yet: not dropped
    # Threads pool: every entry has the process's pid.
    ({NODE: [entry(ME), entry(ME)]}, NODE, TASK, True),  # another thread still runs it
    # The same node asking for another task (e.g. a resend after a takeover, whose id
    # differs from the recorded holder's): an entry with this pid is the holder.
    ({NODE: [entry(ME)]}, NODE, "run:step:2", True),
])
def test_holder_alive(replies: dict[str, list[dict[str, Any]]], asker: str, asking: str,
                      alive: bool) -> None:
    app: Any = _App(replies)
    assert holder_alive(app, NODE, TASK, asker=asker, asking_task=asking) is alive


def test_a_holder_without_a_node_name_is_gone() -> None:
    app: Any = _App({NODE: [entry(1)]})
    assert not holder_alive(app, None, TASK)
    assert not holder_alive(app, "host:123", TASK)  # an embedded or CLI process
