"""Replication events: the replaced data-staging service's Argo workflow events, read
as it read them, and the same information as plain JSON.

An Argo event is a Workflow object (``apiVersion: argoproj.io/v1alpha1``), JSON or YAML,
bare or wrapped as ``{"type": "ADD" | "UPDATE" | "DELETE" ..., "body": {...}}``, with
whatever a log printed before it (text before the first ``{`` is ignored when the whole
text does not parse). Its ``spec.arguments.parameters`` name ``files`` (a JSON list, in
a string, as Argo parameters are strings; single quotes are read as double ones, as the
replaced service did), ``primary_endpoint``, ``secondary_endpoint``, ``primary_folder``
and ``secondary_folder``. Its phase comes from the ``workflows.argoproj.io/phase`` label,
else ``status.phase``.

Plain JSON carries the same names at the top level, plus optionally ``tier``, a
``workflow`` (who holds the files until its finished event) and a ``phase``.

What an event asks (see docs/data.md, "Just-in-time tiers"): while its workflow is not
finished (ADD, Pending, Running, or no phase), make its files present on the primary
and hold them there for the workflow; once finished (Succeeded, Failed, Error, or a
DELETE), release the workflow's hold (nothing is copied).
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

import yaml
from chordflow.errors import ChordflowError

#: Argo phases after which a workflow needs its files no more.
FINISHED_PHASES = frozenset({"succeeded", "failed", "error", "completed"})
#: Event types (Kubernetes watch verbs) that say the workflow is gone.
GONE_TYPES = frozenset({"delete", "deleted"})
PARAMETERS = ("files", "primary_endpoint", "secondary_endpoint", "primary_folder",
              "secondary_folder")
#: Files one event may list (a bound, checked before anything is recorded).
MAX_FILES = 10_000
PHASE_LABEL = "workflows.argoproj.io/phase"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class EventInvalid(ChordflowError):
    """An event that cannot be read; ``field`` names where (``files[3]``, ...)."""

    def __init__(self, message: str, field: str | None = None):
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


@dataclass(frozen=True)
class JitEvent:
    """What an event asks, whichever shape it came in."""

    files: tuple[str, ...]
    primary_endpoint: str | None = None
    secondary_endpoint: str | None = None
    primary_folder: str | None = None
    secondary_folder: str | None = None
    tier: str | None = None
    #: ``ADD``, ``UPDATE``, ... for Argo events; ``JSON`` for plain ones.
    type: str = "JSON"
    phase: str | None = None
    #: Who holds the files until its finished event: ``argo:<uid>`` (or
    #: ``argo:<namespace>/<name>``), the plain event's ``workflow``; None: only the
    #: event's own run holds them, while it runs.
    holder: str | None = None
    #: The Argo workflow's name, for the run's record.
    workflow: str | None = None

    @property
    def finished(self) -> bool:
        """Does the event say its workflow needs its files no more?"""
        return (self.type.lower() in GONE_TYPES
                or (self.phase or "").lower() in FINISHED_PHASES)


def parse_event(body: str | bytes | dict[str, Any]) -> JitEvent:
    """Read an event (text or already-parsed data); EventInvalid naming the field."""
    data = _load(body) if isinstance(body, str | bytes) else body
    if not isinstance(data, dict):
        raise EventInvalid("an event is a JSON or YAML object")
    if "body" in data and isinstance(data["body"], dict):
        return _argo(data["body"], str(data.get("type") or "UNKNOWN"))
    if data.get("kind") == "Workflow" or "spec" in data:
        return _argo(data, str(data.get("type") or "UNKNOWN"))
    return _plain(data)


def _load(body: str | bytes) -> Any:
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise EventInvalid("the event is not UTF-8 text") from None
    try:
        data = yaml.safe_load(body)  # YAML is a superset of JSON
        if isinstance(data, dict):
            return data
    except (yaml.YAMLError, ValueError, RecursionError):
        pass  # perhaps a log's lines before the event: try from its first '{'
    start = body.find("{")  # a log line (or several) before the event
    if start < 0:
        raise EventInvalid("no event found: expected a JSON or YAML object")
    try:
        return yaml.safe_load(body[start:])
    except (ValueError, RecursionError) as exc:  # a bad date, nesting too deep
        raise EventInvalid(f"not JSON or YAML: {exc}"[:500]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise EventInvalid(f"not JSON or YAML{where}: "
                           f"{getattr(exc, 'problem', None) or exc}") from None


def _argo(workflow: dict[str, Any], event_type: str) -> JitEvent:
    params = _parameters(workflow)
    metadata = _mapping(workflow.get("metadata"))
    labels = _mapping(metadata.get("labels"))
    status = _mapping(workflow.get("status"))
    phase = labels.get(PHASE_LABEL) or status.get("phase")
    name = metadata.get("name") or metadata.get("generateName")
    holder = None
    if metadata.get("uid"):
        holder = f"argo:{metadata['uid']}"
    elif metadata.get("name"):
        holder = f"argo:{metadata.get('namespace') or 'default'}/{metadata['name']}"
    files = _files(params.get("files"), "spec.arguments.parameters.files")
    return JitEvent(files=files, **_strings(params, "spec.arguments.parameters."),
                    type=event_type.upper(), phase=str(phase) if phase else None,
                    holder=holder, workflow=str(name) if name else None)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _parameters(workflow: dict[str, Any]) -> dict[str, Any]:
    try:
        listed = workflow["spec"]["arguments"]["parameters"]
    except (KeyError, TypeError):
        raise EventInvalid("an Argo workflow event needs spec.arguments.parameters "
                           "(files, primary_endpoint, ...)",
                           "spec.arguments.parameters") from None
    if not isinstance(listed, list):
        raise EventInvalid("must be a list of {name, value}", "spec.arguments.parameters")
    found: dict[str, Any] = {}
    for i, param in enumerate(listed):
        if not isinstance(param, dict) or "name" not in param:
            raise EventInvalid("must be {name, value}", f"spec.arguments.parameters[{i}]")
        if param["name"] in PARAMETERS:
            found[param["name"]] = param.get("value")
    return found


def _plain(data: dict[str, Any]) -> JitEvent:
    if "files" not in data:
        raise EventInvalid("an event lists its files (or is an Argo workflow event, "
                           "with spec.arguments.parameters)", "files")
    files = _files(data["files"], "files")
    for name in ("tier", "workflow", "phase"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise EventInvalid("must be a string", name)
    workflow = data.get("workflow")
    return JitEvent(files=files, **_strings(data, ""), tier=data.get("tier"),
                    type="JSON", phase=data.get("phase"),
                    holder=f"workflow:{workflow}" if workflow else None, workflow=workflow)


def _strings(source: dict[str, Any], where: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PARAMETERS[1:]:
        value = source.get(name)
        if value is not None and not isinstance(value, str):
            raise EventInvalid("must be a string", f"{where}{name}")
        out[name] = value.strip() if isinstance(value, str) and value.strip() else None
    return out


def _files(value: Any, where: str) -> tuple[str, ...]:
    """The listed files, as paths relative to the tiers' folders (``/a/b`` is ``a/b``,
    as the replaced service's events write them), each once, in order."""
    if isinstance(value, str):
        text = value.replace("\\n", "").strip().replace("'", '"')
        try:
            value = json.loads(text) if text else []
        except ValueError as exc:
            raise EventInvalid(f"must be a JSON list of paths: {exc}", where) from None
    if not isinstance(value, list):
        raise EventInvalid("must be a list of paths", where)
    if len(value) > MAX_FILES:
        raise EventInvalid(f"{len(value)} files; one event may list at most {MAX_FILES}",
                           where)
    seen: dict[str, None] = {}
    for i, item in enumerate(value):
        seen.setdefault(clean_path(item, f"{where}[{i}]"))
    return tuple(seen)


def clean_path(item: Any, where: str) -> str:
    """A file path relative to a tier's folder, refused if it could leave the folder
    (``..``), is empty, or holds control characters."""
    if not isinstance(item, str):
        raise EventInvalid("a path must be a string", where)
    path = item.strip().lstrip("/")
    if not path or path.endswith("/"):
        raise EventInvalid(f"{item!r} is not a file path", where)
    if _CONTROL.search(path):
        raise EventInvalid(f"{item!r} holds a control character", where)
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise EventInvalid(f"{item!r}: a path may not hold empty, '.' or '..' parts",
                           where)
    return posixpath.normpath(path)
