"""A CWL step's ``ResourceRequirement``: recorded with the step, and its queue.

cwltool honours the requirement inside the process (``$(runtime.cores)``,
``$(runtime.ram)``); what chordflow adds is *where* the step runs. The setting
``CHORDFLOW_CWL_QUEUES`` (``Settings.cwl_queues``) is a list of rules, tried in order::

    [{"queue": "cwl-big", "coresMin": 8}, {"queue": "cwl-highmem", "ramMin": 65536}]

A step goes to the queue of the first rule whose every threshold its requirement
reaches (``coresMin`` in cores, ``ramMin`` in MiB, as in CWL); a step no rule matches,
or whose minimum is an expression (known only once its inputs are), stays on the
default queue. Either way the step's ``description`` says what it asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

RESOURCE = "ResourceRequirement"
#: The specification's defaults where neither a minimum nor a maximum is given.
DEFAULTS = {"cores": 1, "ram": 256}


class QueueRuleError(ValueError):
    """A ``CHORDFLOW_CWL_QUEUES`` rule that cannot be applied."""


def requirement(process: Mapping[str, Any], requirements: Sequence[Mapping[str, Any]],
                hints: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ResourceRequirement in force for a process run by a step: the process's own
    requirement, else the step's or workflow's (``requirements``, most specific
    last), else the same order among hints; None without any."""
    for entries in (process.get("requirements") or (), list(reversed(requirements)),
                    process.get("hints") or (), list(reversed(hints))):
        for entry in entries:
            if isinstance(entry, Mapping) and entry.get("class") == RESOURCE:
                return dict(entry)
    return None


def minimums(req: Mapping[str, Any]) -> dict[str, Any]:
    """``coresMin`` and ``ramMin`` (a maximum alone is also the minimum, as the
    specification says); a value may be an expression (a string)."""
    out: dict[str, Any] = {}
    for name in ("cores", "ram"):
        low, high = req.get(f"{name}Min"), req.get(f"{name}Max")
        out[f"{name}Min"] = low if low is not None else high if high is not None \
            else DEFAULTS[name]
    return out


def queue_for(wanted: Mapping[str, Any], rules: Sequence[Mapping[str, Any]]) -> str | None:
    """The queue of the first rule whose thresholds ``wanted`` reaches, else None."""
    for rule in rules:
        thresholds = {k: v for k, v in rule.items() if k in ("coresMin", "ramMin")}
        if not thresholds:
            raise QueueRuleError(f"CHORDFLOW_CWL_QUEUES rule {dict(rule)}: it names "
                                 "neither coresMin nor ramMin")
        if all(isinstance(wanted.get(k), int | float) and not isinstance(wanted.get(k), bool)
               and wanted[k] >= v for k, v in thresholds.items()):
            return str(rule["queue"])
    return None


def check_rules(rules: Sequence[Any]) -> list[dict[str, Any]]:
    """The rules, each a mapping with a ``queue`` and numeric thresholds."""
    out = []
    for rule in rules:
        if not isinstance(rule, Mapping) or not isinstance(rule.get("queue"), str) \
                or not rule["queue"]:
            raise QueueRuleError(f"CHORDFLOW_CWL_QUEUES: {rule!r} is not "
                                 '{"queue": NAME, "coresMin": N, "ramMin": MiB}')
        unknown = set(rule) - {"queue", "coresMin", "ramMin"}
        if unknown:
            raise QueueRuleError(f"CHORDFLOW_CWL_QUEUES rule {dict(rule)}: unknown "
                                 f"{sorted(unknown)}")
        for key in ("coresMin", "ramMin"):
            if key in rule and (isinstance(rule[key], bool)
                                or not isinstance(rule[key], int | float)):
                raise QueueRuleError(f"CHORDFLOW_CWL_QUEUES rule {dict(rule)}: {key} "
                                     "must be a number")
        if not {"coresMin", "ramMin"} & set(rule):
            raise QueueRuleError(f"CHORDFLOW_CWL_QUEUES rule {dict(rule)}: it names "
                                 "neither coresMin nor ramMin")
        out.append(dict(rule))
    return out


def routing(process: Mapping[str, Any], requirements: Sequence[Mapping[str, Any]],
            hints: Sequence[Mapping[str, Any]], rules: Sequence[Mapping[str, Any]]
            ) -> dict[str, Any]:
    """What a chordflow step gets of its ResourceRequirement: ``queue`` (where a rule
    matched) and a ``description`` recording the requirement; {} without one."""
    req = requirement(process, requirements, hints)
    if req is None:
        return {}
    wanted = minimums(req)
    queue = queue_for(wanted, rules)
    said = ", ".join(f"{k} {v if isinstance(v, int | float) else 'from an expression'}"
                     for k, v in wanted.items())
    out: dict[str, Any] = {"description": f"ResourceRequirement: {said}"
                           + (f" (queue {queue})" if queue else "")}
    if queue:
        out["queue"] = queue
    return out
