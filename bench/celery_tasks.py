"""The worker side of bench/celery_vs_canvas.py: chordflow's tasks plus a plain no-op.

Both run on the same Celery application, so the plain canvas and chordflow get exactly
the same broker, result backend and worker settings.
"""

from __future__ import annotations

from typing import Any

import chordflow.tasks.recovery  # noqa: F401 - registers chordflow's tasks
import chordflow.tasks.step  # noqa: F401
from chordflow.workers.celery_app import app


@app.task(name="bench.noop")
def noop(*args: Any, **kwargs: Any) -> int:
    return 1


__all__ = ["app", "noop"]
