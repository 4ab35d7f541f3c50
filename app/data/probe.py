"""Is a remote reachable? One short listing of its top (or of a path in it).

What ``GET /api/v1/remotes/{name}/check`` and ``chordflow remotes check NAME`` answer:
reachable or not, how long it took, and rclone's error (credentials redacted). The
listing is bounded (a connect timeout, one try, a total timeout), so an unreachable
remote answers within seconds, not after rclone's default retries.
"""

from __future__ import annotations

from typing import Any

from chordflow.data.rclone import RcloneError, run_rclone
from chordflow.data.remotes import RemoteConfigError, Remotes
from chordflow.errors import StepCancelled, StepTimeout

#: Seconds a check may take in all.
CHECK_TIMEOUT = 15.0


def probe(remotes: Remotes, name: str, path: str = "",
          timeout: float = CHECK_TIMEOUT) -> dict[str, Any]:
    """``{name, type, path, reachable, error, elapsed}`` for remote ``name``;
    RemoteConfigError if there is no such remote."""
    remote = remotes.get(name)
    args = ["lsf", f"{name}:{path}", "--max-depth", "1", "--contimeout", "5s",
            "--timeout", f"{max(1, int(timeout))}s", "--retries", "1",
            "--low-level-retries", "1"]
    answer: dict[str, Any] = {"name": name, "type": remote.type, "path": path}
    try:
        result = run_rclone(args, remotes=remotes, timeout=timeout, keep_stdout=64 * 1024)
    except (StepTimeout, StepCancelled) as exc:
        return {**answer, "reachable": False, "error": str(exc), "elapsed": timeout}
    except (RcloneError, RemoteConfigError) as exc:  # no rclone here, a missing secret
        return {**answer, "reachable": False, "error": str(exc), "elapsed": 0.0}
    return {**answer, "reachable": result.ok, "error": result.error,
            "elapsed": round(result.elapsed, 3)}
