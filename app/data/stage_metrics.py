"""The stage cache's Prometheus metrics, made on first use in each process.

Made lazily rather than at import: a worker with metrics on points
``PROMETHEUS_MULTIPROC_DIR`` at its samples directory before its pool forks
(workers/metrics.py), and a metric object made in a pool process after that writes its
samples to that directory, where the worker's ``/metrics`` sums every process's. No
label carries an object's name or a run: the label sets stay bounded.

- ``chordflow_stage_cache_hits_total``: staged inputs found in the host's cache.
- ``chordflow_stage_cache_misses_total``: staged inputs downloaded into it.
- ``chordflow_stage_cache_evictions_total``: objects evicted to stay under the bound.
- ``chordflow_stage_cache_bytes``: bytes the host's cache holds (as last measured by
  any process of the worker).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageMetrics:
    hits: Any
    misses: Any
    evictions: Any
    bytes: Any


_metrics: StageMetrics | None = None
_lock = threading.Lock()


def stage_metrics() -> StageMetrics:
    """This process's metric objects (made on the first call)."""
    global _metrics
    with _lock:
        if _metrics is None:
            from prometheus_client import Counter, Gauge

            _metrics = StageMetrics(
                hits=Counter("chordflow_stage_cache_hits",
                             "Staged inputs found in the host's stage cache."),
                misses=Counter("chordflow_stage_cache_misses",
                               "Staged inputs downloaded into the host's stage cache."),
                evictions=Counter("chordflow_stage_cache_evictions",
                                  "Objects evicted from the host's stage cache."),
                bytes=Gauge("chordflow_stage_cache_bytes",
                            "Bytes held by the host's stage cache.",
                            multiprocess_mode="mostrecent"),
            )
        return _metrics
