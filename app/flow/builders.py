"""Typed builders for the workflow format: any YAML workflow, written in Python.

::

    from chordflow.flow.builders import Flow, var

    etl = Flow("etl", variables={"out": "/tmp/out"}, max_parallel=4)
    fetch = etl.step("fetch", "http", "get", params={"url": "http://127.0.0.1:8000/data"},
                     retries=2, timeout=30)
    save = etl.step("save", "file", "write",
                    params={"path": f"{var('out')}/data.json", "data": fetch.output("json")})
    etl.outputs(saved=save.output("path"))
    document = etl.build()        # chordflow.workflow.models.Workflow, validated

Every option of a step is a typed keyword (docs/workflows.md), so a type checker sees
a misspelled option or a wrong type; references are the format's own ``${...}``
strings, made by ``Task.output``, ``var``, ``item`` and ``secret``; ``build()``
validates the whole document with a YAML file's errors (unknown step, module, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chordflow.workflow.models import Workflow as Document


def var(name: str) -> str:
    """``${variables.NAME}``: a workflow variable."""
    return f"${{variables.{name}}}"


def item(path: str = "") -> str:
    """``${item}`` (or ``${item.PATH}``): the element of a ``foreach`` step."""
    return f"${{item.{path}}}" if path else "${item}"


def item_index() -> str:
    """``${item_index}``: the element's position in a ``foreach`` step."""
    return "${item_index}"


def secret(name: str) -> str:
    """``${secrets.NAME}``: a configured secret, resolved on the worker, masked."""
    return f"${{secrets.{name}}}"


@dataclass(frozen=True)
class Task:
    """A step added to a ``Flow``: references to what it produces."""

    name: str

    def output(self, key: str = "") -> str:
        """``${steps.NAME.outputs.KEY}`` (all its outputs without a key)."""
        return f"${{steps.{self.name}.outputs.{key}}}" if key else \
            f"${{steps.{self.name}.outputs}}"

    @property
    def status(self) -> str:
        return f"${{steps.{self.name}.status}}"


@dataclass
class Flow:
    """A workflow document under construction."""

    name: str
    version: str = "1"
    description: str = ""
    variables: dict[str, Any] = field(default_factory=dict)
    max_parallel: int | None = None
    _steps: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _outputs: dict[str, Any] = field(default_factory=dict, repr=False)

    def step(
        self,
        name: str,
        module: str,
        method: str | None = None,
        *,
        params: dict[str, Any] | None = None,
        depends_on: Sequence[Task | str] = (),
        outputs: dict[str, Any] | None = None,
        description: str = "",
        retries: int = 0,
        retry_delay: float = 0.0,
        retry_backoff: float = 1.0,
        timeout: float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        when: str | None = None,
        foreach: str | list[Any] | None = None,
        continue_on_failure: bool = False,
        fail_on_false_status: bool = False,
    ) -> Task:
        """Add a step (``module.method`` called with ``params``) and return it."""
        spec: dict[str, Any] = {"name": name, "module": module}
        if method is not None:
            spec["method"] = method
        given = {"params": params, "outputs": outputs, "description": description,
                 "depends_on": [d.name if isinstance(d, Task) else d for d in depends_on],
                 "retries": retries, "retry_delay": retry_delay,
                 "retry_backoff": retry_backoff, "timeout": timeout, "queue": queue,
                 "priority": priority, "when": when, "foreach": foreach,
                 "continue_on_failure": continue_on_failure,
                 "fail_on_false_status": fail_on_false_status}
        defaults = {"retries": 0, "retry_delay": 0.0, "retry_backoff": 1.0,
                    "continue_on_failure": False, "fail_on_false_status": False}
        for key, value in given.items():
            if value is None or value == "" or value == [] or value == {}:
                continue
            if key in defaults and value == defaults[key]:
                continue
            spec[key] = value
        self._steps.append(spec)
        return Task(name)

    def outputs(self, **values: Any) -> None:
        """Declare the run's outputs (templates rendered when it succeeds)."""
        self._outputs.update(values)

    def to_dict(self) -> dict[str, Any]:
        """The document as data (what ``yaml.safe_dump`` writes as a workflow file)."""
        doc: dict[str, Any] = {"name": self.name, "version": self.version,
                               "steps": [dict(s) for s in self._steps]}
        if self.description:
            doc["description"] = self.description
        if self.variables:
            doc["variables"] = dict(self.variables)
        if self.max_parallel is not None:
            doc["max_parallel"] = self.max_parallel
        if self._outputs:
            doc["outputs"] = dict(self._outputs)
        return doc

    def build(self) -> Document:
        """The validated document; ValidationFailed lists every error by step and field."""
        from chordflow.workflow.loader import load_data

        return load_data(self.to_dict())
