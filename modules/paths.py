"""Where a step's local paths may lead: its run's scratch directory and the admin's roots.

DESIGN.md ("Security model"): runs cannot read each other's files or the host's. Every
module parameter that names a local path (``file``'s ``path``, ``bash``'s ``cwd``) goes
through :func:`confine`, the one place the rule lives:

- A relative path is relative to the step's scratch directory
  (``<CHORDFLOW_WORKDIR>/<run id>/<step>``); ``~`` is expanded.
- The path is resolved (``..`` and every symbolic link, also one that does not exist
  yet as a whole), and the resolved path must lie inside an allowed root, itself
  resolved. So ``../../<another run>/x`` is refused, and so is a link planted in the
  scratch directory that points outside, on read and on write (the module then uses the
  resolved path, not the link).
- Allowed: the *run's* scratch directory (``<CHORDFLOW_WORKDIR>/<run id>``), not only
  the step's, because steps of one run pass files to each other (``../make/out.json``,
  or ``${steps.make.outputs.path}``); and the directories in ``CHORDFLOW_FILE_ROOTS``.
- Never another run's scratch directory, nor the scratch root itself, even when an
  admin root contains them (``CHORDFLOW_FILE_ROOTS=/tmp`` with the default scratch root
  ``/tmp/chordflow``): the scratch root belongs to the runs, one directory each.

Who is confined: Celery workers always (they serve API users). The embedded executor
(``chordflow run``, the Python API) runs the local user's own workflows with the local
user's own rights, so it is not confined unless ``CHORDFLOW_EMBEDDED_CONFINED=true``; a
context whose ``file_roots`` is None is unconfined and paths are only made absolute.

Confinement is about the paths chordflow opens for a step. A shell command a step runs
(``bash``) can open any file its user may: who may run code on workers is the admin's
decision (modules that run code, roles), and the OS user a worker runs as is the limit
there.
"""

from __future__ import annotations

import os
from pathlib import Path

from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext


class PathOutsideRoots(StepFailed):
    """A step named a local path outside its allowed roots. Retrying cannot help, so
    the step fails at once, whatever its ``retries``."""

    final = True


def confine(ctx: StepContext, path: str | os.PathLike[str], field: str) -> Path:
    """The absolute, resolved path ``path`` names, or PathOutsideRoots if it is outside the
    step's allowed roots; ``field`` is the param (``path``, ``cwd``) for the message."""
    given = Path(path).expanduser()
    target = given if given.is_absolute() else ctx.workdir / given
    if ctx.file_roots is None:
        return target
    resolved = _resolve(target)
    scratch_root = _resolve(ctx.scratch_root)
    run_dir = _resolve(ctx.run_dir)
    if resolved.is_relative_to(run_dir):
        return resolved
    roots = [_resolve(Path(root)) for root in ctx.file_roots]
    in_scratch = resolved.is_relative_to(scratch_root)
    if not in_scratch and any(resolved.is_relative_to(root) for root in roots):
        return resolved
    allowed = ", ".join([f"this run's scratch directory {run_dir}", *map(str, roots)])
    if in_scratch:
        allowed += "; another run's scratch directory is never allowed"
    raise PathOutsideRoots(
        f"step '{ctx.step}': params.{field} '{os.fspath(path)}' is outside the allowed "
        f"roots ({allowed}): set CHORDFLOW_FILE_ROOTS to allow more")


def _resolve(path: Path) -> Path:
    """``path`` with ``..`` and symbolic links resolved, whether or not it exists."""
    return Path(os.path.realpath(path))
