"""Compiling a workflow into a plan: everything checkable before a step runs.

``compile_plan`` validates a :class:`~chordflow.workflow.models.Workflow` against the module
registry and returns an immutable :class:`Plan`, or raises ``ValidationFailed`` with
every problem, each naming its step and field: unknown modules, methods and params,
malformed or dangling references, references used where they mean nothing (``${item}``
outside ``foreach``), ``when`` expressions that do not parse, duplicate names, cycles.

A step's dependencies are its ``depends_on`` plus every step its templates read. The
plan keeps, per step, its parents and children (what the engine's counters need) and
the steps it reads (what the engine fetches to render its params).
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
from chordflow.connections.checks import connection_problems
from chordflow.errors import ConditionError, ValidationFailed, WorkflowError
from chordflow.modules.registry import MethodSpec, ModuleError, Registry
from chordflow.workflow import limits
from chordflow.workflow.conditions import Condition, parse_condition
from chordflow.workflow.models import Step, Workflow
from chordflow.workflow.references import STEP_ATTRIBUTES, Reference
from chordflow.workflow.templating import (
    Literal,
    Node,
    Ref,
    TemplateSyntaxError,
    compile_params,
    compile_template,
)

#: Which reference roots each kind of field may use.
PARAM_ROOTS = frozenset({"variables", "steps", "run", "secrets"})
FOREACH_ROOTS = frozenset({"item", "item_index"})
OUTPUT_ROOTS = frozenset({"params", "outputs"})


@dataclass(frozen=True, slots=True)
class StepPlan:
    name: str
    step: Step
    method: MethodSpec
    params: Node
    outputs: Node | None
    when: Condition | None
    foreach: Node | None
    parents: tuple[str, ...]
    children: tuple[str, ...]
    #: Steps whose records the templates of this step read.
    reads: tuple[str, ...]
    #: Secrets its templates reference: all of them that its module gets.
    secrets: tuple[str, ...] = ()
    #: ``{"stage_in": [...], "stage_out": [...]}`` compiled, rendered with the params
    #: (app/data/staging.py runs them); None for a step that stages nothing.
    staging: Node | None = None

    @property
    def module(self) -> str:
        return self.step.module

    @property
    def method_name(self) -> str:
        return self.method.name


@dataclass(frozen=True)
class Plan:
    workflow: Workflow
    steps: dict[str, StepPlan]
    #: Step names in a topological order (parents before children).
    order: tuple[str, ...]
    roots: tuple[str, ...]
    #: Steps without children. The run is finished when they all are (every other step
    #: is an ancestor of one), so only they are counted for it.
    leaves: tuple[str, ...]
    outputs: Node
    #: Steps the workflow outputs read.
    output_reads: tuple[str, ...]
    digest: str
    graph: nx.DiGraph = field(repr=False)

    @property
    def name(self) -> str:
        return self.workflow.name

    def effective_variables(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        """The workflow's variables with a run's overrides; unknown names are an error."""
        variables = dict(self.workflow.variables)
        if overrides:
            unknown = sorted(set(overrides) - set(variables))
            if unknown:
                declared = ", ".join(sorted(variables)) or "none"
                raise ValidationFailed(
                    WorkflowError(
                        f"unknown variable '{name}' (declared: {declared}); "
                        "declare it under 'variables' to set it per run",
                        field=f"variables.{name}",
                    )
                    for name in unknown
                )
            found = limits.value_problem(dict(overrides), limits.current().nesting)
            if found is not None:
                where, what = found
                raise ValidationFailed([WorkflowError(
                    what, field=f"variables.{where}" if where else "variables")])
            variables.update(overrides)
        return variables


@dataclass
class _Scope:
    """What checking a reference needs: the workflow, its step names, the secrets that
    exist (None: not known here, not checked), and where errors and the secrets a step
    uses are collected."""

    workflow: Workflow
    names: set[str]
    errors: list[WorkflowError]
    secrets: frozenset[str] | None
    used_secrets: set[str] = field(default_factory=set)


def compile_plan(workflow: Workflow, registry: Registry,
                 secrets: Collection[str] | None = None) -> Plan:
    """Validate ``workflow`` completely and compile it; raise ValidationFailed.

    ``secrets``: the names of the secrets that exist. A reference to any other is an
    error now rather than when the step runs (the error never lists the names that
    do exist). None: not known (the plan of a run recorded elsewhere).
    """
    # Compiling allocates tens of thousands of long-lived objects and no garbage; the
    # cyclic collector would rescan the growing heap again and again (a third of the
    # time at 10,000 steps), so it is paused while the plan is built.
    paused = gc.isenabled()
    gc.disable()
    try:
        return _compile(workflow, registry,
                        frozenset(secrets) if secrets is not None else None)
    finally:
        if paused:
            gc.enable()


def _compile(workflow: Workflow, registry: Registry, secrets: frozenset[str] | None) -> Plan:
    errors: list[WorkflowError] = []
    names: set[str] = set()
    scope = _Scope(workflow, names, errors, secrets)
    for step in workflow.steps:
        if step.name in names:
            errors.append(WorkflowError("duplicate step name", step=step.name, field="name"))
        names.add(step.name)

    compiled: dict[str, dict[str, Any]] = {}
    for step in workflow.steps:
        if step.name in compiled:
            continue
        compiled[step.name] = _compile_step(step, scope, registry)

    outputs, output_refs = _compile_field(workflow.outputs, "outputs", None, errors)
    output_reads = _check_refs(output_refs, PARAM_ROOTS, None, "outputs", scope)

    graph = nx.DiGraph()
    graph.add_nodes_from(compiled)
    parents: dict[str, list[str]] = {name: [] for name in compiled}
    children: dict[str, list[str]] = {name: [] for name in compiled}
    for name, c in compiled.items():
        for parent in sorted(c["parents"]):  # a dict: parent -> the field making the edge
            if parent in compiled:
                graph.add_edge(parent, name)
                parents[name].append(parent)
                children[parent].append(name)
    order: tuple[str, ...] = ()
    if not errors:
        try:
            order = tuple(nx.topological_sort(graph))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(graph)
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            parent, child = cycle[-1]  # the edge that closes the cycle, at its first step
            errors.append(WorkflowError(f"dependency cycle: {path}", step=child,
                                        field=compiled[child]["parents"][parent]))
    if errors:
        raise ValidationFailed(errors)

    steps = {
        name: StepPlan(
            name=name,
            step=c["step"],
            method=c["method"],
            params=c["params"],
            outputs=c["outputs"],
            when=c["when"],
            foreach=c["foreach"],
            parents=tuple(parents[name]),
            children=tuple(children[name]),
            reads=tuple(sorted(c["reads"])),
            secrets=c["secrets"],
            staging=c["staging"],
        )
        for name, c in compiled.items()
    }
    return Plan(
        workflow=workflow,
        steps=steps,
        order=order,
        roots=tuple(n for n in order if not steps[n].parents),
        leaves=tuple(n for n in order if not steps[n].children),
        outputs=outputs,
        output_reads=tuple(sorted(output_reads)),
        digest=workflow_digest(workflow),
        graph=graph,
    )


def workflow_digest(workflow: Workflow) -> str:
    """A content hash: the same definition always compiles to the same plan."""
    text = json.dumps(workflow.model_dump(mode="json", exclude_defaults=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _compile_step(step: Step, scope: _Scope, registry: Registry) -> dict[str, Any]:
    names, errors = scope.names, scope.errors
    scope.used_secrets = set()

    def err(message: str, fld: str) -> None:
        errors.append(WorkflowError(message, step=step.name, field=fld))

    method: MethodSpec | None = None
    try:
        module = registry.module(step.module)
        try:
            method = module.get(step.method)
        except ModuleError as exc:
            err(str(exc), "method")
    except ModuleError as exc:
        err(str(exc), "module")
    if method is not None:
        for fld, message in method.check_names(step.params):
            err(message, f"params.{fld}")

    in_foreach = step.foreach is not None
    param_roots = PARAM_ROOTS | (FOREACH_ROOTS if in_foreach else frozenset())
    #: step read -> the first field that reads it (named if the edge closes a cycle)
    reads: dict[str, str] = {}

    # The params a method declares as shell code insert references shell-quoted.
    params, refs = _compile_field(_with_context(step, method, scope.workflow), "params",
                                  step.name, errors,
                                  shell_params=method.shell_params if method else ())
    _merge(reads, _check_refs(refs, param_roots, step, "params", scope))
    if method is not None:
        for fld, message in method.check_literals(_literal_params(step.params, refs)):
            err(message, f"params.{fld}")
        for fld, message in _sql_references(method, refs):
            err(message, fld)
    if step.connection is not None and method is not None:  # (else: an unknown module)
        types = registry.module(step.module).connection_types
        for fld, message in connection_problems(step.connection, step.module, types):
            err(message, fld)

    staging = _compile_staging(step, param_roots, scope, reads)

    outputs: Node | None = None
    if step.outputs:
        outputs, refs = _compile_field(step.outputs, "outputs", step.name, errors)
        _merge(reads, _check_refs(refs, param_roots | OUTPUT_ROOTS, step, "outputs", scope))

    when: Condition | None = None
    if step.when is not None:
        try:
            when = parse_condition(step.when)
        except ConditionError as exc:
            err(f"cannot parse condition: {exc}", "when")
        else:
            _merge(reads, _check_refs(when.references(), PARAM_ROOTS, step, "when", scope))

    foreach: Node | None = None
    if step.foreach is not None:
        node, refs = _compile_field(step.foreach, "foreach", step.name, errors)
        if isinstance(step.foreach, str) and not isinstance(node, Ref | Literal):
            err("must be a single reference such as '${steps.list.outputs.items}', "
                "or a list", "foreach")
        elif isinstance(node, Literal) and not isinstance(node.value, list):
            err("must be a single reference such as '${steps.list.outputs.items}', "
                "or a list", "foreach")
        else:
            foreach = node
        # Not secrets: each element is recorded with its item, in clear.
        _merge(reads, _check_refs(refs, PARAM_ROOTS - {"secrets"}, step, "foreach", scope))

    parents: dict[str, str] = dict(reads)
    for dep in step.depends_on:
        if dep == step.name:
            err("a step cannot depend on itself", "depends_on")
        elif dep not in names:
            err(f"unknown step '{dep}'{_suggest(dep, names)}", "depends_on")
        else:
            parents[dep] = "depends_on"
    return {
        "step": step,
        "method": method,
        "params": params,
        "outputs": outputs,
        "when": when,
        "foreach": foreach,
        "parents": parents,
        "reads": reads,
        "secrets": tuple(sorted(scope.used_secrets)),
        "staging": staging,
    }


def _with_context(step: Step, method: MethodSpec | None,
                  workflow: Workflow) -> dict[str, Any]:
    """``step.params``, plus, for a method that takes the replaced platform's
    ``context`` (``MethodSpec.context_param``), the outputs of the steps listed before
    it by name: its "results so far", read as references (so they are dependencies).
    A step listed earlier that itself waits for this one is left out (no cycle)."""
    if method is None or method.context_param is None:
        return step.params
    earlier: dict[str, str] = {}
    for other in workflow.steps:
        if other.name == step.name:
            break
        if step.name not in other.depends_on:
            earlier[other.name] = "${steps." + other.name + ".outputs}"
    return {**step.params, method.context_param: earlier}


def _compile_staging(step: Step, roots: frozenset[str], scope: _Scope,
                     reads: dict[str, str]) -> Node | None:
    """A step's ``stage_in`` and ``stage_out``, templated like its params (the same
    references, the same dependencies)."""
    if not step.stage_in and not step.stage_out:
        return None
    tiers = None
    for i, entry in enumerate(step.stage_in):
        # A just-in-time tier (CHORDFLOW_JIT_TIERS) must exist here; the worker that
        # reads through it checks again (app/data/jit/reads.py).
        if entry.tier is not None and "${" not in entry.tier:
            if tiers is None:
                from chordflow.config import get_settings

                tiers = set(get_settings().jit_tiers)
            if entry.tier not in tiers:
                known = (f"tiers: {', '.join(sorted(tiers))}" if tiers else
                         "no just-in-time tier is (CHORDFLOW_JIT_TIERS)")
                scope.errors.append(WorkflowError(
                    f"tier '{entry.tier}' is not configured: {known}; remove 'tier' to "
                    "stage through the host cache",
                    step=step.name, field=f"stage_in[{i}].tier"))
    value = {"stage_in": [e.model_dump() for e in step.stage_in],
             "stage_out": [e.model_dump() for e in step.stage_out]}
    node, refs = _compile_field(value, "", step.name, scope.errors)
    _merge(reads, _check_refs(refs, roots, step, "stage_in", scope))
    return node


def _sql_references(method: MethodSpec, refs: Iterable[tuple[str, Reference]]
                    ) -> list[tuple[str, str]]:
    """A reference in SQL text (``sql_params``) would make a value SQL: refused."""
    return [(fld, f"'${{{ref.text}}}': a reference would paste a value into SQL text; "
             "write a placeholder (%s, or %(name)s) and pass the value in params.params")
            for fld, ref in refs
            # The text itself: a reference inside an object (``where: {id: ...}``) is
            # a value, bound like every value.
            if fld.removeprefix("params.") in method.sql_params]


def _literal_params(params: Mapping[str, Any],
                    refs: Iterable[tuple[str, Reference]]) -> dict[str, Any]:
    """The params whose values hold no reference (their field paths, ``params.K`` or
    ``params.K.x``, name none): their values are what the step will receive."""
    templated = {fld.removeprefix("params.").split(".")[0].split("[")[0]
                 for fld, _ in refs}
    return {key: value for key, value in params.items()
            if key not in templated and not _has_template(value)}


def _has_template(value: Any) -> bool:
    """Does ``value`` hold ``${`` anywhere (a reference or an escape, rendered at run
    time: not a literal to check now)?"""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        return any(_has_template(k) or _has_template(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_template(v) for v in value)
    return False


def _compile_field(
    value: Any, fld: str, step: str | None, errors: list[WorkflowError],
    shell_params: Collection[str] = (),
) -> tuple[Node, list[tuple[str, Reference]]]:
    """Compile one field; return the node and its references with their field paths.
    ``shell_params``: the keys of a params mapping whose values are shell code."""
    refs: list[tuple[str, Reference]] = []
    try:
        if shell_params and isinstance(value, Mapping):
            node = compile_params(value, shell_params, fld, refs)
        else:
            node = compile_template(value, fld, refs)
    except TemplateSyntaxError as exc:
        errors.append(WorkflowError(str(exc), step=step, field=exc.where))
        return Literal(None), []
    return node, refs


def _merge(into: dict[str, str], more: dict[str, str]) -> None:
    for name, fld in more.items():
        into.setdefault(name, fld)


def _check_refs(
    refs: Iterable[tuple[str, Reference] | Reference],
    roots: frozenset[str],
    step: Step | None,
    default_field: str,
    scope: _Scope,
) -> dict[str, str]:
    """Check each reference; return the steps they read, with the field reading each."""
    workflow, names, errors = scope.workflow, scope.names, scope.errors
    reads: dict[str, str] = {}
    step_name = step.name if step else None
    for entry in refs:
        fld, ref = entry if isinstance(entry, tuple) else (default_field, entry)

        def err(message: str, fld: str = fld, ref: Reference = ref) -> None:
            errors.append(WorkflowError(f"'${{{ref.text}}}': {message}", step=step_name,
                                        field=fld))

        root = ref.root
        if root not in roots:
            if root in FOREACH_ROOTS and default_field in ("when", "foreach") and \
                    step is not None and step.foreach is not None:
                err(f"'{root}' is not available in '{default_field}', which is evaluated "
                    "once for the whole step, before its elements run")
            else:
                err(_root_hint(root, default_field))
            continue
        if root == "variables":
            if len(ref.path) >= 2 and ref.path[1] not in workflow.variables:
                declared = ", ".join(sorted(workflow.variables)) or "none"
                err(f"unknown variable '{ref.path[1]}' (declared: {declared})")
        elif root == "steps":
            if len(ref.path) < 3:
                err("write '${steps.NAME.outputs.KEY}'")
                continue
            target, attr = str(ref.path[1]), ref.path[2]
            if target not in names:
                err(f"unknown step '{target}'{_suggest(target, names)}")
            elif target == step_name:
                err("a step cannot read itself (use '${outputs.KEY}' in declared outputs)")
            elif attr not in STEP_ATTRIBUTES:
                err(f"unknown step attribute '{attr}' "
                    f"(use one of: {', '.join(sorted(STEP_ATTRIBUTES))})")
            else:
                reads.setdefault(target, fld)
        elif root == "params" and step is not None:
            if len(ref.path) >= 2 and ref.path[1] not in step.params:
                err(f"the step has no param '{ref.path[1]}'")
        elif root == "secrets":
            if len(ref.path) != 2:
                err("name a secret, as in '${secrets.NAME}'")
            elif scope.secrets is not None and str(ref.path[1]) not in scope.secrets:
                err(f"no secret '{ref.path[1]}' is configured (an admin defines secrets: "
                    "CHORDFLOW_SECRETS or CHORDFLOW_SECRETS_DIR)")
            else:
                scope.used_secrets.add(str(ref.path[1]))
        elif root == "run":
            if len(ref.path) != 2 or ref.path[1] not in ("id", "workflow"):
                err("use '${run.id}' or '${run.workflow}'")
    return reads


def _root_hint(root: str, fld: str) -> str:
    if root == "secrets":
        return "secrets cannot be iterated: every element is recorded with its item"
    if root in FOREACH_ROOTS:
        return f"'{root}' is only available in a step with 'foreach'"
    if root in OUTPUT_ROOTS:
        return f"'{root}' is only available in a step's declared 'outputs'"
    return (f"unknown reference root '{root}' in {fld} "
            "(use variables., steps., run., params., outputs., item)")


def _suggest(name: str, names: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(names), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
