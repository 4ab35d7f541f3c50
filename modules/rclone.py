"""``rclone``: move and inspect data on the deployment's remotes with rclone.

Methods are rclone's own commands: ``copy``, ``copyto``, ``sync``, ``move`` (``source``
to ``dest``), ``delete``, ``purge``, ``mkdir`` (a ``path``), and the read-only
``lsjson``, ``size``, ``check`` and ``hashsum``. A location is ``REMOTE:path`` on a
remote the deployment configured (docs/data.md) or a local path on the worker,
confined like every local path (the run's scratch directory, ``CHORDFLOW_FILE_ROOTS``);
on-the-fly remotes and connection strings are refused (app/data/locations.py).

``include`` / ``exclude`` are rclone filter patterns, ``dry_run`` and ``checksum`` its
flags of those names, and ``flags`` a bounded, validated set of rclone's other flags
(app/data/flags.py): no argument a workflow writes reaches rclone's command line except
as the value of a known option. Credentials never do either (app/data/remotes.py).

While it runs, rclone's stats (bytes done, total, rate, ETA) become the step's
``step_progress`` events about once a second: ``chordflow run``'s table, ``logs
--follow`` and the API's event stream show them. The step's timeout and a cancel kill
rclone's whole process group. A retry runs the same command again, and rclone skips
what is already at the destination (same size and time, or hash with ``checksum``),
so it continues where the failed attempt stopped.

Outputs: ``files`` and ``bytes`` transferred, ``checks``, ``deletes``, ``renames``,
``errors``, ``elapsed`` (seconds); ``lsjson`` its ``entries`` (rclone's objects) and
``count``; ``size`` ``count`` and ``bytes``; ``check`` ``match`` and the paths that
differ or are missing on either side; ``hashsum`` ``hashes`` (path -> hash).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from chordflow.data.flags import RcloneFlags
from chordflow.data.locations import resolve_location
from chordflow.data.rclone import RcloneResult, run_rclone
from chordflow.data.remotes import Remotes
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule
from pydantic import Field, StringConstraints

#: runs_code=False: it moves data between the admin's remotes and confined local paths;
#: nothing the caller wrote runs.
module = StepModule("rclone", "Copy, sync, move, list and check data on remotes with "
                    "rclone.", runs_code=False)

Pattern = Annotated[str, StringConstraints(min_length=1, max_length=1024,
                                           pattern=r"^[^\n\r\x00]*$")]
Patterns = Annotated[list[Pattern], Field(max_length=100)]
Hash = Literal["md5", "sha1", "sha256", "sha512", "crc32", "whirlpool", "blake3", "xxh3",
               "xxh128", "dropbox", "hidrive", "mailru", "quickxor"]
#: Paths of each kind a ``check`` output lists at most (the counts are exact).
MAX_LISTED = 1000


class CheckFailed(StepFailed):
    """``check`` found differences (the data is what it is: a retry cannot help)."""

    final = True


def _rclone(ctx: StepContext, remotes: Remotes, args: list[str], *,
            include: list[str] | None,
            exclude: list[str] | None, flags: RcloneFlags | None, timeout: float | None,
            keep_stdout: int | None = None, ok_codes: tuple[int, ...] = (0,)) -> RcloneResult:
    """Run one rclone command for the step, its progress into the step's events."""
    for pattern in include or []:
        args.append(f"--include={pattern}")
    for pattern in exclude or []:
        args.append(f"--exclude={pattern}")
    if flags is not None:
        args.extend(flags.to_args())
    operation = args[0]

    def progress(done: int, total: int | None, rate: float | None, eta: float | None) -> None:
        if not done and not total:
            return  # a listing's stats: nothing is moving
        ctx.progress(operation=operation, bytes=done, total=total, rate=rate, eta=eta)

    result = run_rclone(args, ctx=ctx, remotes=remotes, timeout=timeout,
                        on_progress=progress,
                        keep_stdout=keep_stdout or ctx.limits.outputs + 1)
    if result.exit_code not in ok_codes:
        result.check(f"step '{ctx.step}'")
    if result.stdout_truncated:
        raise StepFailed(f"step '{ctx.step}': rclone {operation} printed more than the "
                         "step's output limit (CHORDFLOW_MAX_OUTPUT_BYTES); narrow it with "
                         "include/exclude or flags.max_depth")
    return result


def _where(ctx: StepContext, remotes: Remotes, location: str, field: str) -> str:
    return resolve_location(ctx, location, [r.name for r in remotes.listing()], field)


def _transfer(ctx: StepContext, command: str, source: str, dest: str,
              include: list[str] | None, exclude: list[str] | None, dry_run: bool,
              checksum: bool, flags: RcloneFlags | None,
              timeout: float | None) -> dict[str, Any]:
    remotes = Remotes.from_settings()
    args = [command, _where(ctx, remotes, source, "source"),
            _where(ctx, remotes, dest, "dest")]
    if dry_run:
        args.append("--dry-run")
    if checksum:
        args.append("--checksum")
    result = _rclone(ctx, remotes, args, include=include, exclude=exclude, flags=flags,
                     timeout=timeout)
    return {**result.summary(), "source": source, "dest": dest, "dry_run": dry_run}


@module.method
def copy(ctx: StepContext, source: str, dest: str, include: Patterns | None = None,
         exclude: Patterns | None = None, dry_run: bool = False, checksum: bool = False,
         flags: RcloneFlags | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Copy the files of source into dest, skipping those already there (rclone copy).

    source: 'REMOTE:path' or a local path (a file or a folder).
    dest: 'REMOTE:path' or a local path: the folder to copy into.
    include: rclone filter patterns of the files to take ('*.csv', 'data/**').
    exclude: rclone filter patterns of the files to leave out.
    dry_run: only say what would be copied.
    checksum: compare by hash and size instead of time and size.
    flags: other rclone flags, from a fixed set (transfers, bwlimit, max_age, ...).
    timeout: seconds before rclone is killed (the step's timeout also applies).
    """
    return _transfer(ctx, "copy", source, dest, include, exclude, dry_run, checksum, flags,
                     timeout)


@module.method
def copyto(ctx: StepContext, source: str, dest: str, include: Patterns | None = None,
           exclude: Patterns | None = None, dry_run: bool = False, checksum: bool = False,
           flags: RcloneFlags | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Copy one file (or folder) to exactly dest, renaming it (rclone copyto).

    source: 'REMOTE:path/file' or a local path.
    dest: 'REMOTE:path/newname' or a local path: the file to create or replace.
    include: rclone filter patterns of the files to take.
    exclude: rclone filter patterns of the files to leave out.
    dry_run: only say what would be copied.
    checksum: compare by hash and size instead of time and size.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    return _transfer(ctx, "copyto", source, dest, include, exclude, dry_run, checksum, flags,
                     timeout)


@module.method
def sync(ctx: StepContext, source: str, dest: str, include: Patterns | None = None,
         exclude: Patterns | None = None, dry_run: bool = False, checksum: bool = False,
         flags: RcloneFlags | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Make dest the same as source, deleting files only in dest (rclone sync).

    source: 'REMOTE:path' or a local path.
    dest: 'REMOTE:path' or a local path: files there that source lacks are deleted.
    include: rclone filter patterns of the files to take.
    exclude: rclone filter patterns of the files to leave out (kept in dest unless
        flags.delete_excluded).
    dry_run: only say what would be copied and deleted.
    checksum: compare by hash and size instead of time and size.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    return _transfer(ctx, "sync", source, dest, include, exclude, dry_run, checksum, flags,
                     timeout)


@module.method
def move(ctx: StepContext, source: str, dest: str, include: Patterns | None = None,
         exclude: Patterns | None = None, dry_run: bool = False, checksum: bool = False,
         flags: RcloneFlags | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Move the files of source into dest: copy, then delete from source (rclone move).

    source: 'REMOTE:path' or a local path.
    dest: 'REMOTE:path' or a local path.
    include: rclone filter patterns of the files to take.
    exclude: rclone filter patterns of the files to leave out.
    dry_run: only say what would be moved.
    checksum: compare by hash and size instead of time and size.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    return _transfer(ctx, "move", source, dest, include, exclude, dry_run, checksum, flags,
                     timeout)


def _on_path(ctx: StepContext, command: str, path: str, include: list[str] | None,
             exclude: list[str] | None, dry_run: bool, flags: RcloneFlags | None,
             timeout: float | None) -> dict[str, Any]:
    remotes = Remotes.from_settings()
    args = [command, _where(ctx, remotes, path, "path")]
    if dry_run:
        args.append("--dry-run")
    result = _rclone(ctx, remotes, args, include=include, exclude=exclude, flags=flags,
                     timeout=timeout)
    return {**result.summary(), "path": path, "dry_run": dry_run}


@module.method
def delete(ctx: StepContext, path: str, include: Patterns | None = None,
           exclude: Patterns | None = None, dry_run: bool = False,
           flags: RcloneFlags | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Delete the files under path, keeping its folders (rclone delete).

    path: 'REMOTE:path' or a local path.
    include: rclone filter patterns of the files to delete.
    exclude: rclone filter patterns of the files to keep.
    dry_run: only say what would be deleted.
    flags: other rclone flags, from a fixed set (min_age, max_size, ...).
    timeout: seconds before rclone is killed.
    """
    return _on_path(ctx, "delete", path, include, exclude, dry_run, flags, timeout)


@module.method
def purge(ctx: StepContext, path: str, dry_run: bool = False,
          flags: RcloneFlags | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Remove path and everything in it, folders too; filters do not apply (rclone purge).

    path: 'REMOTE:path' or a local path.
    dry_run: only say what would be removed.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    return _on_path(ctx, "purge", path, None, None, dry_run, flags, timeout)


@module.method
def mkdir(ctx: StepContext, path: str, flags: RcloneFlags | None = None,
          timeout: float | None = None) -> dict[str, Any]:
    """Create the folder (or bucket) path if it is not there (rclone mkdir).

    path: 'REMOTE:path' or a local path.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    return _on_path(ctx, "mkdir", path, None, None, False, flags, timeout)


@module.method
def lsjson(ctx: StepContext, path: str, recursive: bool = False, files_only: bool = False,
           dirs_only: bool = False, hash: bool = False, include: Patterns | None = None,
           exclude: Patterns | None = None, flags: RcloneFlags | None = None,
           timeout: float | None = None) -> dict[str, Any]:
    """List path's entries as rclone's JSON objects (Path, Name, Size, ModTime, IsDir, ...).

    path: 'REMOTE:path' or a local path.
    recursive: list every level below path, not only its own entries.
    files_only: only files.
    dirs_only: only folders.
    hash: add each file's hashes (Hashes), where the remote has them.
    include: rclone filter patterns of the entries to list.
    exclude: rclone filter patterns of the entries to leave out.
    flags: other rclone flags, from a fixed set (max_depth, max_age, ...).
    timeout: seconds before rclone is killed.
    """
    remotes = Remotes.from_settings()
    args = ["lsjson", _where(ctx, remotes, path, "path")]
    args += [flag for on, flag in ((recursive, "--recursive"), (files_only, "--files-only"),
                                   (dirs_only, "--dirs-only"), (hash, "--hash")) if on]
    result = _rclone(ctx, remotes, args, include=include, exclude=exclude, flags=flags,
                     timeout=timeout)
    entries = _json(ctx, result, [])
    return {"entries": entries, "count": len(entries), "path": path,
            "elapsed": round(result.elapsed, 3)}


@module.method
def size(ctx: StepContext, path: str, include: Patterns | None = None,
         exclude: Patterns | None = None, flags: RcloneFlags | None = None,
         timeout: float | None = None) -> dict[str, Any]:
    """Count the files under path and their bytes (rclone size).

    path: 'REMOTE:path' or a local path.
    include: rclone filter patterns of the files to count.
    exclude: rclone filter patterns of the files to leave out.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    remotes = Remotes.from_settings()
    result = _rclone(ctx, remotes, ["size", _where(ctx, remotes, path, "path"), "--json"],
                     include=include, exclude=exclude, flags=flags, timeout=timeout)
    totals = _json(ctx, result, {})
    return {"count": int(totals.get("count") or 0), "bytes": int(totals.get("bytes") or 0),
            "sizeless": int(totals.get("sizeless") or 0), "path": path,
            "elapsed": round(result.elapsed, 3)}


@module.method
def check(ctx: StepContext, source: str, dest: str, include: Patterns | None = None,
          exclude: Patterns | None = None, checksum: bool = True, download: bool = False,
          fail_on_difference: bool = True, flags: RcloneFlags | None = None,
          timeout: float | None = None) -> dict[str, Any]:
    """Compare source and dest file by file (rclone check): match, and the paths that
    differ or are missing on either side.

    source: 'REMOTE:path' or a local path.
    dest: 'REMOTE:path' or a local path.
    include: rclone filter patterns of the files to compare.
    exclude: rclone filter patterns of the files to leave out.
    checksum: compare hashes where both sides have one (else only sizes).
    download: compare the files' contents, downloading both (any remote, slower).
    fail_on_difference: fail the step when they differ (else match is false).
    flags: other rclone flags, from a fixed set (one_way, ...).
    timeout: seconds before rclone is killed.
    """
    remotes = Remotes.from_settings()
    args = ["check", _where(ctx, remotes, source, "source"),
            _where(ctx, remotes, dest, "dest"), "--combined", "-"]
    if download:
        args.append("--download")
    elif not checksum:
        args.append("--size-only")
    # Exit code 1 is "differences found": the combined report says which.
    result = _rclone(ctx, remotes, args, include=include, exclude=exclude, flags=flags,
                     timeout=timeout, ok_codes=(0, 1))
    # rclone: "+" only in the source (missing on dest), "-" only in the dest.
    kinds = {"=": "matching", "*": "differ", "+": "missing_on_dest", "-": "missing_on_source",
             "!": "unreadable"}
    found: dict[str, list[str]] = {name: [] for name in kinds.values()}
    for line in result.stdout.splitlines():
        if len(line) > 2 and line[0] in kinds and line[1] == " ":
            found[kinds[line[0]]].append(line[2:])
    differences = sum(len(found[k]) for k in kinds.values() if k != "matching")
    if result.exit_code != 0 and differences == 0:
        result.check(f"step '{ctx.step}'")  # a failure, not differences
    outputs: dict[str, Any] = {
        "match": differences == 0, "differences": differences,
        "matching": len(found["matching"]), "elapsed": round(result.elapsed, 3),
        **{k: v[:MAX_LISTED] for k, v in found.items() if k != "matching"},
    }
    if differences and fail_on_difference:
        shown = [f"{k} {p}" for k in ("differ", "missing_on_dest", "missing_on_source",
                                      "unreadable") for p in found[k][:5]]
        raise CheckFailed(f"step '{ctx.step}': {source} and {dest} differ: {differences} "
                          f"difference(s): {'; '.join(shown)}")
    return outputs


@module.method
def hashsum(ctx: StepContext, path: str, hash: Hash = "md5", download: bool = False,
            include: Patterns | None = None, exclude: Patterns | None = None,
            flags: RcloneFlags | None = None,
            timeout: float | None = None) -> dict[str, Any]:
    """Each file's hash under path (rclone hashsum): hashes, path -> hash.

    path: 'REMOTE:path' or a local path.
    hash: the hash type (md5, sha1, sha256, crc32, ...).
    download: compute it from the contents where the remote has no such hash.
    include: rclone filter patterns of the files to hash.
    exclude: rclone filter patterns of the files to leave out.
    flags: other rclone flags, from a fixed set.
    timeout: seconds before rclone is killed.
    """
    remotes = Remotes.from_settings()
    args = ["hashsum", hash, _where(ctx, remotes, path, "path")]
    if download:
        args.append("--download")
    result = _rclone(ctx, remotes, args, include=include, exclude=exclude, flags=flags,
                     timeout=timeout)
    hashes: dict[str, str] = {}
    for line in result.stdout.splitlines():
        digest, _, name = line.partition("  ")
        if name:
            hashes[name] = digest.strip()
    return {"hashes": hashes, "count": len(hashes), "hash": hash, "path": path,
            "elapsed": round(result.elapsed, 3)}


def _json(ctx: StepContext, result: RcloneResult, empty: Any) -> Any:
    text = result.stdout.strip()
    if not text:
        return empty
    try:
        return json.loads(text)
    except ValueError:
        raise StepFailed(f"step '{ctx.step}': rclone {result.args[0]} printed no JSON: "
                         f"{text[:200]}") from None
