"""``stage_in`` and ``stage_out``: a step's inputs fetched before it runs, its outputs
pushed after it succeeded, on whichever worker host runs it.

A step declares them next to its params, templated like them::

    stage_in:  [{source: "archive:bucket/ref/genome.fa", path: "inputs/genome.fa"}]
    stage_out: [{path: "results/", dest: "archive:bucket/out/${run.id}/"}]

The engine (``Engine._attempt``) calls :meth:`Stager.stage_in` before the module and
:meth:`Stager.stage_out` after it returned; a failure of either is the attempt's
failure, so the step's ``retries`` apply. Decisions (where the issue is silent, what
Airflow's and Prefect's users expect):

- Inputs come through the host's stage cache (app/data/stage_cache.py): one download
  per object per host, held (never evicted) from before the module starts until it
  ends. A step gets a hard link to the cached file by default (a copy where the cache
  is on another file system); ``link: copy`` gives it a copy of its own it may change
  (a hard link is the cache's own file, made read-only); ``link: symlink`` a symbolic
  link into the cache, which dangles once the object is evicted after the step.
- Outputs are pushed only after the module succeeded, in order; nothing is pushed
  for a failed attempt. A folder (``results/``) is copied into ``dest``; a file becomes
  ``dest``, or goes into it when ``dest`` ends with ``/``. A retry pushes again (rclone
  skips what is already there, unchanged).
- Paths in the scratch directory never lead out of it (checked when the workflow is
  validated, and again once rendered). A source or destination names a configured
  remote (``NAME:path``); rclone's on-the-fly remotes (``:s3,...:``) and connection
  strings (``name,opt=x:``) are refused: a workflow must not bring its own endpoint or
  credentials. A local path is allowed within the step's allowed roots only
  (modules/paths.py), as a ``file`` step's would be.
- What each entry did is recorded in the step's outputs under ``staging``:
  ``{"stage_in": [{source, path, cache: "hit"|"miss", bytes, link}], "stage_out":
  [{path, dest, files, bytes}]}``, and counted in the worker's metrics
  (app/data/stage_metrics.py).
- Errors name the step, the entry (``stage_in[0]``) and rclone's own error.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from chordflow.config import Settings, get_settings
from chordflow.data.jit.reads import TierRead, read_through
from chordflow.data.rclone import RcloneError
from chordflow.data.remotes import NAME, RemoteConfigError, Remotes
from chordflow.data.stage_cache import Lease, StageCache, StageError
from chordflow.data.stage_transfers import RcloneTransfers, Transfers
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.paths import PathOutsideRoots, confine
from chordflow.workflow.models import StageIn, StageOut
from pydantic import TypeAdapter, ValidationError

log = logging.getLogger("chordflow.staging")


class StageFailed(StepFailed):
    """A staging entry failed; the message names the step, the entry and the cause."""


class StageRefused(StageFailed):
    """A staging entry that can never work as rendered (a path out of the scratch
    directory, an on-the-fly remote): retrying cannot help."""

    final = True


_ENTRIES_IN = TypeAdapter(list[StageIn])
_ENTRIES_OUT = TypeAdapter(list[StageOut])


@dataclass
class Staged:
    """A step's inputs in place: their leases on the cache, held until :meth:`release`,
    and what :meth:`Stager.stage_out` does afterwards."""

    stage_in: list[StageIn]
    stage_out: list[StageOut]
    report_in: list[dict[str, Any]] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    #: Files held on just-in-time tiers' primaries for the step (app/data/jit/reads.py).
    tier_holds: list[Callable[[], object]] = field(default_factory=list)

    def release(self) -> None:
        """The module has ended: the inputs may be evicted again."""
        while self.leases:
            self.leases.pop().release()
        while self.tier_holds:
            release = self.tier_holds.pop()
            try:
                release()
            except Exception:  # noqa: BLE001 - the hold runs out by itself (copy_timeout)
                log.warning("a tier hold could not be released now; it lapses by "
                            "itself", exc_info=True)


class Stager:
    """Stages the entries of one step at a time, for every step of one process.

    Given factories, not objects: the cache and the remotes are made on first use, so
    an engine whose steps stage nothing creates no directory and runs no rclone."""

    def __init__(self, cache: Callable[[], StageCache], transfers: Callable[[], Transfers]):
        self._make_cache = cache
        self._make_transfers = transfers

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Stager:
        """The host's cache (``CHORDFLOW_STAGE_CACHE_DIR``, ``_BYTES``) and rclone with
        the deployment's remotes."""
        def cache() -> StageCache:
            s = settings or get_settings()
            return StageCache(s.stage_cache_dir, s.stage_cache_bytes)

        def transfers() -> Transfers:
            return RcloneTransfers(Remotes.from_settings(settings or get_settings()))

        return cls(cache, transfers)

    @cached_property
    def cache(self) -> StageCache:
        return self._make_cache()

    @cached_property
    def transfers(self) -> Transfers:
        return self._make_transfers()

    # -- in ------------------------------------------------------------------------------

    def stage_in(self, rendered: Mapping[str, Any], ctx: StepContext) -> Staged:
        """Fetch every ``stage_in`` entry into the step's scratch directory (through
        the cache); the leases are held by the returned :class:`Staged`."""
        staged = Staged(_entries(_ENTRIES_IN, rendered, "stage_in", ctx),
                        _entries(_ENTRIES_OUT, rendered, "stage_out", ctx))
        try:
            for i, entry in enumerate(staged.stage_in):
                ctx.check()
                staged.report_in.append(self._one_in(i, entry, ctx, staged))
        except BaseException:
            staged.release()
            raise
        return staged

    def _one_in(self, i: int, entry: StageIn, ctx: StepContext,
                staged: Staged) -> dict[str, Any]:
        what = f"step '{ctx.step}': stage_in[{i}] {entry.source}"
        source_text, through = entry.source, None
        if entry.tier is not None:  # made present on the tier's primary, held, read there
            through = _read_through(entry, ctx, what)
            staged.tier_holds.append(through.release)
            source_text = through.source
        source = _remote_or_local(source_text, f"stage_in[{i}].source", ctx)
        target = _in_scratch(entry.path, f"stage_in[{i}].path", ctx)
        try:
            obj = self.transfers.stat(source, ctx, what)
            lease = self.cache.acquire(
                obj, lambda dest: self.transfers.fetch(obj, dest, ctx, what), ctx.check)
        except (RcloneError, RemoteConfigError, StageError) as exc:
            message = str(exc)
            raise StageFailed(message if message.startswith(what) else f"{what}: {message}"
                              ) from None
        staged.leases.append(lease)
        _place(lease.path, target, entry.link)
        outcome = "hit" if lease.hit else "miss"
        ctx.logger.info("stage_in[%d] %s -> %s: %s, %d bytes", i, entry.source, entry.path,
                        outcome, lease.bytes)
        report = {"source": entry.source, "path": entry.path, "cache": outcome,
                  "bytes": lease.bytes, "link": entry.link}
        if through is not None:
            report.update(tier=through.tier, tier_copied=through.copied)
        return report

    # -- out -----------------------------------------------------------------------------

    def stage_out(self, staged: Staged, ctx: StepContext) -> dict[str, Any]:
        """Push every ``stage_out`` entry (the module has succeeded); the step's
        ``staging`` record, of both directions."""
        report_out = []
        for i, entry in enumerate(staged.stage_out):
            ctx.check()
            what = f"step '{ctx.step}': stage_out[{i}] {entry.path}"
            local = _in_scratch(entry.path, f"stage_out[{i}].path", ctx)
            dest = _remote_or_local(entry.dest, f"stage_out[{i}].dest", ctx)
            if not local.exists():
                raise StageFailed(f"{what}: the step left no such file or folder in its "
                                  f"scratch directory {ctx.workdir}")
            try:
                files, size = self.transfers.push(local, dest, ctx, what)
            except (RcloneError, RemoteConfigError) as exc:
                message = str(exc)
                raise StageFailed(message if message.startswith(what)
                                  else f"{what}: {message}") from None
            ctx.logger.info("stage_out[%d] %s -> %s: %d files, %d bytes", i, entry.path,
                            entry.dest, files, size)
            report_out.append({"path": entry.path, "dest": entry.dest, "files": files,
                               "bytes": size})
        return {"stage_in": staged.report_in, "stage_out": report_out}


def _read_through(entry: StageIn, ctx: StepContext, what: str) -> TierRead:
    """``entry``'s file present and held on its tier's primary (app/data/jit/reads.py);
    its failure named as the entry's."""
    assert entry.tier is not None
    try:
        return read_through(entry.tier, entry.source, ctx, what)
    except StepFailed as exc:
        message = str(exc) if str(exc).startswith(what) else f"{what}: {exc}"
        raise (StageRefused if exc.final else StageFailed)(message) from None


def _entries(adapter: TypeAdapter[Any], rendered: Mapping[str, Any], name: str,
             ctx: StepContext) -> Any:
    """The rendered entries checked again (a reference may have rendered to anything)."""
    try:
        return adapter.validate_python(rendered.get(name) or [])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}"
                               for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise StageRefused(f"step '{ctx.step}': {where}: {message}") from None


def _in_scratch(path: str, field_name: str, ctx: StepContext) -> Path:
    """``path`` in the step's scratch directory, refused if it leads out of it."""
    workdir = Path(os.path.realpath(ctx.workdir))
    target = Path(os.path.realpath(workdir / path))
    if os.path.isabs(path) or not target.is_relative_to(workdir) or target == workdir:
        raise StageRefused(f"step '{ctx.step}': {field_name} '{path}' must name a file or "
                           "folder inside the step's scratch directory")
    return target


def _remote_or_local(value: str, field_name: str, ctx: StepContext) -> str:
    """``value`` as rclone gets it: a configured remote's path as it is, a local path
    confined to the step's allowed roots and made absolute; StageRefused otherwise."""
    head, sep, _ = value.partition(":")
    if sep and "/" not in head:
        if not head or "," in head or not NAME.match(head):
            raise StageRefused(
                f"step '{ctx.step}': {field_name} '{value}': name a configured remote "
                "('REMOTE:path'); on-the-fly remotes and connection strings are refused")
        return value
    try:
        return str(confine(ctx, value, field_name))
    except PathOutsideRoots:
        raise StageRefused(
            f"step '{ctx.step}': {field_name} '{value}' is a local path outside the "
            "step's allowed roots (its run's scratch directory and CHORDFLOW_FILE_ROOTS); "
            "name a remote ('REMOTE:path') instead") from None


def _place(cached: Path, target: Path, link: str) -> None:
    """Make the cached object appear at ``target`` (replacing what a previous attempt
    left there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if link == "symlink":
        target.symlink_to(cached, target_is_directory=cached.is_dir())
    elif link == "copy":
        if cached.is_dir():
            shutil.copytree(cached, target, copy_function=_writable_copy)
        else:
            _writable_copy(str(cached), str(target))
    elif cached.is_dir():
        shutil.copytree(cached, target, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(cached), str(target))


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link, or a copy where one cannot be made (another file system)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _writable_copy(src: str, dst: str) -> None:
    """A copy the step owns (the cached file is read-only)."""
    shutil.copy2(src, dst)
    os.chmod(dst, os.stat(dst).st_mode | 0o200)
