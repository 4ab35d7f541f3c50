"""What staging asks of a remote, answered by rclone: describe, download, upload.

:class:`Transfers` is the seam between staging (app/data/staging.py) and the tool that
moves bytes: :class:`RcloneTransfers` runs rclone (app/data/rclone.py) and is what
workers use; a test of the cache alone can give staging any other implementation.

Describing an object (``stat``) is what makes the cache's key: ``rclone lsjson --stat``
gives its size, modification time and, where the remote stores one (S3's ETag, a
WebDAV server's checksums), its hash; for a folder, ``lsjson -R --files-only`` lists its
files and the key is made from the whole listing. Hashes are not asked of local paths
(rclone would read every byte to compute one: as slow as the copy it is meant to save).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

from chordflow.data.rclone import RcloneError, run_rclone
from chordflow.data.remotes import Remotes
from chordflow.data.stage_cache import RemoteObject
from chordflow.modules.context import StepContext


class Transfers(Protocol):
    """Moving staged data between remotes and this host."""

    def stat(self, source: str, ctx: StepContext, what: str) -> RemoteObject:
        """Describe ``source`` (a file or a folder); RcloneError naming ``what``."""

    def fetch(self, obj: RemoteObject, dest: Path, ctx: StepContext, what: str) -> None:
        """Download the whole of ``obj`` to ``dest`` (a file path, or an existing
        empty directory for a folder)."""

    def push(self, local: Path, dest: str, ctx: StepContext, what: str) -> tuple[int, int]:
        """Upload a local file or folder to ``dest``; (files, bytes) transferred."""


class RcloneTransfers:
    """:class:`Transfers` through rclone, with the deployment's remotes."""

    def __init__(self, remotes: Remotes | None = None):
        self._remotes = remotes

    @property
    def remotes(self) -> Remotes:
        if self._remotes is None:
            self._remotes = Remotes.from_settings()
        return self._remotes

    def _run(self, args: list[str], ctx: StepContext, what: str) -> Any:
        return run_rclone(args, ctx=ctx, remotes=self.remotes).check(what)

    def stat(self, source: str, ctx: StepContext, what: str) -> RemoteObject:
        hashing = [] if _is_local(source) else ["--hash"]
        found = json.loads(self._run(["lsjson", "--stat", *hashing, source], ctx,
                                     what).stdout or "null")
        if not isinstance(found, dict):
            raise RcloneError(f"{what}: rclone lsjson gave no description of {source}")
        if not found.get("IsDir"):
            return RemoteObject(source, int(found.get("Size") or 0),
                                str(found.get("ModTime") or ""), _hash(found))
        listing = json.loads(self._run(["lsjson", "-R", "--files-only", *hashing, source],
                                       ctx, what).stdout or "[]")
        files = sorted((str(f.get("Path")), int(f.get("Size") or 0),
                        str(f.get("ModTime") or ""), _hash(f)) for f in listing)
        if not files:
            # On an object store a missing path reads as an empty folder: either way
            # there is nothing to stage, which is what the author needs to hear.
            raise RcloneError(f"{what}: not found (no file there, nor a folder with files)")
        digest = hashlib.sha256(json.dumps(files).encode()).hexdigest()
        return RemoteObject(source, sum(f[1] for f in files),
                            max((f[2] for f in files), default=""), f"listing:{digest}",
                            is_dir=True)

    def fetch(self, obj: RemoteObject, dest: Path, ctx: StepContext, what: str) -> None:
        verb = "copy" if obj.is_dir else "copyto"
        self._run([verb, obj.source, str(dest)], ctx, what)

    def push(self, local: Path, dest: str, ctx: StepContext, what: str) -> tuple[int, int]:
        # A folder's contents go into dest; a file becomes dest, or goes into it when
        # dest ends with '/' (as `cp file dir/`).
        verb = "copy" if local.is_dir() or dest.endswith("/") else "copyto"
        result = self._run([verb, str(local), dest], ctx, what)
        return result.files, result.bytes


def _is_local(path: str) -> bool:
    """Is ``path`` a local path for rclone (no ``remote:`` in front)?"""
    head, sep, _ = path.partition(":")
    return not sep or "/" in head


def _hash(entry: dict[str, Any]) -> str | None:
    """The first hash rclone listed (md5 before others: the one S3 keeps)."""
    hashes = entry.get("Hashes") or {}
    for name in ("md5", "sha1", *sorted(hashes)):
        if hashes.get(name):
            return f"{name}:{hashes[name]}"
    return None
