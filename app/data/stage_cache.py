"""The host-wide cache of staged inputs: one download per object per host.

Every worker process of a host (and every host has its own) shares one directory,
``CHORDFLOW_STAGE_CACHE_DIR``, bounded by ``CHORDFLOW_STAGE_CACHE_BYTES``. What the
replaced data-staging service got wrong is what this module is built around: several
processes at once, a download killed half-way, an object evicted while in use.

An object is known by its remote path, size and modification time (and hash where the
remote has one): :class:`RemoteObject`, whose :attr:`~RemoteObject.key` names its files.
A changed object on the remote is a new key, so a stale copy is never served; the old
one ages out.

Layout of the directory::

    objects/<key>        the object (a file, or a directory for a staged folder)
    entries/<key>.json   what it is and its size; its mtime is its last use (LRU)
    leases/<key>.lock    shared lock: a step is using the object (never evicted)
    fetch/<key>.lock     exclusive lock: a process is downloading it
    tmp/<key>.<random>   a download under way
    cache.lock           exclusive while an eviction pass adds up and evicts

Rules (app/data/locks.py for the locks themselves):

- An object is *in the cache* once its entry file exists; the entry is written (renamed
  into place) only after the download is complete and renamed into ``objects/``. A
  download that is killed leaves at most a ``tmp/`` file or an object without an entry,
  both removed by the next process that fetches that key (or by an eviction pass), and
  never served.
- A user holds the object's lease (shared) from before it looks the object up until it is
  done with it; an eviction pass evicts an object only if it can take the lease
  exclusively at that moment, without waiting. A process that dies drops its leases.
- Only one process downloads a key at a time (the fetch lock); the others wait, then
  find the object in the cache (a hit).
- Least recently used objects are evicted first when the cache holds more than its bound
  (or would, with the object about to be downloaded). Objects in use are skipped: the
  bound may be exceeded while they are in use, never by evicting them; the next pass,
  when they are released, brings the cache back under it.
- Cached files are made read-only: a step gets a hard link to them by default, and a hard
  link is the same file (app/data/staging.py offers a copy for a step that writes to it).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from chordflow.data.locks import EXCLUSIVE, SHARED, FileLock
from chordflow.data.stage_metrics import StageMetrics, stage_metrics

log = logging.getLogger("chordflow.stage_cache")

#: Downloads ``fetch(dest)``: writes the whole object at ``dest`` (a file, or a
#: directory for a folder) or raises.
Fetch = Callable[[Path], None]
#: Raises to stop a wait (the step's cancel or timeout, ``StepContext.check``).
Check = Callable[[], None]


def _no_check() -> None:
    """Nothing asks the wait to stop."""


@dataclass(frozen=True)
class RemoteObject:
    """What a remote says of an object: enough to tell two versions apart."""

    #: The remote path as rclone names it (``archive:bucket/ref/genome.fa``).
    source: str
    #: Bytes (a folder's: the sum of its files').
    size: int
    #: Modification time as the remote reports it (a folder's: its newest file's).
    modtime: str
    #: ``"md5:..."`` or another rclone hash where the remote has one; a folder's is a
    #: digest of its listing (names, sizes, times, hashes).
    hash: str | None = None
    is_dir: bool = False

    @property
    def key(self) -> str:
        """The object's name in the cache: a digest of everything above."""
        text = json.dumps([self.source, self.size, self.modtime, self.hash, self.is_dir])
        return hashlib.sha256(text.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CacheEntry:
    """One object in the cache, as an eviction pass or ``chordflow`` sees it."""

    key: str
    source: str
    bytes: int
    #: UNIX time of its last use.
    used: float
    in_use: bool


class StageError(Exception):
    """The cache could not provide an object (the download failed or was incomplete)."""


class Lease:
    """A cached object a step is using: it is not evicted until :meth:`release`."""

    def __init__(self, cache: StageCache, key: str, lock: FileLock, hit: bool, size: int):
        self.cache = cache
        self.key = key
        self._lock = lock
        #: Found in the cache (True), or downloaded by this call (False).
        self.hit = hit
        #: The object's bytes.
        self.bytes = size

    @property
    def path(self) -> Path:
        """The cached object (read it, link it; never change it)."""
        return self.cache.object_path(self.key)

    def release(self) -> None:
        """Done with the object: it may now be evicted (and is, if the cache is over)."""
        if self._lock.held:
            self.cache.touch(self.key)
            self._lock.release()
            self.cache.evict()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class StageCache:
    """One host's cache directory; cheap to make, any number per process."""

    def __init__(self, root: Path, max_bytes: int, metrics: StageMetrics | None = None):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._metrics = metrics
        for sub in ("objects", "entries", "leases", "fetch", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def metrics(self) -> StageMetrics:
        if self._metrics is None:
            self._metrics = stage_metrics()
        return self._metrics

    # -- paths -----------------------------------------------------------------------

    def object_path(self, key: str) -> Path:
        return self.root / "objects" / key

    def _entry_path(self, key: str) -> Path:
        return self.root / "entries" / f"{key}.json"

    def _lease_lock(self, key: str) -> FileLock:
        return FileLock(self.root / "leases" / f"{key}.lock")

    def _fetch_lock(self, key: str) -> FileLock:
        return FileLock(self.root / "fetch" / f"{key}.lock")

    # -- using an object ---------------------------------------------------------------

    def acquire(self, obj: RemoteObject, fetch: Fetch, check: Check = _no_check) -> Lease:
        """The object, from the cache or downloaded into it once, leased to the caller
        until the lease is released. Waits (calling ``check``) while another process
        downloads it; StageError if the download fails or comes out incomplete (the
        fetch's own error is its cause)."""
        key = obj.key
        lease = self._lease_lock(key)
        lease.acquire(SHARED, check)  # waits only for an eviction of this key under way
        try:
            size = self._committed(key)
            if size is not None:
                self.touch(key)
                self.metrics.hits.inc()
                return Lease(self, key, lease, hit=True, size=size)
            hit, size = self._fetch_once(obj, fetch, check)
            return Lease(self, key, lease, hit=hit, size=size)
        except BaseException:
            lease.release()
            raise

    def _fetch_once(self, obj: RemoteObject, fetch: Fetch, check: Check) -> tuple[bool, int]:
        """Download the object unless another process did while this one waited for the
        right to; (found after all, bytes)."""
        key = obj.key
        with self._fetch_lock(key) as fetching:
            fetching.acquire(EXCLUSIVE, check)
            size = self._committed(key)
            if size is not None:  # downloaded by the process we waited for
                self.touch(key)
                self.metrics.hits.inc()
                return True, size
            self._remove_leftovers(key)
            self.evict(incoming=obj.size)
            size = self._download(obj, fetch)
            self.metrics.misses.inc()
        self.evict()
        return False, size

    def _download(self, obj: RemoteObject, fetch: Fetch) -> int:
        """Fetch under a temporary name, check it, move it in, then write its entry."""
        key = obj.key
        tmp = self.root / "tmp" / f"{key}.{uuid.uuid4().hex[:12]}"
        try:
            if obj.is_dir:
                tmp.mkdir()
            fetch(tmp)
            if not tmp.exists() or tmp.is_dir() != obj.is_dir:
                kind = "folder" if obj.is_dir else "file"
                raise StageError(f"{obj.source}: the download left no {kind}")
            size = _tree_bytes(tmp)
            if not obj.is_dir and size != obj.size:
                raise StageError(f"{obj.source}: downloaded {size:,} bytes, the remote "
                                 f"listed {obj.size:,} (did it change meanwhile?)")
            _make_read_only(tmp)
            os.replace(tmp, self.object_path(key))
        except BaseException:
            _remove(tmp)
            raise
        entry = {"key": key, "source": obj.source, "size": obj.size, "bytes": size,
                 "modtime": obj.modtime, "hash": obj.hash, "is_dir": obj.is_dir,
                 "added": time.time()}
        staged = self.root / "tmp" / f"{key}.entry.{uuid.uuid4().hex[:12]}"
        staged.write_text(json.dumps(entry))
        os.replace(staged, self._entry_path(key))  # now it is in the cache
        return size

    def _committed(self, key: str) -> int | None:
        """The bytes of the object if it is in the cache (entry and object present)."""
        try:
            entry = json.loads(self._entry_path(key).read_text())
        except (FileNotFoundError, ValueError):
            return None
        if not self.object_path(key).exists():
            return None
        return int(entry.get("bytes", 0))

    def _remove_leftovers(self, key: str) -> None:
        """What a killed download of ``key`` left (the caller holds its fetch lock, so
        no download of it is under way)."""
        for tmp in (self.root / "tmp").glob(f"{key}.*"):
            _remove(tmp)
        if not self._entry_path(key).exists():
            _remove(self.object_path(key))

    def touch(self, key: str) -> None:
        """Mark the object used now (its place in the LRU order)."""
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._entry_path(key))

    # -- the bound -----------------------------------------------------------------------

    def entries(self) -> list[CacheEntry]:
        """Every object in the cache, least recently used first."""
        found = []
        for path in (self.root / "entries").glob("*.json"):
            key = path.name.removesuffix(".json")
            try:
                used = path.stat().st_mtime
                data = json.loads(path.read_text())
            except (FileNotFoundError, ValueError):
                continue
            probe = self._lease_lock(key)
            in_use = not probe.try_acquire(EXCLUSIVE)
            probe.release()
            found.append(CacheEntry(key, str(data.get("source", "")),
                                    int(data.get("bytes", 0)), used, in_use))
        return sorted(found, key=lambda e: (e.used, e.key))

    def used_bytes(self) -> int:
        return sum(entry.bytes for entry in self.entries())

    def evict(self, incoming: int = 0) -> int:
        """Evict least recently used objects not in use until the cache holds at most
        its bound less ``incoming`` bytes (about to be downloaded); the number evicted.
        One pass at a time per host (``cache.lock``), so no eviction is counted twice."""
        evicted = 0
        with FileLock(self.root / "cache.lock") as whole:
            whole.acquire(EXCLUSIVE)
            entries = self.entries()
            total = sum(e.bytes for e in entries)
            for entry in entries:
                if total + incoming <= self.max_bytes:
                    break
                if self._evict_one(entry.key):
                    total -= entry.bytes
                    evicted += 1
            if total + incoming > self.max_bytes and evicted < len(entries):
                log.info("stage cache %s holds %d bytes, over its bound of %d: the rest "
                         "is in use", self.root, total, self.max_bytes)
            self._collect_garbage()
        if evicted:
            self.metrics.evictions.inc(evicted)
        self.metrics.bytes.set(total)
        return evicted

    def _evict_one(self, key: str) -> bool:
        """Evict ``key`` if nobody uses or downloads it right now."""
        lease, fetching = self._lease_lock(key), self._fetch_lock(key)
        if not lease.try_acquire(EXCLUSIVE):
            return False  # in use
        try:
            if not fetching.try_acquire(EXCLUSIVE):
                return False
            self._entry_path(key).unlink(missing_ok=True)  # out of the cache from here
            _remove(self.object_path(key))
            fetching.unlink_and_release()
            lease.unlink_and_release()
            log.debug("evicted %s from the stage cache", key)
            return True
        finally:
            fetching.release()
            lease.release()

    def _collect_garbage(self) -> None:
        """Remove what killed downloads left behind, of keys nobody is fetching."""
        orphans = {p.name.split(".", 1)[0] for p in (self.root / "tmp").iterdir()}
        orphans |= {p.name for p in (self.root / "objects").iterdir()
                    if not self._entry_path(p.name).exists()}
        for key in orphans:
            fetching = self._fetch_lock(key)
            if fetching.try_acquire(EXCLUSIVE):
                try:
                    self._remove_leftovers(key)
                finally:
                    fetching.release()


def _tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a directory."""
    if not path.is_dir():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and
               not p.is_symlink())


def _make_read_only(path: Path) -> None:
    """Files read-only (a hard link to them is the same file); directories stay
    writable by the cache, which must be able to remove what they hold."""
    for file in _files(path):
        file.chmod(file.stat().st_mode & 0o555)


def _files(path: Path) -> Iterator[Path]:
    if not path.is_dir():
        yield path
        return
    yield from (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path) -> None:
    """Remove a file or a directory tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
