"""``chordflow worker``: a Celery worker that runs steps (and, with --beat, the periodic
reconciler and the schedules)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated, Any

import typer


class Pool(StrEnum):
    prefork = "prefork"
    threads = "threads"
    solo = "solo"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


def worker(
    queues: Annotated[str | None, typer.Option(
        help="Comma-separated queues to serve (default CHORDFLOW_DEFAULT_QUEUE).",
        show_default=False)] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, help="Parallel steps (default: one per CPU).", show_default=False)] = None,
    pool: Annotated[Pool, typer.Option(help="Celery's execution pool.")] = Pool.prefork,
    hostname: Annotated[str | None, typer.Option(
        help="Node name, e.g. w1@%h.", show_default=False)] = None,
    beat: Annotated[bool, typer.Option(
        help="Also run the beat: the periodic reconciler and the schedules.")] = False,
    loglevel: Annotated[LogLevel, typer.Option(
        case_sensitive=False, help="Celery log level.")] = LogLevel.INFO,
    metrics_port: Annotated[int | None, typer.Option(
        help="Serve Prometheus metrics on this port (default CHORDFLOW_WORKER_METRICS_PORT).",
        show_default=False)] = None,
    metrics_host: Annotated[str | None, typer.Option(
        help="The address metrics listen on (default CHORDFLOW_WORKER_METRICS_HOST, "
             "127.0.0.1: this host only; 0.0.0.0 to be scraped from elsewhere).",
        show_default=False)] = None,
) -> None:
    """Start a Celery worker that runs steps.

    Example: chordflow worker --queues default,gpu --concurrency 4 --beat
    """
    from chordflow.config import get_settings

    settings = get_settings()
    metrics = None
    port = metrics_port or settings.worker_metrics_port
    if port:  # before Celery (and prometheus_client) load and the pool forks
        from chordflow.workers.metrics import install

        metrics = install(port, settings.worker_metrics_dir,
                          metrics_host or settings.worker_metrics_host)
    from chordflow.workers.celery_app import app as celery_app

    argv = ["worker", "-Q", queues or settings.default_queue, "-P", str(pool),
            "-l", str(loglevel), "-E", "--without-mingle", "--without-gossip"]
    if concurrency:
        argv += ["-c", str(concurrency)]
    if hostname:
        argv += ["-n", hostname]
    if beat:
        argv += ["-B", "-s", str(settings.workdir / "celerybeat-schedule")]
        settings.workdir.mkdir(parents=True, exist_ok=True)
    if settings.log_format == "json":
        from chordflow.log_format import json_for_celery

        json_for_celery()
    _say_if_the_store_is_down(settings)
    try:
        celery_app.worker_main(argv)
    finally:
        if metrics is not None:
            from chordflow.workers.metrics import cleanup

            cleanup(metrics, remove=settings.worker_metrics_dir is None)


def _say_if_the_store_is_down(settings: Any) -> None:
    """A worker starts whether MongoDB answers or not (its steps wait for it); if it
    does not, say so once, now, rather than leave the operator guessing."""
    from chordflow.engine.mongo_store import MongoStore
    from chordflow.errors import StoreUnavailable

    store = MongoStore(settings.mongo_url, settings.mongo_db, patience=0)
    try:
        store.ping()
    except StoreUnavailable as exc:
        logging.getLogger("chordflow.worker").warning(
            "%s; starting anyway: steps wait for it (up to %gs each), then go back to the "
            "broker", exc, settings.store_outage_seconds)
    finally:
        store.close()
