"""A ``Workflow`` as the canonical workflow document.

Each function is a ``python`` step calling ``chordflow.flow.on_worker:call`` with the
function's import path (``target``): a step's parameters reference its dependencies'
``result`` outputs, a ``Map`` is a ``foreach`` step, step options are the document's,
and each function that takes positional arguments (an entry point) reads them from a
variable of its own name (``chordflow run pkg.mod:workflow -e create_person='["Joe"]'``).
The goals' results are the run's ``outputs``, by step name.

What a document cannot hold is refused here, naming the step: a function that is not
importable by path, a ``when=`` that is a Python function (give a condition string).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from chordflow.flow import serializers
from chordflow.flow.errors import FlowError
from chordflow.flow.graph import Node, import_path

if TYPE_CHECKING:
    from chordflow.flow.workflow import Workflow
    from chordflow.workflow.models import Workflow as Document

CALL = "chordflow.flow.on_worker:call"


def to_document(workflow: Workflow, entry: dict[int, tuple[Any, ...]]) -> Document:
    from chordflow.workflow.loader import load_data

    nodes = workflow.graph.nodes
    variables: dict[str, Any] = {}
    steps = []
    for node in nodes:
        if node.positional and not node.is_map:
            variables[node.name] = list(entry.get(node.index, ()))
        steps.append(_step(node, nodes))
    outputs = {nodes[g].name: _result_ref(nodes[g]) for g in workflow.graph.goals}
    return load_data({"name": workflow.name, "variables": variables, "steps": steps,
                      "outputs": outputs,
                      "description": f"chordflow.flow workflow {workflow.name}"})


def _result_ref(node: Node) -> str:
    return f"${{steps.{node.name}.outputs.{'items' if node.is_map else 'result'}}}"


def _step(node: Node, nodes: list[Node]) -> dict[str, Any]:
    options = node.options
    if callable(options.when):
        raise FlowError(f"step '{node.name}': when= is a Python function, which a "
                        "workflow document cannot hold: give a condition string, such as "
                        "'${steps.NAME.outputs.result} > 3', to run it on workers")
    if options.serializer != serializers.JSON:
        try:
            serializers.resolve(options.serializer)
        except ValueError as exc:
            raise FlowError(f"step '{node.name}': {exc}") from None
    call: dict[str, Any] = {"target": import_path(node.fn, f"step '{node.name}':")}
    if node.is_map:
        call["args"] = ["${item}"]
    elif node.positional:
        call["args"] = f"${{variables.{node.name}}}"
    kwargs: dict[str, Any] = {}
    decode: dict[str, str] = {}
    gather: list[str] = []
    for param, d in node.deps:
        dep = nodes[d]
        kwargs[param] = _result_ref(dep)
        if dep.is_map:
            gather.append(param)
        if dep.options.serializer != serializers.JSON:
            decode[param] = dep.options.serializer
    if kwargs:
        call["kwargs"] = kwargs
    if options.serializer != serializers.JSON:
        call["serializer"] = options.serializer
    if decode:
        call["decode"] = decode
    if gather:
        call["gather"] = gather
    step: dict[str, Any] = {"name": node.name, "module": "python",
                            "params": {"function": CALL, "kwargs": call}}
    doc = inspect.getdoc(node.fn)
    if doc:
        step["description"] = doc.strip().splitlines()[0][:500]
    # Parents that pass no parameter (a Map's list, a dependency only when= reads).
    referenced = {d for _, d in node.deps}
    extra = [nodes[p].name for p in node.parents if p not in referenced and p != node.over]
    if extra:
        step["depends_on"] = extra
    if node.over is not None:
        source = nodes[node.over]
        if source.options.serializer != serializers.JSON or source.is_map:
            raise FlowError(f"step '{node.name}': Map over '{source.name}' needs its "
                            "result to be a JSON list (no serializer, not a Map)")
        step["foreach"] = _result_ref(source)
    elif node.literal_over is not None:
        step["foreach"] = list(node.literal_over)
    for field, default in (("retries", 0), ("retry_delay", 0.0), ("retry_backoff", 1.0),
                           ("timeout", None), ("queue", None), ("priority", None),
                           ("when", None), ("continue_on_failure", False)):
        value = getattr(options, field)
        if value != default:
            step[field] = value
    return step
