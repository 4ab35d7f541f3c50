"""The rclone commands a tier needs: sizes on the secondary, copies to the primary,
deletes on the primary. Each names its files in a ``--files-from-raw`` list (never on
the command line: a list of 10,000 paths, and a path is never read as a flag), and
runs through chordflow.data.rclone (credentials in rclone's environment only, killed
on the step's timeout or cancel)."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from chordflow.data.jit.tiers import Tier
from chordflow.data.rclone import RcloneError, run_rclone
from chordflow.data.remotes import Remotes
from chordflow.modules.context import StepContext

#: Seconds a listing may take without a step's deadline.
LIST_TIMEOUT = 300.0


class Transfers:
    """rclone between one tier's secondary and primary."""

    def __init__(self, tier: Tier, remotes: Remotes, ctx: StepContext | None = None,
                 cancel: threading.Event | None = None, timeout: float | None = None):
        self.tier = tier
        self.remotes = remotes
        self.ctx = ctx
        self.cancel = cancel
        self.timeout = timeout

    def sizes(self, files: Sequence[str]) -> dict[str, int]:
        """Each of ``files`` the secondary has, with its size in bytes."""
        if not files:
            return {}
        with _listing(files) as listing:
            result = self._run(["lsjson", self.tier.secondary_path(), "--files-only",
                                "--recursive", "--no-mimetype", "--no-modtime",
                                "--files-from-raw", listing], timeout=LIST_TIMEOUT)
        result.check(f"tier '{self.tier.name}': listing the secondary")
        try:
            entries: list[dict[str, Any]] = json.loads(result.stdout or "[]")
        except ValueError:
            raise RcloneError(f"tier '{self.tier.name}': rclone lsjson printed no JSON "
                              "listing") from None
        wanted = set(files)
        return {e["Path"]: int(e["Size"]) for e in entries
                if e.get("Path") in wanted and not e.get("IsDir")}

    def copy(self, files: Sequence[str]) -> int:
        """Copy ``files`` from the secondary to the primary; the bytes rclone moved."""
        with _listing(files) as listing:
            result = self._run(["copy", self.tier.secondary_path(),
                                self.tier.primary_path(), "--files-from-raw", listing,
                                "--no-traverse", "--transfers", str(self.tier.transfers)])
        result.check(f"tier '{self.tier.name}': copying {len(files)} files to the primary")
        return result.bytes

    def delete(self, files: Sequence[str]) -> None:
        """Delete ``files`` from the primary (those already gone are no error)."""
        with _listing(files) as listing:
            result = self._run(["delete", self.tier.primary_path(), "--files-from-raw",
                                listing])
        result.check(f"tier '{self.tier.name}': evicting {len(files)} files from the "
                     "primary")

    def _run(self, args: list[str], timeout: float | None = None) -> Any:
        return run_rclone(args, ctx=self.ctx, remotes=self.remotes,
                          cancel=self.cancel, timeout=timeout or self.timeout)


@contextmanager
def _listing(files: Sequence[str]) -> Iterator[str]:
    """A temporary file of ``files``, one per line, for ``--files-from-raw``."""
    fd, path = tempfile.mkstemp(prefix="chordflow-jit-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.writelines(f"{f}\n" for f in files)
        yield path
    finally:
        os.unlink(path)
