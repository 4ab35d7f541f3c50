"""The Celery application, built from settings.

Workers (``chordflow worker``, or ``celery -A workers.celery_app worker``) and every
process that submits runs use this one application. The settings are the ones
experienced Celery operators use for long, side-effecting tasks (DESIGN.md, "Celery
facts"): late acknowledgement with redelivery on worker loss, one message prefetched at
a time, events on for Flower, a broker visibility timeout longer than any step, JSON
only, and explicit result expiry (results exist only to count ``foreach`` chords).

One departure: running tasks are *not* cancelled when the worker loses its broker
connection (``worker_cancel_long_running_tasks_on_connection_loss`` off). Celery
cancels them so that a redelivered copy cannot run beside them; here a step's lease
already makes that impossible (app/engine/lease.py), and cancelling would throw away
the work of every running step at each broker restart, or stop a task between two of
its writes.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import beat_init
from chordflow.config import Settings, get_settings
from kombu import Queue

#: Step priorities run 0-9, higher first (as in RabbitMQ and Airflow). Redis orders
#: its priority queues the other way round; the dispatcher translates.
PRIORITY_STEPS = list(range(10))


def make_celery(settings: Settings) -> Celery:
    app = Celery("chordflow", broker=settings.broker_url,
                 backend=settings.celery_result_backend(),
                 include=["chordflow.tasks.step", "chordflow.tasks.recovery",
                          "chordflow.tasks.schedules"])
    transport_options: dict[str, Any] = {}
    if settings.broker_url.startswith(("redis://", "rediss://")):
        transport_options = {
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.unacked_restore_interval,
            "unacked_restore_throttle": 1,
            "priority_steps": PRIORITY_STEPS,
            "sep": ":",
            "queue_order_strategy": "priority",
        }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        result_expires=settings.result_expires,
        result_extended=False,
        worker_max_tasks_per_child=settings.worker_max_tasks_per_child,
        worker_max_memory_per_child=settings.worker_max_memory_per_child,
        broker_transport_options=transport_options,
        result_backend_transport_options=(
            {"visibility_timeout": settings.visibility_timeout} if transport_options else {}
        ),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.default_queue,
        task_queues=[Queue(settings.default_queue, queue_arguments={"x-max-priority": 9})],
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        beat_schedule={
            "chordflow-reconcile": {
                "task": "chordflow.reconcile",
                "schedule": settings.reconcile_interval,
                "options": {"queue": settings.default_queue, "expires":
                            settings.reconcile_interval},
            },
            "chordflow-schedules-tick": {
                "task": "chordflow.schedules.tick",
                "schedule": settings.schedule_tick_seconds,
                "options": {"queue": settings.default_queue, "expires":
                            settings.schedule_tick_seconds},
            },
        },
    )
    return app


app = make_celery(get_settings())


@beat_init.connect
def _quiet_beat(sender: Any = None, **_: Any) -> None:
    """The beat sends only the periodic ticks (reconcile, schedules): no ``task-sent``
    events for them, so Flower's task list shows steps, not ticks."""
    if sender is not None:
        sender.app.conf.task_send_sent_event = False
