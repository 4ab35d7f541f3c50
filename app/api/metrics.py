"""Prometheus metrics of the API (placeholder)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def render_metrics(service: Any) -> tuple[bytes, str]:
    return generate_latest(CollectorRegistry()), CONTENT_TYPE_LATEST
