"""Loading a CWL document and its job object: cwltool's loader, which resolves
``$import``/``run:`` files, validates against the v1.2 schema and upgrades v1.0 and
v1.1 documents, then packs everything into one ``$graph`` (cwltool's ``pack``).

A packed document is what chordflow records with the run (so a worker on another host
needs no file of the submitter's) and what each step hands to cwltool.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from chordflow.cwl.values import plain

log = logging.getLogger("chordflow.cwl")


class CwlInvalid(ValueError):
    """A document or job object that does not load or validate."""


class CwlUnsupported(CwlInvalid):
    """A document that needs what this machine cannot give (a container engine):
    the conformance runner's exit 33."""


def pack_document(source: str | Path | Mapping[str, Any], base: str | None = None
                  ) -> dict[str, Any]:
    """The document as one packed ``$graph`` (its main process has the id ``#main``).

    ``source``: a path or URI; or a document already read (a packed one, or one whose
    ``run:`` and ``$import`` are relative to ``base``, a directory or URI).
    """
    from cwltool.context import LoadingContext
    from cwltool.load_tool import fetch_document, make_tool, resolve_and_validate_document
    from cwltool.pack import pack
    from cwltool.workflow import default_make_tool

    context = LoadingContext({"do_update": True, "construct_tool_object": default_make_tool,
                              "disable_js_validation": True})
    try:
        if isinstance(source, Mapping):
            doc = copy.deepcopy(dict(source))
            base_uri = _as_uri(base or os.getcwd(), directory=True)
            context, obj, uri = fetch_document(doc, context)
            context.fetcher_constructor = None
            obj.setdefault("id", urljoin(base_uri, "submitted.cwl"))
            context, uri = resolve_and_validate_document(context, obj, obj["id"])
        else:
            context, obj, uri = fetch_document(_tool_uri(str(source)), context)
            context, uri = resolve_and_validate_document(context, obj, uri)
        make_tool(uri, context)
        packed = pack(context, uri)
    except CwlInvalid:
        raise
    except Exception as exc:  # schema-salad and cwltool raise many kinds, all invalid input
        raise CwlInvalid(f"the CWL document does not load: {_first_lines(str(exc))}") from None
    return normalise(plain(dict(packed)))


def _tool_uri(text: str) -> str:
    """A path or URI, with an optional ``#process`` (``wf.cwl#main``), as a URI."""
    if "://" in text:
        return text
    path, hash_, fragment = text.partition("#")
    return Path(path).resolve().as_uri() + (hash_ + fragment if hash_ else "")


def normalise(packed: dict[str, Any]) -> dict[str, Any]:
    """Always a ``$graph`` with ``#main`` first, and every embedded ``run:`` process
    moved into the graph under an id of its own (``#<step id>/run``)."""
    if "$graph" not in packed:
        main = {k: v for k, v in packed.items() if k not in ("cwlVersion", "$namespaces",
                                                               "$schemas")}
        main.setdefault("id", "#main")
        packed = {k: v for k, v in packed.items() if k in ("cwlVersion", "$namespaces",
                                                           "$schemas")}
        packed["$graph"] = [main]
    graph = packed["$graph"]
    extra: list[dict[str, Any]] = []
    for process in graph:
        _lift_runs(process, extra)
    graph.extend(extra)
    return packed


def _lift_runs(process: dict[str, Any], extra: list[dict[str, Any]]) -> None:
    for step in process.get("steps") or ():
        run = step.get("run")
        if isinstance(run, dict):
            run = dict(run)
            run["id"] = run.get("id") or f"{step['id']}/run"
            step["run"] = run["id"]
            _lift_runs(run, extra)
            extra.append(run)


def process_of(packed: Mapping[str, Any], process_id: str) -> dict[str, Any]:
    for process in packed["$graph"]:
        if process.get("id") == process_id:
            return dict(process)
    raise CwlInvalid(f"the document has no process '{process_id}'")


def read_job(source: str | Path | Mapping[str, Any] | None, base: str | None = None
             ) -> dict[str, Any]:
    """The job object, with every relative File and Directory ``location`` (and
    ``path``) made absolute against the job file's directory (or ``base``)."""
    from ruamel.yaml.error import YAMLError
    from schema_salad.utils import yaml_no_ts

    if source is None:
        return {}
    if isinstance(source, Mapping):
        job = plain(copy.deepcopy(dict(source)))
        where = _as_uri(base or os.getcwd(), directory=True)
    else:
        path = Path(source)
        try:
            # YAML 1.2, as cwltool reads it (``1e-05`` is a float, not a string), its
            # floats as they were written (values.plain).
            job = plain(yaml_no_ts().load(path.read_text()) or {})
        except (OSError, YAMLError) as exc:
            raise CwlInvalid(f"the job object {path} does not load: {exc}") from None
        where = path.resolve().parent.as_uri() + "/"
    if not isinstance(job, dict):
        raise CwlInvalid("the job object must be a mapping of input names to values")
    job.pop("cwl:tool", None)
    return with_file_fields({k: _absolute(v, where) for k, v in job.items()})


def with_file_fields(job: dict[str, Any]) -> dict[str, Any]:
    """Files and Directories with the fields expressions read (``basename``,
    ``nameroot``, ``nameext``, and ``path`` for a local one), as cwltool fills them."""
    from cwltool.process import normalizeFilesDirs
    from schema_salad.exceptions import ValidationException

    try:
        normalizeFilesDirs(job)
    except ValidationException as exc:  # cwltool, which runs the step, says it again
        log.debug("job object left as it is: %s", exc)
    _add_paths(job)
    return job


def _add_paths(value: Any) -> None:
    if isinstance(value, list):
        for v in value:
            _add_paths(v)
    elif isinstance(value, dict):
        if value.get("class") in ("File", "Directory") and "path" not in value:
            location = str(value.get("location") or "")
            if location.startswith("file://"):
                from urllib.parse import unquote

                value["path"] = unquote(urlsplit(location).path)
        for v in value.values():
            _add_paths(v)


def _absolute(value: Any, base: str) -> Any:
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, dict):
        out = {k: _absolute(v, base) for k, v in value.items()}
        if value.get("class") in ("File", "Directory"):
            if "path" in out and "location" not in out:
                out["location"] = out.pop("path")
            location = out.get("location")
            if isinstance(location, str) and not urlsplit(location).scheme:
                out["location"] = urljoin(base, location)
        return out
    return value


def _as_uri(where: str, directory: bool = False) -> str:
    if "://" in where:
        return where if not directory or where.endswith("/") else where + "/"
    uri = Path(where).resolve().as_uri()
    return uri + "/" if directory else uri


def _first_lines(text: str, count: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[:count])


def needs_container(packed: Mapping[str, Any]) -> bool:
    """Does a process *require* a container (a DockerRequirement in ``requirements``;
    in ``hints`` cwltool runs without one where none is available)?"""
    text = json.dumps([p.get("requirements") for p in packed["$graph"]] +
                      [s.get("requirements") for p in packed["$graph"]
                       for s in p.get("steps") or ()])
    return "DockerRequirement" in text


@functools.cache
def container_engine() -> str | None:
    """``docker`` or ``podman`` if one answers on this machine, else None."""
    for engine in ("docker", "podman"):
        exe = shutil.which(engine)
        if exe is None:
            continue
        try:
            done = subprocess.run([exe, "info"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return engine
    return None


def check_supported(packed: Mapping[str, Any]) -> None:
    if needs_container(packed) and container_engine() is None:
        raise CwlUnsupported("the document requires a container (DockerRequirement) and "
                             "neither Docker nor Podman answers on this machine; it is not "
                             "run without one")
