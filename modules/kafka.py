"""``kafka``: send, consume and list topics on Kafka (kafka-python).

Every method runs on the step's ``connection`` (type ``kafka``: ``hosts`` are the
bootstrap servers, tried in order until one answers, which then tells the client the
whole cluster). Options: ``client_id``, ``acks`` (0, 1 or "all"; default "all"),
``retries``, ``security_protocol`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
``sasl_mechanism`` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), a CA as ``ssl_ca_file`` /
``_url`` / ``_base64``, a client certificate as ``ssl_cert_*`` with ``ssl_key_*``,
``ssl_check_hostname``. SASL's user is ``login``, its password the ``password``
credential.

Producers are pooled per worker process; a consumer lives for one ``consume`` call
(its group commits what it read before it closes, so the next step, on any host,
continues after it). Values are sent as JSON unless they are text; consumed values
that parse as JSON are returned parsed, else as text.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from chordflow.connections.catalog import Resolved
from chordflow.connections.models import Host
from chordflow.connections.pool import Session, open_first
from chordflow.connections.tls import cert_file
from chordflow.connections.use import operation_timeout, resolved_connection, run_on
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it moves messages.
module = StepModule("kafka", "Kafka: send, consume, list topics.", default_method="send",
                    runs_code=False, connection_types=("kafka",))

DEFAULT_TIMEOUT = 30.0
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def client_config(resolved: Resolved, host: Host, timeout: float) -> dict[str, Any]:
    """What every kafka-python client of ``host`` is given (security included)."""
    options = resolved.connection.options
    protocol = str(options.get("security_protocol", "PLAINTEXT")).upper()
    if protocol not in PROTOCOLS:
        raise StepFailed(f"connection '{resolved.name}': options.security_protocol must be "
                         f"one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    config: dict[str, Any] = {
        "bootstrap_servers": [host.node],
        "security_protocol": protocol,
        "request_timeout_ms": int(max(timeout, DEFAULT_TIMEOUT) * 1000) + 1000,
        "api_version_auto_timeout_ms": int(timeout * 1000),
    }
    if options.get("client_id"):
        config["client_id"] = str(options["client_id"])
    if protocol.startswith("SASL"):
        config["sasl_mechanism"] = str(options.get("sasl_mechanism", "PLAIN"))
        config["sasl_plain_username"] = resolved.connection.login
        config["sasl_plain_password"] = resolved.credential("password")
    if protocol.endswith("SSL"):
        config["ssl_check_hostname"] = bool(options.get("ssl_check_hostname", True))
        for key, prefix in (("ssl_cafile", "ssl_ca"), ("ssl_certfile", "ssl_cert"),
                            ("ssl_keyfile", "ssl_key")):
            path = cert_file(options, prefix)
            if path:
                config[key] = path
    return config


def producer_config(resolved: Resolved, host: Host, timeout: float) -> dict[str, Any]:
    options = resolved.connection.options
    acks = options.get("acks", "all")
    return {**client_config(resolved, host, timeout),
            "acks": acks if acks == "all" else int(acks),
            "retries": int(options.get("retries", 3)),
            "max_block_ms": int(timeout * 1000)}


def consumer_config(resolved: Resolved, host: Host, timeout: float, group_id: str | None,
                    auto_offset_reset: str) -> dict[str, Any]:
    return {**client_config(resolved, host, timeout), "group_id": group_id,
            "auto_offset_reset": auto_offset_reset, "enable_auto_commit": False,
            "consumer_timeout_ms": int(timeout * 1000)}


def encode(value: Any) -> bytes | None:
    """A message's value or key as bytes: text as UTF-8, anything else as JSON."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def decode(raw: bytes | None) -> Any:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class ProducerDriver:
    """Pooled KafkaProducers (chordflow.connections.pool.Driver)."""

    types: tuple[str, ...] = ("kafka",)

    def open(self, resolved: Resolved, host: Host, timeout: float) -> Any:
        from kafka import KafkaProducer

        return KafkaProducer(**producer_config(resolved, host, timeout))

    def close(self, client: Any) -> None:
        client.close(timeout=5)

    def broken(self, exc: BaseException) -> bool:
        from kafka.errors import KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable

        return isinstance(exc, KafkaConnectionError | NoBrokersAvailable | KafkaTimeoutError)

    def alive(self, client: Any) -> bool:
        return not getattr(client, "_closed", False)


class _ConsumerDriver(ProducerDriver):
    """Chooses the first bootstrap server that answers, for a one-call consumer."""

    def __init__(self, group_id: str | None, auto_offset_reset: str):
        self.group_id, self.auto_offset_reset = group_id, auto_offset_reset

    def open(self, resolved: Resolved, host: Host, timeout: float) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(**consumer_config(resolved, host, timeout, self.group_id,
                                               self.auto_offset_reset))


PRODUCER = ProducerDriver()


def _kafka_errors(fn: Any) -> Any:
    from kafka.errors import KafkaError

    try:
        return fn()
    except KafkaError as exc:
        raise StepFailed(f"Kafka: {type(exc).__name__}: {exc}") from None


@module.method
def send(ctx: StepContext, topic: str, data: Any, key: Any = None, many: bool = False,
         headers: dict[str, str] | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Send a message (or, with many, one per element of data) and wait for the
    brokers' acknowledgement; outputs sent, partitions, offsets and connected_node.

    topic: the topic.
    data: the value (text as it is, anything else as JSON).
    key: the message key (text or JSON), which picks the partition.
    many: data is a list, one message per element.
    headers: message headers (text values).
    timeout: seconds to wait for the acknowledgements (default 30).
    """
    if many and not isinstance(data, list):
        raise StepFailed("params.data: a list, with many")
    values = data if many else [data]
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    head = [(k, str(v).encode()) for k, v in (headers or {}).items()]

    def on(session: Session[Any]) -> dict[str, Any]:
        futures = [session.client.send(topic, value=encode(v), key=encode(key),
                                       headers=head or None) for v in values]
        meta = [f.get(timeout=limit) for f in futures]
        return {"sent": len(meta), "partitions": [m.partition for m in meta],
                "offsets": [m.offset for m in meta], "connected_node": session.node}

    return _kafka_errors(lambda: run_on(ctx, PRODUCER, on))  # type: ignore[no-any-return]


@module.method
def consume(ctx: StepContext, topics: str | list[str], group_id: str | None = None,
            max_messages: int = 100, timeout: float = 10.0,
            auto_offset_reset: Literal["earliest", "latest"] = "earliest") -> dict[str, Any]:
    """Read up to max_messages within timeout seconds, committing them for the group;
    outputs messages ({topic, partition, offset, key, value, timestamp}), count and
    connected_node.

    topics: a topic or a list.
    group_id: the consumer group (without one, nothing is committed).
    max_messages: stop after this many.
    timeout: seconds to wait for messages (an empty result is not a failure).
    auto_offset_reset: where a group without committed offsets starts.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    limit = operation_timeout(ctx, timeout, timeout)
    resolved = resolved_connection(ctx, ("kafka",))

    def work() -> dict[str, Any]:
        session: Session[Any] = open_first(
            resolved, _ConsumerDriver(group_id, auto_offset_reset), ctx.remaining)
        consumer = session.client
        messages: list[dict[str, Any]] = []
        try:
            consumer.subscribe(names)
            deadline = time.monotonic() + limit
            while len(messages) < max_messages and time.monotonic() < deadline:
                ctx.check()
                batch = consumer.poll(timeout_ms=200, max_records=max_messages - len(messages))
                for records in batch.values():
                    for r in records:
                        messages.append({"topic": r.topic, "partition": r.partition,
                                         "offset": r.offset, "key": decode(r.key),
                                         "value": decode(r.value), "timestamp": r.timestamp})
            if group_id and messages:
                consumer.commit()
        finally:
            consumer.close()
        return {"messages": messages, "count": len(messages), "connected_node": session.node}

    return _kafka_errors(work)  # type: ignore[no-any-return]


@module.method
def list_topics(ctx: StepContext, timeout: float | None = None) -> dict[str, Any]:
    """List the cluster's topics; outputs topics and connected_node."""
    limit = operation_timeout(ctx, timeout, DEFAULT_TIMEOUT)
    resolved = resolved_connection(ctx, ("kafka",))

    def work() -> dict[str, Any]:
        session: Session[Any] = open_first(resolved, _ConsumerDriver(None, "latest"),
                                           ctx.remaining)
        try:
            session.client.config["request_timeout_ms"] = int(limit * 1000) + 1000
            topics = sorted(session.client.topics())
        finally:
            session.client.close()
        return {"topics": topics, "connected_node": session.node}

    return _kafka_errors(work)  # type: ignore[no-any-return]
