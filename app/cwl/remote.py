"""CWL files through the data plane: no directory shared by the workers.

With ``CHORDFLOW_CWL_REMOTE`` set on the workers (``REMOTE:folder``, a remote of
``CHORDFLOW_REMOTES`` or the rclone config), each CWL step pushes the files and
directories of its output object to ``REMOTE:folder/<run>/<step>[/<item>]/...``
after its process succeeded (the data plane's ``stage_out``) and names them there
(``"location": "REMOTE:folder/..."``); a step reading such a file fetches it into its
own scratch directory before its process runs (``stage_in``, through the host's stage
cache: one download per object per host). The workflow's last step fetches the output
files into the output directory as before. Unset, files stay in the workers' scratch
directories, which must then be shared across hosts.

The job object's own files are read where the job names them: paths the workers can
read, or locations on the same remote (``REMOTE:path``), fetched like the steps' own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chordflow.cwl.inputs import file_path
from chordflow.modules.context import StepContext

#: Where a step's fetched files go in its scratch directory.
INBOX = "in"


def configured() -> str | None:
    """``CHORDFLOW_CWL_REMOTE`` without a trailing ``/``; None when unset."""
    from chordflow.config import get_settings

    remote = get_settings().cwl_remote
    return remote.rstrip("/") if remote else None


def is_remote(location: Any, remote: str) -> bool:
    return isinstance(location, str) and location.startswith(remote.split(":", 1)[0] + ":") \
        and "://" not in location


def _walk(value: Any, visit: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """``value`` with each File and Directory replaced by ``visit`` of it."""
    if isinstance(value, list):
        return [_walk(v, visit) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get("class") in ("File", "Directory"):
        return visit(value)
    return {k: _walk(v, visit) for k, v in value.items()}


def stage_in(ctx: StepContext, job: Any, remote: str) -> tuple[Any, Callable[[], None]]:
    """``job`` with each file on ``remote`` fetched into the scratch directory (its
    location then local); and what releases the fetched files' hold on the cache."""
    from chordflow.data.staging import Stager

    entries: list[dict[str, str]] = []
    places: dict[str, str] = {}

    def collect(value: dict[str, Any]) -> dict[str, Any]:
        location = value.get("location")
        if is_remote(location, remote) and location not in places:
            folder = hashlib.sha256(str(location).encode()).hexdigest()[:16]
            name = str(value.get("basename") or str(location).rstrip("/").rsplit("/", 1)[-1])
            place = f"{INBOX}/{folder}/{name}"
            directory = value["class"] == "Directory"
            entries.append({"source": str(location) + ("/" if directory else ""),
                            "path": place + ("/" if directory else "")})
            places[str(location)] = place
        for key in ("secondaryFiles", "listing"):
            if key in value:
                value = {**value, key: _walk(value[key], collect)}
        return value

    _walk(job, collect)
    if not entries:
        return job, lambda: None
    staged = Stager.from_settings().stage_in({"stage_in": entries}, ctx)

    def local(value: dict[str, Any]) -> dict[str, Any]:
        out = dict(value)
        location = value.get("location")
        if is_remote(location, remote):
            path = ctx.workdir / places[str(location)]
            out.update(location=path.as_uri(), path=str(path))
            out.pop("listing", None)  # cwltool lists the fetched directory itself
        if "secondaryFiles" in out:
            out["secondaryFiles"] = _walk(out["secondaryFiles"], local)
        return out

    return _walk(job, local), staged.release


def stage_out(ctx: StepContext, outputs: Any, remote: str) -> Any:
    """``outputs`` with each file and directory of the scratch directory pushed to
    ``remote`` and named there."""
    from chordflow.data.staging import Stager

    base = f"{remote}/{ctx.run_id}/{ctx.step}" + (
        f"/{ctx.item_index}" if ctx.item_index is not None else "")
    scratch = ctx.workdir.resolve()
    entries: list[dict[str, str]] = []

    def push(value: dict[str, Any]) -> dict[str, Any]:
        path = file_path(str(value.get("location") or value.get("path") or ""))
        out = dict(value)
        if path is not None and path.exists():
            try:
                relative = path.resolve().relative_to(scratch).as_posix()
            except ValueError:
                relative = None  # a file of the job object's: it stays where it is
            if relative is not None:
                if not any(e["path"] == relative for e in entries):
                    directory = path.is_dir()
                    entries.append({"path": relative + ("/" if directory else ""),
                                    "dest": f"{base}/{relative}" + ("/" if directory else "")})
                out["location"] = f"{base}/{relative}"
                out.pop("path", None)
                if "listing" in out:
                    out["listing"] = _walk(out["listing"], lambda v: _inside(v, path, out))
        if "secondaryFiles" in out:
            out["secondaryFiles"] = _walk(out["secondaryFiles"], push)
        return out

    pushed = _walk(outputs, push)
    if entries:
        stager = Stager.from_settings()
        staged = stager.stage_in({"stage_out": entries}, ctx)
        stager.stage_out(staged, ctx)
    return pushed


def _inside(value: dict[str, Any], folder: Path, pushed: dict[str, Any]) -> dict[str, Any]:
    """An entry of a pushed directory's listing, named inside its pushed location."""
    path = file_path(str(value.get("location") or value.get("path") or ""))
    out = dict(value)
    if path is not None:
        try:
            relative = path.resolve().relative_to(folder.resolve()).as_posix()
        except ValueError:
            return out
        out["location"] = f"{pushed['location']}/{relative}"
        out.pop("path", None)
    if "listing" in out:
        out["listing"] = _walk(out["listing"], lambda v: _inside(v, folder, pushed))
    return out
