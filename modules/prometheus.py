"""``prometheus``: metrics from a list of records, pushed to a Pushgateway or written as
a node_exporter textfile (prometheus-client).

What the replaced platform's ``dicts2prom`` did, on JSON records: each entry of
``metrics`` describes one metric, ``{name, type, help, value, labels}``: ``type`` is
``gauge`` (default), ``counter``, ``histogram`` or ``summary``; ``value`` names the
record key holding the number (default ``value``); ``labels`` the keys whose values
become labels; ``buckets`` a histogram's bounds. Each record gives one sample: a
gauge is set to it, a counter increased by it, a histogram or summary observes it.

``build`` returns the exposition text (and checks the records), ``push`` sends it to
the Pushgateway of the step's ``connection`` (type ``pushgateway``: hosts tried in
order; ``login`` and ``password`` for basic auth) or of ``gateway``, and ``write``
writes it atomically to a ``.prom`` file for node_exporter's textfile collector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.connections.pool import Session
from chordflow.connections.use import operation_timeout, resolved_connection
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.paths import confine
from chordflow.modules.registry import StepModule
from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: runs_code=False: it turns records into metrics and sends them.
module = StepModule("prometheus", "Build metrics from records; push them or write a textfile.",
                    default_method="push", runs_code=False, connection_types=("pushgateway",))

DEFAULT_TIMEOUT = 30.0


class MetricSpec(BaseModel):
    """One metric built from the records."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    type: Literal["gauge", "counter", "histogram", "summary"] = "gauge"
    help: str = ""
    value: str = "value"
    labels: list[str] = Field(default_factory=list)
    buckets: list[float] | None = None


def _specs(metrics: list[dict[str, Any]]) -> list[MetricSpec]:
    out = []
    for i, raw in enumerate(metrics):
        try:
            out.append(MetricSpec.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"])
            raise StepFailed(f"params.metrics[{i}].{where}: {first['msg']}") from None
    if not out:
        raise StepFailed("params.metrics: describe at least one metric")
    return out


def registry_of(data: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> Any:
    """A prometheus-client registry holding the records' samples."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary

    registry = CollectorRegistry()
    for spec in _specs(metrics):
        kwargs: dict[str, Any] = {"labelnames": spec.labels, "registry": registry}
        if spec.type == "histogram" and spec.buckets:
            kwargs["buckets"] = spec.buckets
        kind = {"gauge": Gauge, "counter": Counter, "histogram": Histogram,
                "summary": Summary}[spec.type]
        metric = kind(spec.name, spec.help or spec.name, **kwargs)
        for j, record in enumerate(data):
            if not isinstance(record, Mapping) or spec.value not in record:
                continue  # a record without this metric's value
            try:
                number = float(record[spec.value])
            except (TypeError, ValueError):
                raise StepFailed(f"params.data[{j}].{spec.value}: {record[spec.value]!r} "
                                 f"is not a number (metric {spec.name})") from None
            missing = [k for k in spec.labels if k not in record]
            if missing:
                raise StepFailed(f"params.data[{j}]: no label {', '.join(missing)} "
                                 f"(metric {spec.name})")
            target = metric.labels(**{k: str(record[k]) for k in spec.labels}) \
                if spec.labels else metric
            if spec.type == "gauge":
                target.set(number)
            elif spec.type == "counter":
                if number < 0:
                    raise StepFailed(f"params.data[{j}].{spec.value}: a counter cannot "
                                     f"decrease (metric {spec.name})")
                target.inc(number)
            else:
                target.observe(number)
    return registry


def _text(registry: Any) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


@module.method
def build(ctx: StepContext, data: list[dict[str, Any]],
          metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Build metrics from records; outputs text (the exposition format) and samples.

    data: the records (objects).
    metrics: the metrics, each {name, type, help, value, labels, buckets}.
    """
    text = _text(registry_of(data, metrics))
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {"text": text, "samples": len(samples)}


@module.method
def push(ctx: StepContext, data: list[dict[str, Any]], metrics: list[dict[str, Any]],
         job: str, grouping_key: dict[str, str] | None = None, gateway: str | None = None,
         replace: bool = True, timeout: float | None = None) -> dict[str, Any]:
    """Push metrics built from records to a Pushgateway; outputs gateway, job, samples and
    connected_node.

    data: the records.
    metrics: the metrics, each {name, type, help, value, labels, buckets}.
    job: the job label the group is pushed under.
    grouping_key: more labels identifying the group (instance, ...).
    gateway: the Pushgateway's URL, where the step names no connection.
    replace: replace the group's metrics (PUT); false adds to them (POST).
    timeout: seconds the push may take (default 30).
    """
    from chordflow.connections.pool import open_first
    from prometheus_client import push_to_gateway, pushadd_to_gateway
    from prometheus_client.exposition import basic_auth_handler, default_handler

    registry = registry_of(data, metrics)
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    fallback = None
    if ctx.connection is None:
        if not gateway:
            raise StepFailed("params.gateway: name the Pushgateway's URL, or give the step "
                             "a connection of type pushgateway")
        fallback = {"type": "pushgateway", "hosts": [gateway], "retry_count": 1}
    resolved = resolved_connection(ctx, ("pushgateway",), fallback)
    # One HTTP request per push: no client to pool, only the host to choose.
    session: Session[None] = open_first(resolved, PROBE, ctx.remaining)
    login, password = resolved.connection.login, resolved.credential("password")

    def handler(url: str, method: str, timeout: float | None, headers: list[Any],
                data: bytes) -> Callable[[], None]:
        if login:
            return basic_auth_handler(url, method, timeout, headers, data, login,
                                      password or "")
        return default_handler(url, method, timeout, headers, data)

    send = push_to_gateway if replace else pushadd_to_gateway
    try:
        send(session.host.url, job=job, registry=registry, grouping_key=grouping_key,
             timeout=limit, handler=handler)
    except OSError as exc:
        raise StepFailed(f"push to {session.host.url}: {exc}") from None
    samples = sum(len(m.samples) for m in registry.collect())
    return {"gateway": session.host.url, "job": job, "samples": samples,
            "connected_node": session.node}


class PushgatewayProbe:
    """Chooses the first Pushgateway host that accepts a TCP connection."""

    types: tuple[str, ...] = ("pushgateway",)

    def open(self, resolved: Resolved, host: Host, timeout: float) -> None:
        import socket

        with socket.create_connection((host.host, host.port), timeout=timeout):
            return None

    def close(self, client: None) -> None:
        return None

    def broken(self, exc: BaseException) -> bool:
        return False

    def alive(self, client: None) -> bool:
        return True


PROBE = PushgatewayProbe()


@module.method
def write(ctx: StepContext, data: list[dict[str, Any]], metrics: list[dict[str, Any]],
          path: str) -> dict[str, Any]:
    """Write metrics built from records to a textfile for node_exporter (atomically:
    a temporary file renamed); outputs path and samples.

    data: the records.
    metrics: the metrics, each {name, type, help, value, labels, buckets}.
    path: the file (its name ending in .prom; relative to the step's scratch
        directory, inside it or CHORDFLOW_FILE_ROOTS).
    """
    from prometheus_client import write_to_textfile

    target = confine(ctx, path, "path")
    if target.suffix != ".prom":
        raise StepFailed("params.path: node_exporter reads only files ending in .prom")
    registry = registry_of(data, metrics)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), registry)
    samples = sum(len(m.samples) for m in registry.collect())
    return {"path": str(target), "samples": samples}
