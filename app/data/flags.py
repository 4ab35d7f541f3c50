"""The rclone flags a workflow may set: a bounded, typed set, never free text.

A step's ``flags`` is an object of these names (rclone's own, with ``_`` for ``-``)
and nothing else: each value is checked (a number in a range, a size like ``10M``, a
duration like ``30s``, a boolean), then passed as one ``--name=value`` argument, so no
value can become another option or a path (no ``--config``, ``--password-command`` or
``--rc``, whatever a workflow says). An unknown name is refused at validation, naming the
step and the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: rclone's sizes: ``512``, ``10K``, ``1.5Gi``, ``100MiB``; ``off`` for no limit.
Size = Annotated[str, StringConstraints(
    pattern=r"^(off|\d+(\.\d+)?([KMGTP]i?)?B?)$", max_length=32)]
#: rclone's bandwidth limits: a size per second, or ``UP:DOWN``.
Bandwidth = Annotated[str, StringConstraints(
    pattern=r"^(off|\d+(\.\d+)?([KMGTP]i?)?B?(:\d+(\.\d+)?([KMGTP]i?)?B?)?)$",
    max_length=40)]
#: rclone's durations: ``500ms``, ``30s``, ``1h30m``, ``7d`` (ages also ``2w``, ``1M``, ``1y``).
Duration = Annotated[str, StringConstraints(
    pattern=r"^(off|(\d+(\.\d+)?(ms|s|m|h|d|w|M|y))+)$", max_length=32)]


class RcloneFlags(BaseModel):
    """rclone's flags that a step may set (see ``rclone help flags``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transfers: int | None = Field(default=None, ge=1, le=64,
                                  description="File transfers run in parallel.")
    checkers: int | None = Field(default=None, ge=1, le=128,
                                 description="Checkers run in parallel.")
    bwlimit: Bandwidth | None = Field(default=None, description="Bandwidth limit (10M).")
    retries: int | None = Field(default=None, ge=0, le=20,
                                description="rclone's own retries of the whole operation.")
    low_level_retries: int | None = Field(default=None, ge=0, le=100,
                                          description="Retries of each low-level operation.")
    retries_sleep: Duration | None = None
    contimeout: Duration | None = Field(default=None, description="Connect timeout.")
    timeout: Duration | None = Field(default=None, description="IO idle timeout.")
    max_age: Duration | None = Field(default=None, description="Only files younger.")
    min_age: Duration | None = Field(default=None, description="Only files older.")
    max_size: Size | None = Field(default=None, description="Only files smaller.")
    min_size: Size | None = Field(default=None, description="Only files larger.")
    max_depth: int | None = Field(default=None, ge=0, le=1000,
                                  description="Descend at most this deep.")
    max_transfer: Size | None = Field(default=None,
                                      description="Stop after transferring this much.")
    buffer_size: Size | None = None
    multi_thread_streams: int | None = Field(default=None, ge=0, le=64)
    size_only: bool | None = Field(default=None,
                                   description="Compare sizes only, not times or hashes.")
    ignore_existing: bool | None = Field(default=None,
                                         description="Skip files that exist at the dest.")
    ignore_times: bool | None = Field(default=None, description="Transfer every file.")
    ignore_size: bool | None = None
    update: bool | None = Field(default=None,
                                description="Skip files that are newer at the dest.")
    immutable: bool | None = None
    no_traverse: bool | None = None
    no_check_dest: bool | None = None
    no_update_modtime: bool | None = None
    fast_list: bool | None = None
    create_empty_src_dirs: bool | None = None
    delete_excluded: bool | None = Field(default=None,
                                         description="sync: delete excluded files at the dest.")
    track_renames: bool | None = None
    one_way: bool | None = Field(default=None,
                                 description="check: only look for files missing at the dest.")
    error_on_no_transfer: bool | None = None
    use_server_modtime: bool | None = None
    metadata: bool | None = Field(default=None, description="Copy metadata too.")

    def to_args(self) -> list[str]:
        """The flags set, as rclone arguments (``--name=value``, ``--name`` for true)."""
        args: list[str] = []
        for name, value in self.model_dump(exclude_none=True).items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                args.append(flag if value else f"{flag}=false")
            else:
                args.append(f"{flag}={value}")
        return args


def flag_args(flags: RcloneFlags | dict[str, Any] | None) -> list[str]:
    """rclone arguments for ``flags`` (already a model, or a dict to validate)."""
    if flags is None:
        return []
    model = flags if isinstance(flags, RcloneFlags) else RcloneFlags.model_validate(flags)
    return model.to_args()
