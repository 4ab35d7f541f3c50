"""The bounded memories of a process (app/engine/recent.py): unit tests."""

from __future__ import annotations

import threading

from chordflow.engine.recent import Recent


def test_the_least_recently_used_entry_goes_first():
    recent: Recent[str, int] = Recent(2)
    recent.put("a", 1)
    recent.put("b", 2)
    assert recent.get("a") == 1  # now b is the oldest
    recent.put("c", 3)
    assert (recent.get("a"), recent.get("b"), recent.get("c")) == (1, None, 3)


def test_first_time_is_true_once_per_key_while_remembered():
    recent: Recent[str, bool] = Recent(10)
    assert recent.first_time("k", True) and not recent.first_time("k", True)


def test_raise_to_only_goes_up():
    recent: Recent[str, int] = Recent(10)
    assert recent.raise_to("s", 1) and not recent.raise_to("s", 1)
    assert recent.raise_to("s", 3) and not recent.raise_to("s", 2)
    assert recent.get("s") == 3


def test_one_thread_of_many_is_first():
    recent: Recent[int, bool] = Recent(10)
    firsts: list[bool] = []
    barrier = threading.Barrier(8)

    def race() -> None:
        barrier.wait()
        firsts.append(recent.first_time(1, True))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(firsts) == [False] * 7 + [True]
