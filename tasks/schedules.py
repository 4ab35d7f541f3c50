"""The schedule tick: Celery beat sends ``chordflow.schedules.tick`` every
``schedule_tick_seconds``; it submits the runs of the schedules that are due.

See ``chordflow.schedules`` for the design: the schedules live in MongoDB, each due one is
claimed with a compare-and-set before its run is submitted, so overlapping ticks (or two
beats) never submit an occurrence twice. The task is not acknowledged late and expires
after one tick: a tick lost or dropped is simply done by the next one.
"""

from __future__ import annotations

import time
from typing import Any

from chordflow.schedules import tick
from chordflow.service import RunService
from chordflow.tasks.runtime import worker_engine
from chordflow.workers.celery_app import app


#: No task events (``send_events``), and the beat sends no ``task-sent`` event
#: (workers/celery_app.py): a tick every few seconds would bury the steps in Flower.
@app.task(name="chordflow.schedules.tick", acks_late=False, ignore_result=True,
          send_events=False)
def schedules_tick() -> list[dict[str, Any]]:
    fired = tick(RunService(worker_engine()), time.time())
    return [{"schedule_id": f.schedule_id, "run_id": f.run_id, "error": f.error}
            for f in fired]
