"""What a step may name as an rclone source or destination.

- ``REMOTE:path``: a remote the deployment configured (remotes.py), nothing else. An
  on-the-fly remote (``:s3,access_key_id=...:bucket``) or a connection string
  (``remote,option=value:path``) is refused: it would put credentials in a workflow (and
  on rclone's command line) and reach backends the admin never defined (``:local:/etc``).
- Anything else is a local path on the worker, confined like every local path a step
  names (modules/paths.py: the run's scratch directory and ``CHORDFLOW_FILE_ROOTS``),
  relative to the step's scratch directory, and given to rclone absolute, so that a
  local name with a colon in it is never taken for a remote.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.paths import confine

#: ``name:`` at the start of a location (before any ``/``): rclone reads a remote there.
_REMOTE_PREFIX = re.compile(r"^([^/:]*):")
_NAME = re.compile(r"^[\w.+@][\w.+@ -]*(?<! )$")


class LocationRefused(StepFailed):
    """A source or destination a step may not name: retrying cannot help."""

    final = True


def remote_name(location: str) -> str | None:
    """The remote a location names (``archive`` of ``archive:bucket/x``), or None for
    a local path. Does not check that the remote exists."""
    found = _REMOTE_PREFIX.match(location)
    return found.group(1) if found else None


def check_remote(location: str, known: Iterable[str], where: str) -> str:
    """``location`` if it names a configured remote; LocationRefused naming ``where``
    (``step 'copy': params.source``) otherwise."""
    name = remote_name(location)
    if name is None:
        raise LocationRefused(f"{where}: '{location}' names no remote ('REMOTE:path')")
    if name == "" or not _NAME.match(name):
        raise LocationRefused(
            f"{where}: '{location}': on-the-fly remotes and connection strings "
            "(':backend:', 'remote,option=value:') are not allowed; name a remote the "
            "deployment configured (CHORDFLOW_REMOTES, CHORDFLOW_RCLONE_CONFIG)")
    names = sorted(set(known))
    if name not in names:
        raise LocationRefused(f"{where}: no remote '{name}' is configured (known: "
                              f"{', '.join(names) or 'none'})")
    return location


def resolve_location(ctx: StepContext, location: str, known: Iterable[str],
                     field: str) -> str:
    """What to hand rclone for ``location``: a configured remote's path as it is, a local
    path confined and absolute. ``field`` is the param (``source``) for the message."""
    if not location:
        raise LocationRefused(f"step '{ctx.step}': params.{field} is empty")
    if remote_name(location) is not None:
        return check_remote(location, known, f"step '{ctx.step}': params.{field}")
    path = str(confine(ctx, location, field))
    return path + "/" if location.endswith("/") and not path.endswith("/") else path
