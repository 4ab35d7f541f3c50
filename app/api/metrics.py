"""Prometheus metrics of workflow runs, computed from the MongoDB records.

``GET /metrics`` serves (text exposition format)::

    workflows_submitted_total                     counter    runs created (``created_at``)
    workflows_completed_total{status}             counter    runs finished: succeeded |
                                                             failed | cancelled
    active_workflows_count                        gauge      runs pending or running now
    workflow_execution_duration_seconds           histogram  finished runs' finished_at -
                                                             started_at
    steps_submitted_total{module}                 counter    steps put on a queue
                                                             (``queued_at``)
    steps_completed_total{module,status}          counter    steps finished: succeeded |
                                                             failed | skipped |
                                                             upstream_failed | cancelled
    step_execution_duration_seconds{module}       histogram  finished steps' finished_at -
                                                             started_at
    chordflow_queue_length{queue}                 gauge      messages waiting in a broker
                                                             queue
    chordflow_metrics_up{source}                  gauge      1 if this scrape could read
                                                             ``mongodb`` / ``broker``
    chordflow_reconcile_errors_total              counter    runs whose recovery raised
                                                             in a reconciler pass
    chordflow_queue_unserved{queue}               gauge      steps queued where no live
                                                             worker consumes

Why from the records: steps run in Celery workers on other hosts, and an API
deployment may run several processes, none of which sees a step finish. Every one of
them sees the same MongoDB records, so each process computes the same, complete,
cluster-wide totals from them, whatever the number of API processes and worker hosts.
(Scraping several API processes therefore yields the same series several times: query
them with ``max without (instance)``, never ``sum``.) A process that restarts reads
the records again and comes back to the same totals, so no count is lost with it.

Why incremental: counting every document on every scrape would cost a full scan of
``runs`` and ``steps`` each time. Each process keeps cumulative counters and histogram
buckets instead, and per stream (runs by ``created_at``, runs by ``finished_at``, steps
by ``queued_at``, steps by ``finished_at``) a watermark: the newest time it has read.
A scrape reads only the documents whose time is at or after ``watermark -
OVERLAP_SECONDS`` (an index on each field, created once per process on the first
scrape, makes that a range scan). The overlap catches records written late, or
stamped by a host whose clock lags the others; the ``(_id, time)`` pairs read inside
the window are remembered, so a document read twice counts once. The watermark never
passes this process's own clock, so one host whose clock runs ahead cannot make the
others' records fall behind it. The first scrape after start reads every record once
(it is the slow one, on a large database).

What counts, precisely:

- A run counts as submitted once (its ``created_at`` never changes). A run counts as
  completed each time it finishes: a re-run that finishes again counts again, as its
  steps do.
- A step counts as submitted each time it is put on a queue that a scrape sees: the
  first attempt, and a retry or re-run queued again later. (Queuing overwrites
  ``queued_at``, so a step queued and queued again between two scrapes counts once.)
- Durations are observed for records with both ``started_at`` and ``finished_at``: a
  run cancelled before it started, or a step that never ran (skipped, upstream_failed,
  cancelled while queued), has none. A retried step's duration is its last attempt's.
  A negative difference (hosts' clocks apart) counts as 0.
- Records written with a time older than ``OVERLAP_SECONDS`` before the newest time
  already read are missed by a running process (a restarted one counts them).

Histogram buckets (seconds, both histograms): 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
120, 300, 600, 1800, 3600 and +Inf: from quick function calls to hour-long jobs.

Queue lengths are read from the broker on each scrape, for the settings' default queue
and every queue named in the plans of pending or running runs (a queue stays listed
for ``QUEUE_LINGER_SECONDS`` after its last active run). On Redis a queue is a list per
priority (``<queue>`` and ``<queue>:1`` … ``<queue>:9``), and kombu's passive
``queue_declare`` sums their lengths; on RabbitMQ it returns the queue's message
count. A queue that does not exist has 0 messages. Messages already delivered to a
worker (prefetched or running) are not waiting and are not counted.

If MongoDB cannot be read, the counters keep their last values (they are totals, still
true, only late), ``active_workflows_count`` is left out, and
``chordflow_metrics_up{source="mongodb"}`` is 0; likewise the queue lengths and
``{source="broker"}`` when the broker cannot be read. Counters are exported only once
a first complete read succeeded, so they never show a false 0.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from chordflow.engine.state import RUN_FINISHED, STEP_FINISHED, RunStatus
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString
from pymongo.errors import OperationFailure

log = logging.getLogger("chordflow.api.metrics")

#: Upper bounds (``le``) of the duration histograms' buckets, in seconds.
BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                              300.0, 600.0, 1800.0, 3600.0)
#: How far back before its watermark each scrape reads again, in seconds: longer than
#: any delay between a host stamping a record and writing it, plus clock differences.
OVERLAP_SECONDS = 60.0
#: How long a queue stays listed after the last active run that named it.
QUEUE_LINGER_SECONDS = 600.0
#: Seconds to connect to (and wait for) the broker when reading queue lengths.
BROKER_TIMEOUT = 3.0

_RUN_DONE = frozenset(str(s) for s in RUN_FINISHED)
_STEP_DONE = frozenset(str(s) for s in STEP_FINISHED)
_ACTIVE = [str(RunStatus.PENDING), str(RunStatus.RUNNING)]


# -- the cumulative state ------------------------------------------------------------------


@dataclass
class Histogram:
    """Non-cumulative counts per bucket of ``BUCKETS`` (the last one is +Inf), and sum."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        value = max(value, 0.0)
        self.counts[bisect_left(BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, as the exposition format wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        bounds = (*map(floatToGoString, BUCKETS), "+Inf")
        for bound, count in zip(bounds, self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


def _time(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _duration(doc: Mapping[str, Any]) -> float | None:
    started, finished = _time(doc.get("started_at")), _time(doc.get("finished_at"))
    if started is None or finished is None:
        return None
    return finished - started


class Stream:
    """The documents of a collection whose ``field`` (a UNIX time) is new since the
    last read, each ``(_id, time)`` once; see the module docstring."""

    def __init__(self, field: str, projection: Iterable[str],
                 overlap: float = OVERLAP_SECONDS):
        self.field = field
        self.projection = {name: 1 for name in (field, *projection)}
        self.overlap = overlap
        self.watermark: float | None = None
        self.seen: set[tuple[Any, float]] = set()

    def read(self, collection: Any, handle: Callable[[Mapping[str, Any]], bool],
             clock: Callable[[], float] = time.time) -> None:
        """Pass each new document to ``handle`` (which returns whether it counted it).

        Safe to fail midway: what was handled is remembered, the watermark moves only
        once every document was read, and the next read starts from the old one.
        """
        if self.watermark is None:
            query: dict[str, Any] = {self.field: {"$gt": 0}}
        else:
            query = {self.field: {"$gte": self.watermark - self.overlap}}
        newest = self.watermark
        for doc in collection.find(query, self.projection):
            stamp = _time(doc.get(self.field))
            if stamp is None:
                continue
            key = (doc["_id"], stamp)
            if key in self.seen or not handle(doc):
                continue
            self.seen.add(key)
            newest = stamp if newest is None else max(newest, stamp)
        if newest is not None:
            # Never past our own clock: a host whose clock runs ahead would otherwise
            # carry the watermark past records the others are about to write.
            self.watermark = min(newest, max(clock(), self.watermark or 0.0))
            cutoff = self.watermark - self.overlap
            self.seen = {key for key in self.seen if key[1] >= cutoff}


class RecordMetrics:
    """Cumulative counts of one store's runs and steps, brought up to date by
    ``refresh`` (thread-safe: overlapping scrapes take turns)."""

    def __init__(self, store: Any, overlap: float = OVERLAP_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock
        self.lock = threading.Lock()
        self.loaded = False  # a first complete read succeeded
        self.indexed = False
        self.runs_submitted = 0
        self.runs_completed: Counter[str] = Counter()
        self.run_duration = Histogram()
        self.steps_submitted: Counter[str] = Counter()
        self.steps_completed: Counter[tuple[str, str]] = Counter()
        self.step_duration: dict[str, Histogram] = {}
        self._runs_created = Stream("created_at", (), overlap)
        self._runs_finished = Stream("finished_at", ("status", "started_at"), overlap)
        self._steps_queued = Stream("queued_at", ("module",), overlap)
        self._steps_finished = Stream("finished_at", ("module", "status", "started_at"),
                                      overlap)

    def ensure_indexes(self) -> None:
        """The indexes the streams' range queries use (once per process; created
        where missing, a no-op where they exist). ``runs.created_at`` is covered by
        the store's own ``(created_at, _id)`` index."""
        if self.indexed:
            return
        try:
            self.store.runs.create_index([("finished_at", 1)])
            self.store.steps.create_index([("finished_at", 1)])
            self.store.steps.create_index([("queued_at", 1)])
        except OperationFailure as exc:  # refused (e.g. no right to): reads just scan
            log.warning("metrics: could not create indexes: %s", exc)
        # (Any other error, MongoDB unreachable, fails this refresh; the next tries again.)
        self.indexed = True

    def refresh(self) -> None:
        """Read what is new since the last refresh; raises if MongoDB cannot be read."""
        self.ensure_indexes()
        self._runs_created.read(self.store.runs, self._run_created, self.clock)
        self._runs_finished.read(self.store.runs, self._run_finished, self.clock)
        self._steps_queued.read(self.store.steps, self._step_queued, self.clock)
        self._steps_finished.read(self.store.steps, self._step_finished, self.clock)
        self.loaded = True

    def _run_created(self, doc: Mapping[str, Any]) -> bool:
        self.runs_submitted += 1
        return True

    def _run_finished(self, doc: Mapping[str, Any]) -> bool:
        status = doc.get("status")
        if status not in _RUN_DONE:
            return False  # being re-run: its finished_at is about to be cleared
        self.runs_completed[status] += 1
        duration = _duration(doc)
        if duration is not None:
            self.run_duration.observe(duration)
        return True

    def _step_queued(self, doc: Mapping[str, Any]) -> bool:
        self.steps_submitted[str(doc.get("module") or "")] += 1
        return True

    def _step_finished(self, doc: Mapping[str, Any]) -> bool:
        status = doc.get("status")
        if status not in _STEP_DONE:
            return False
        module = str(doc.get("module") or "")
        self.steps_completed[module, status] += 1
        duration = _duration(doc)
        if duration is not None:
            self.step_duration.setdefault(module, Histogram()).observe(duration)
        return True

    def active_runs(self) -> list[Mapping[str, Any]]:
        """The pending and running runs (``_id``, ``digest``): a gauge, read whole."""
        return list(self.store.runs.find({"status": {"$in": _ACTIVE}},
                                         {"_id": 1, "digest": 1}))

    def families(self) -> Iterator[Metric]:
        """The counters and histograms as they stand (call under ``lock``)."""
        submitted = CounterMetricFamily("workflows_submitted_total",
                                        "Workflow runs submitted.")
        submitted.add_metric([], self.runs_submitted)
        yield submitted
        completed = CounterMetricFamily(
            "workflows_completed_total",
            "Workflow runs finished, by final status (a re-run finishing again counts "
            "again).", labels=["status"])
        for status in sorted(_RUN_DONE):
            completed.add_metric([status], self.runs_completed[status])
        yield completed
        run_hist = HistogramMetricFamily(
            "workflow_execution_duration_seconds",
            "Duration of finished workflow runs (finished_at - started_at).")
        run_hist.add_metric([], self.run_duration.buckets(), self.run_duration.total)
        yield run_hist
        steps = CounterMetricFamily("steps_submitted_total",
                                    "Steps put on a queue (first attempts, retries, "
                                    "re-runs), by module.", labels=["module"])
        for module, count in sorted(self.steps_submitted.items()):
            steps.add_metric([module], count)
        yield steps
        steps_done = CounterMetricFamily("steps_completed_total",
                                         "Steps finished, by module and final status.",
                                         labels=["module", "status"])
        for (module, status), count in sorted(self.steps_completed.items()):
            steps_done.add_metric([module, status], count)
        yield steps_done
        step_hist = HistogramMetricFamily(
            "step_execution_duration_seconds",
            "Duration of the last attempt of finished steps (finished_at - started_at), "
            "by module.", labels=["module"])
        for module, hist in sorted(self.step_duration.items()):
            step_hist.add_metric([module], hist.buckets(), hist.total)
        yield step_hist


# -- the collector --------------------------------------------------------------------------


class MetricsCollector:
    """A prometheus_client custom collector: records from MongoDB, queues from the broker.

    ``plan_queues(run_id)`` names the queues of a run's plan (called once per workflow
    digest); ``queue_lengths(names)`` reads the broker. Either may be None (no
    queue metric then).
    """

    def __init__(
        self,
        store: Any,
        *,
        default_queue: str | None = None,
        plan_queues: Callable[[str], Iterable[str]] | None = None,
        queue_lengths: Callable[[list[str]], Mapping[str, int]] | None = None,
        overlap: float = OVERLAP_SECONDS,
        clock: Callable[[], float] = time.time,
    ):
        self.records = RecordMetrics(store, overlap, clock)
        self.default_queue = default_queue
        self.plan_queues = plan_queues
        self.queue_lengths = queue_lengths
        self._digest_queues: dict[str, frozenset[str]] = {}
        self._queues_seen: dict[str, float] = {}  # queue -> time.monotonic() last named
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        records = self.records
        out: list[Metric] = []
        up = GaugeMetricFamily("chordflow_metrics_up",
                               "Whether this scrape could read the source (1) or not (0).",
                               labels=["source"])
        with records.lock:
            active: list[Mapping[str, Any]] | None = None
            try:
                records.refresh()
                active = records.active_runs()
                up.add_metric(["mongodb"], 1)
            except Exception as exc:
                log.warning("metrics: cannot read MongoDB: %s: %s", type(exc).__name__, exc)
                up.add_metric(["mongodb"], 0)
            if records.loaded:
                out += records.families()
            if active is not None:
                gauge = GaugeMetricFamily("active_workflows_count",
                                          "Workflow runs pending or running.")
                gauge.add_metric([], len(active))
                out.append(gauge)
                out += self._reconciler()
            queues = self._queue_names(active or [])
        if self.queue_lengths is not None:  # not under the lock: the broker may be slow
            try:
                lengths = self.queue_lengths(queues)
            except Exception as exc:
                log.warning("metrics: cannot read the broker's queues: %s: %s",
                            type(exc).__name__, exc)
                up.add_metric(["broker"], 0)
            else:
                up.add_metric(["broker"], 1)
                gauge = GaugeMetricFamily("chordflow_queue_length",
                                          "Messages waiting in a broker queue.",
                                          labels=["queue"])
                for name in queues:
                    gauge.add_metric([name], lengths.get(name, 0))
                out.append(gauge)
        out.append(up)
        return iter(out)

    def _reconciler(self) -> list[Metric]:
        """What the reconciler's last pass noted (whichever worker or CLI made it)."""
        reader = getattr(self.records.store, "reconcile_state", None)
        if reader is None:
            return []
        try:
            state = reader()
        except Exception as exc:
            log.warning("metrics: cannot read the reconciler's state: %s", exc)
            return []
        errors = CounterMetricFamily(
            "chordflow_reconcile_errors", "Runs whose recovery raised in a reconciler pass "
            "(logged with the run id, skipped; the other runs were recovered).")
        errors.add_metric([], float(state.get("errors_total") or 0))
        unserved = GaugeMetricFamily(
            "chordflow_queue_unserved", "Steps queued on a queue that no live worker "
            "consumes, as the reconciler last found them.", labels=["queue"])
        for queue, n in sorted((state.get("unserved_queues") or {}).items()):
            unserved.add_metric([queue], n)
        return [errors, unserved]

    def _queue_names(self, active: list[Mapping[str, Any]]) -> list[str]:
        """The default queue, the queues of active runs' plans, and those named lately
        (call under the lock)."""
        moment = time.monotonic()
        named: set[str] = {self.default_queue} if self.default_queue else set()
        for run in active:
            named |= self._queues_of(run)
        digests = {run.get("digest") for run in active}
        self._digest_queues = {digest: queues for digest, queues
                               in self._digest_queues.items() if digest in digests}
        for name in named:
            self._queues_seen[name] = moment
        for name, seen in list(self._queues_seen.items()):
            if moment - seen > QUEUE_LINGER_SECONDS:
                del self._queues_seen[name]
        return sorted(self._queues_seen)

    def _queues_of(self, run: Mapping[str, Any]) -> frozenset[str]:
        digest = run.get("digest")
        if self.plan_queues is None or not digest:
            return frozenset()
        known = self._digest_queues.get(digest)
        if known is None:
            try:
                known = frozenset(q for q in self.plan_queues(str(run["_id"])) if q)
            except Exception as exc:  # e.g. the run was deleted meanwhile: ask again later
                log.warning("metrics: cannot read the plan of run %s: %s: %s",
                            run["_id"], type(exc).__name__, exc)
                return frozenset()
            self._digest_queues[digest] = known
        return known


# -- the broker ------------------------------------------------------------------------------


def broker_queue_lengths(app: Any, queues: list[str],
                         timeout: float = BROKER_TIMEOUT) -> dict[str, int]:
    """Messages waiting in each queue, by a passive ``queue_declare`` (kombu).

    On Redis that sums ``LLEN`` over the queue's priority lists (the channel knows the
    separator and priority steps from the transport options); on RabbitMQ it is the
    queue's message count. A queue that does not exist has 0 messages.
    """
    from amqp.exceptions import NotFound
    from kombu.exceptions import ChannelError

    url = str(app.conf.broker_read_url or app.conf.broker_url or "")
    options: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://", "sentinel://", "socket://")):
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    lengths: dict[str, int] = {}
    with app.connection_for_read(transport_options=options,
                                 connect_timeout=timeout) as conn:
        conn.ensure_connection(max_retries=1, timeout=timeout)
        channel = conn.channel()
        try:
            for queue in queues:
                try:
                    lengths[queue] = int(channel.queue_declare(queue=queue, passive=True)
                                         .message_count)
                except ChannelError:  # virtual transports (Redis): the channel stays open
                    lengths[queue] = 0
                except NotFound:  # AMQP closes the channel after a failed declare
                    lengths[queue] = 0
                    _close(channel)
                    channel = conn.channel()
        finally:
            _close(channel)
    return lengths


def _close(channel: Any) -> None:
    try:
        channel.close()
    except Exception:  # already closed by the broker
        pass


# -- per process ------------------------------------------------------------------------------

_collectors: weakref.WeakKeyDictionary[Any, MetricsCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


def collector_for(service: Any) -> MetricsCollector:
    """This process's collector for ``service`` (a ``RunService``), made on first use."""
    with _collectors_lock:
        collector = _collectors.get(service)
        if collector is None:
            collector = _make_collector(service)
            _collectors[service] = collector
        return collector


def _make_collector(service: Any) -> MetricsCollector:
    engine = service.engine
    store = engine.store
    dispatcher = engine.dispatcher
    settings = getattr(dispatcher, "settings", None)
    app = getattr(dispatcher, "app", None)

    def plan_queues(run_id: str) -> list[str]:
        plan = engine.plan_for(store.get_run(run_id))
        return [sp.step.queue for sp in plan.steps.values() if sp.step.queue]

    def queue_lengths(queues: list[str]) -> dict[str, int]:
        return broker_queue_lengths(app, queues)

    return MetricsCollector(
        store,
        default_queue=getattr(settings, "default_queue", None),
        plan_queues=plan_queues,
        queue_lengths=queue_lengths if app is not None else None,
    )


def render_metrics(service: Any) -> tuple[bytes, str]:
    """The exposition text of ``service``'s metrics, and its content type."""
    return generate_latest(collector_for(service).registry), CONTENT_TYPE_LATEST
