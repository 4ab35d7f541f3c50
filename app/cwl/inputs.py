"""A CWL workflow step's input object, from its sources: plain functions, no I/O but
reading a ``loadContents`` file.

The order is the specification's (CWL v1.2, WorkflowStepInput): each input's sources
are merged (``linkMerge``, ``merge_nested`` by default when ``source`` is a list) and
picked (``pickValue``); a null takes the input's ``default``; the step is scattered;
then each job's ``valueFrom`` are evaluated against the inputs as they were before any
``valueFrom`` (none sees another's result), and ``when`` against the result.
Expressions are evaluated by cwl-utils (``cwl_utils.expression.do_eval``: parameter
references in Python, JavaScript with Node.js where ``InlineJavascriptRequirement`` is
given).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

#: Bytes of a file ``loadContents`` reads (the specification's limit).
CONTENTS_LIMIT = 64 * 1024


class StepInputError(ValueError):
    """A step's inputs that do not fit its declaration (named: step and input)."""


def merge(values: Sequence[Any], link_merge: str | None, is_list: bool) -> Any:
    """The value of one input from its sources' values: as cwltool does, a ``source``
    list of one item without ``linkMerge`` is that item's value, unwrapped (so it needs
    no MultipleInputFeatureRequirement); several are ``merge_nested`` by default."""
    if link_merge is None and (not is_list or len(values) <= 1):
        return values[0] if values else None
    if link_merge == "merge_flattened":
        flat: list[Any] = []
        for value in values:
            flat.extend(value if isinstance(value, list) else [value])
        return flat
    return list(values)


def pick(value: Any, method: str | None, where: str) -> Any:
    if method is None or not isinstance(value, list):
        return value  # cwltool picks among a list only (one source's value stays)
    present = [v for v in value if v is not None]
    if method == "all_non_null":
        return present
    if method == "first_non_null":
        if not present:
            raise StepInputError(f"{where}: pickValue first_non_null found only nulls")
        return present[0]
    if method == "the_only_non_null":
        if len(present) != 1:
            raise StepInputError(f"{where}: pickValue the_only_non_null found "
                                 f"{len(present)} non-null values")
        return present[0]
    raise StepInputError(f"{where}: unknown pickValue '{method}'")


def scatter(job: Mapping[str, Any], names: Sequence[str], method: str | None,
            where: str) -> tuple[list[dict[str, Any]], list[int]]:
    """The jobs of a scattered step, and the shape its outputs take: ``[n]`` for
    dotproduct and flat_crossproduct (``[n*m]``), ``[n, m]`` for nested_crossproduct."""
    lists = []
    for name in names:
        value = job.get(name)
        if not isinstance(value, list):
            raise StepInputError(f"{where}: scatter input '{name}' is not an array")
        lists.append(value)
    if len(names) == 1 or method in (None, "dotproduct"):
        lengths = {len(v) for v in lists}
        if len(lengths) > 1:
            raise StepInputError(f"{where}: dotproduct scatter over arrays of different "
                                 f"lengths {sorted(lengths)}")
        count = lists[0].__len__() if lists else 0
        return [{**job, **{n: v[i] for n, v in zip(names, lists, strict=True)}}
                for i in range(count)], [count]
    jobs = [{**job, **dict(zip(names, combo, strict=True))}
            for combo in itertools.product(*lists)]
    if method == "flat_crossproduct":
        return jobs, [len(jobs)]
    if method == "nested_crossproduct":
        return jobs, [len(v) for v in lists]
    raise StepInputError(f"{where}: unknown scatterMethod '{method}'")


def nest(flat: list[Any], shape: Sequence[int]) -> list[Any]:
    """A scattered step's flat list of results in its scatter's shape."""
    if len(shape) <= 1:
        return list(flat)
    size = len(flat) // shape[0] if shape[0] else 0
    return [nest(flat[i * size:(i + 1) * size], shape[1:]) for i in range(shape[0])]


def load_contents(value: Any) -> Any:
    """A File with its first 64 KiB as ``contents`` (an array: each File's)."""
    if isinstance(value, list):
        return [load_contents(v) for v in value]
    if isinstance(value, dict) and value.get("class") == "File" and "contents" not in value:
        path = value.get("path") or _path(value.get("location", ""))
        if path:
            with open(path, "rb") as f:
                return {**value, "contents": f.read(CONTENTS_LIMIT).decode("utf-8",
                                                                           "replace")}
    return value


def _path(location: str) -> str:
    parts = urlsplit(location)
    if parts.scheme in ("", "file"):
        return unquote(parts.path)
    return ""


def evaluate(expression: Any, inputs: Mapping[str, Any], requirements: list[dict[str, Any]],
             context: Any = None, cwl_version: str = "v1.2") -> Any:
    """A ``valueFrom`` or ``when``: parameter references, or JavaScript with
    ``InlineJavascriptRequirement`` (Node.js), through cwl-utils."""
    from cwl_utils.expression import do_eval  # loaded by the steps that need it only

    reqs: Any = requirements  # cwl-utils types them as its own JSON values
    return do_eval(expression, dict(inputs), reqs, None, None, {}, context=context,
                   cwlVersion=cwl_version)


def value_from(job: Mapping[str, Any], spec: Mapping[str, Mapping[str, Any]],
               requirements: list[dict[str, Any]]) -> dict[str, Any]:
    """Each input's ``valueFrom`` (``self``: its value), against the inputs as they
    were before any."""
    before = dict(job)
    after = dict(job)
    for name, declared in spec.items():
        if declared.get("valueFrom") is not None:
            after[name] = evaluate(declared["valueFrom"], before, requirements,
                                   context=before.get(name))
    return after


def is_true(when: Any, job: Mapping[str, Any], requirements: list[dict[str, Any]],
            where: str) -> bool:
    if when is None:
        return True
    result = evaluate(when, job, requirements)
    if not isinstance(result, bool):
        raise StepInputError(f"{where}: 'when' must be true or false, it was {result!r}")
    return result


def file_path(location: str) -> Path | None:
    text = _path(location)
    return Path(text) if text else None
