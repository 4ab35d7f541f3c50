"""The host stage cache through real processes: separate OS processes share one cache
directory (as a host's worker processes do), with a local-file fetch standing in for
rclone (the staging tests use rclone's own servers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from chordflow.data.stage_cache import RemoteObject, StageCache, StageError
from chordflow.data.stage_metrics import StageMetrics
from prometheus_client import CollectorRegistry, Counter, Gauge

from tests.data.stage_client import local_object
from tests.servers import ROOT

MB = 1024 * 1024
DEADLINE = 30.0


def private_metrics() -> tuple[StageMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return StageMetrics(
        hits=Counter("hits", "", registry=registry),
        misses=Counter("misses", "", registry=registry),
        evictions=Counter("evictions", "", registry=registry),
        bytes=Gauge("bytes", "", registry=registry),
    ), registry


def make_file(path: Path, size: int, fill: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((fill * (size // len(fill) + 1))[:size])
    return path


def copy_fetch(source: Path):  # noqa: ANN201 - a Fetch
    return lambda dest: dest.write_bytes(source.read_bytes())


class Clients:
    """Stage-client subprocesses, each stopped at the end of the test."""

    def __init__(self, root: Path):
        self.root = root
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, bound: int, source: Path, *flags: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.data.stage_client", str(self.root), str(bound),
             str(source), *flags],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.procs.append(proc)
        return proc

    @staticmethod
    def answer(proc: subprocess.Popen[str]) -> list[str]:
        """The client's ``hit PATH`` / ``miss PATH`` line, split."""
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no answer"
        return line.split()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=DEADLINE)


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Clients]:
    found = Clients(tmp_path / "cache")
    try:
        yield found
    finally:
        found.stop()


def test_processes_needing_one_object_download_it_once(tmp_path: Path, clients: Clients):
    source = make_file(tmp_path / "origin" / "genome.fa", MB, b"ACGT")
    # Slow enough that the six overlap: five wait for the one that downloads.
    procs = [clients.start(10 * MB, source, "--slow", "0.02") for _ in range(6)]
    answers = [clients.answer(p) for p in procs]
    for proc in procs:
        assert proc.wait(DEADLINE) == 0
    assert sorted(kind for kind, _ in answers) == ["hit"] * 5 + ["miss"]
    downloads = (tmp_path / "downloads.log").read_text().splitlines()
    assert len(downloads) == 1
    paths = {path for _, path in answers}
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == source.read_bytes()
    cache = StageCache(clients.root, 10 * MB, private_metrics()[0])
    assert [(e.source, e.bytes, e.in_use) for e in cache.entries()] == [
        (str(source), MB, False)]


def test_an_object_in_use_is_never_evicted_and_a_killed_user_frees_it(
        tmp_path: Path, clients: Clients):
    first = make_file(tmp_path / "origin" / "first", MB, b"1")
    second = make_file(tmp_path / "origin" / "second", MB, b"2")
    third = make_file(tmp_path / "origin" / "third", MB, b"3")
    bound = MB + MB // 2  # room for one object
    metrics, registry = private_metrics()
    cache = StageCache(clients.root, bound, metrics)

    holder = clients.start(bound, first, "--hold")
    assert clients.answer(holder)[0] == "miss"
    with cache.acquire(local_object(second), copy_fetch(second)) as lease:
        assert not lease.hit
        # Over the bound, and it stays so: the other object is in use.
        in_use = {Path(e.source).name: e.in_use for e in cache.entries()}
        assert in_use == {"first": True, "second": True}
        assert cache.used_bytes() == 2 * MB > bound
        assert registry.get_sample_value("evictions_total") == 0
        assert cache.object_path(local_object(first).key).read_bytes() == first.read_bytes()

        # The holder is killed without a word: its lease goes with it.
        holder.send_signal(signal.SIGKILL)
        holder.wait(DEADLINE)
        assert cache.evict() == 1
        assert [Path(e.source).name for e in cache.entries()] == ["second"]
    assert registry.get_sample_value("evictions_total") == 1

    # Released, the second object is the least recently used: the third replaces it.
    with cache.acquire(local_object(third), copy_fetch(third)):
        assert [Path(e.source).name for e in cache.entries()] == ["third"]
    assert registry.get_sample_value("evictions_total") == 2
    assert registry.get_sample_value("bytes") == MB


def test_least_recently_used_objects_go_first(tmp_path: Path):
    files = {name: make_file(tmp_path / "origin" / name, MB, name.encode())
             for name in ("a", "b", "c")}
    metrics, registry = private_metrics()
    cache = StageCache(tmp_path / "cache", 2 * MB + MB // 2, metrics)
    for name in ("a", "b", "a"):  # a used last
        cache.acquire(local_object(files[name]), copy_fetch(files[name])).release()
        time.sleep(0.01)  # distinct modification times (the LRU order), not a timing check
    cache.acquire(local_object(files["c"]), copy_fetch(files["c"])).release()
    assert sorted(Path(e.source).name for e in cache.entries()) == ["a", "c"]
    assert registry.get_sample_value("hits_total") == 1
    assert registry.get_sample_value("misses_total") == 3
    assert registry.get_sample_value("evictions_total") == 1


def test_a_download_killed_midway_leaves_no_entry_and_the_retry_completes(
        tmp_path: Path, clients: Clients):
    source = make_file(tmp_path / "origin" / "big.bin", 2 * MB, b"0123456789")
    slow = clients.start(10 * MB, source, "--slow", "0.2")  # 32 pieces: ~6 s
    tmp = clients.root / "tmp"

    def begun() -> bool:
        return tmp.exists() and any(p.stat().st_size > 0 for p in tmp.glob("*"))

    deadline = time.monotonic() + DEADLINE
    while not begun():
        assert time.monotonic() < deadline and slow.poll() is None, "no download began"
        time.sleep(0.05)
    slow.send_signal(signal.SIGKILL)
    slow.wait(DEADLINE)

    metrics, _ = private_metrics()
    cache = StageCache(clients.root, 10 * MB, metrics)
    assert cache.entries() == []
    assert list((clients.root / "objects").iterdir()) == []
    assert list(tmp.iterdir()), "the killed download's partial file is left behind"

    with cache.acquire(local_object(source), copy_fetch(source)) as lease:
        assert not lease.hit
        assert lease.path.read_bytes() == source.read_bytes()
    assert list(tmp.iterdir()) == []  # what the killed download left is gone
    assert [e.bytes for e in cache.entries()] == [2 * MB]


def test_an_incomplete_or_failed_download_never_enters_the_cache(tmp_path: Path):
    source = make_file(tmp_path / "origin" / "f", 1000)
    cache = StageCache(tmp_path / "cache", 10 * MB, private_metrics()[0])
    obj = local_object(source)
    with pytest.raises(StageError, match="downloaded 10 bytes, the remote listed 1,000"):
        cache.acquire(obj, lambda dest: dest.write_bytes(b"x" * 10))

    def broken(dest: Path) -> None:
        dest.write_bytes(b"half")
        raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        cache.acquire(obj, broken)
    assert cache.entries() == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    # Not leased either: the failed calls let go of the object.
    with cache.acquire(obj, copy_fetch(source)) as lease:
        assert lease.path.read_bytes() == source.read_bytes()


def test_a_changed_object_is_a_new_entry_and_cached_files_are_read_only(tmp_path: Path):
    source = make_file(tmp_path / "origin" / "f", 100, b"old")
    cache = StageCache(tmp_path / "cache", 10 * MB, private_metrics()[0])
    old = local_object(source)
    with cache.acquire(old, copy_fetch(source)) as lease:
        assert not lease.path.stat().st_mode & 0o222
    make_file(source, 120, b"new")
    new = local_object(source)
    assert new.key != old.key
    with cache.acquire(new, copy_fetch(source)) as lease:
        assert not lease.hit
        assert lease.path.read_bytes().startswith(b"new")
    assert RemoteObject("r:x", 1, "t", "md5:a").key != RemoteObject("r:x", 1, "t", "md5:b").key
