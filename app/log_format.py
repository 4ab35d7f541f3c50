"""Structured logs: one JSON object per line, carrying the run id and step when the
message is about one, so a log pipeline (Loki, Elasticsearch, CloudWatch) can gather a
run's lines from the API and every worker host.

``CHORDFLOW_LOG_FORMAT=json`` turns it on for ``chordflow api`` and ``chordflow
worker``; the default ``text`` keeps the usual human-readable lines. Step modules log
through ``ctx.logger``, whose records carry ``run_id`` and ``step``; the API adds them
to what it logs about a run.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

#: Record attributes copied into the JSON object when a record has them.
CONTEXT_FIELDS = ("run_id", "step", "task_id", "task_name")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "???":  # Celery's placeholder outside tasks
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(log_format: str, level: int = logging.WARNING) -> None:
    """One handler on the root logger, writing text or JSON lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def json_for_celery() -> None:
    """Make the worker's own log handlers (set up by Celery) write JSON lines."""
    from celery.signals import after_setup_logger, after_setup_task_logger

    def use_json(logger: logging.Logger, **_: Any) -> None:
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())

    after_setup_logger.connect(use_json, weak=False)
    after_setup_task_logger.connect(use_json, weak=False)
