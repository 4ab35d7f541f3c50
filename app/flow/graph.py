"""From goal functions to a plan: the DAG their ``Depends`` defaults make, checked.

Built once, when the ``Workflow`` is made: the signatures are read, each function (and
each ``Map``) becomes one node however many depend on it, a cycle is refused with its
path, and names are checked unique (they name the steps in states, errors and the
workflow document). The nodes come out in a topological order (dependencies first, in
the order the goals and their parameters name them), which is also the order a run
starts them in. Nothing here runs anything.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from chordflow.flow.errors import CycleError, FlowError, NotImportable
from chordflow.flow.markers import Dependency, Mapped
from chordflow.flow.options import StepOptions, options_of

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@dataclass(slots=True, eq=False)
class Node:
    """One step: a function (or a ``Map`` of one) and how to call it."""

    index: int
    name: str
    fn: Callable[..., Any]
    options: StepOptions
    is_async: bool
    #: (parameter, node index) for each ``Depends``/``Map`` parameter, in signature order.
    deps: tuple[tuple[str, int], ...]
    #: The distinct nodes this one waits for (``deps`` and a Map's ``over``).
    parents: tuple[int, ...]
    #: Plain positional parameters: filled from ``entry_points`` (or a Map's element).
    positional: tuple[str, ...]
    #: How many of ``positional`` have no default.
    required: int
    #: The function takes ``*args``: any number of entry-point arguments.
    varargs: bool
    #: A Map: the node whose result it maps over, or a literal list.
    over: int | None = None
    literal_over: list[Any] | None = None
    #: For a callable ``when``: the dependency parameters it is called with.
    when_params: tuple[str, ...] = ()
    #: For a ``when`` condition string: the parsed condition.
    condition: Any = None

    @property
    def is_map(self) -> bool:
        return self.over is not None or self.literal_over is not None


@dataclass(slots=True)
class Graph:
    nodes: list[Node]
    goals: list[int]
    by_name: dict[str, Node]
    #: A function (or ``Map``) to its node's index.
    index: dict[Hashable, int]

    def find(self, target: Any) -> Node | None:
        """The node of a function, a ``Map`` or a step name."""
        if isinstance(target, str):
            return self.by_name.get(target)
        try:
            i = self.index.get(key_of(target))
        except TypeError:  # unhashable: no node
            return None
        return None if i is None else self.nodes[i]


def describe(fn: Callable[..., Any]) -> str:
    """``module.qualname``: how errors name a function."""
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def key_of(target: Callable[..., Any] | Mapped) -> Hashable:
    if isinstance(target, Mapped):
        over = target.over.fn if isinstance(target.over, Dependency) else id(target.over)
        return ("map", target.fn, over, target.name)
    return target


@dataclass(slots=True)
class _Info:
    """A function's signature, read once."""

    fn: Callable[..., Any]
    mapped: Mapped | None
    name: str
    options: StepOptions
    deps: list[tuple[str, Callable[..., Any] | Mapped]]
    positional: tuple[str, ...]
    required: int
    varargs: bool


def _analyse(target: Callable[..., Any] | Mapped) -> _Info:
    mapped = target if isinstance(target, Mapped) else None
    fn = mapped.fn if mapped else target
    if not callable(fn):
        raise FlowError(f"a workflow's goals are functions or Map(...), not {fn!r}")
    options = options_of(fn)
    name = (mapped.name if mapped and mapped.name else None) or options.name \
        or getattr(fn, "__name__", None) or type(fn).__name__
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise FlowError(f"step '{name}': cannot read the signature of {describe(fn)}: "
                        f"{exc}") from None
    deps: list[tuple[str, Callable[..., Any] | Mapped]] = []
    positional: list[str] = []
    required = 0
    varargs = False
    for param in signature.parameters.values():
        default = param.default
        if isinstance(default, Dependency):
            deps.append((param.name, default.fn))
        elif isinstance(default, Mapped):
            deps.append((param.name, default))
        elif param.kind is inspect.Parameter.VAR_POSITIONAL:
            varargs = True
        elif param.kind in _POSITIONAL and not deps:
            # After a Depends parameter, a positional argument would land on it: such a
            # parameter keeps its default.
            positional.append(param.name)
            required += default is inspect.Parameter.empty
        elif param.kind is inspect.Parameter.KEYWORD_ONLY and default is inspect.Parameter.empty:
            raise FlowError(f"step '{name}': keyword-only parameter '{param.name}' has no "
                            "default and is not Depends(...): nothing could give it a value")
    if any(p.kind is inspect.Parameter.POSITIONAL_ONLY and p.name in dict(deps)
           for p in signature.parameters.values()):
        raise FlowError(f"step '{name}': a Depends parameter cannot be positional-only")
    if mapped is not None:
        if not positional:
            raise FlowError(f"step '{name}': Map({fn.__name__}, ...) needs a first "
                            "positional parameter to receive each element")
        if required > 1:
            raise FlowError(f"step '{name}': Map passes one element; parameter "
                            f"'{positional[1]}' has no default")
        if isinstance(mapped.over, Dependency):
            deps.append(("", mapped.over.fn))  # the list it maps over: a parent, no param
    return _Info(fn, mapped, name, options, deps, tuple(positional), required, varargs)


def build(goals: Sequence[Callable[..., Any] | Mapped]) -> Graph:
    """The plan of ``goals``: every node they reach, dependencies first."""
    if not goals:
        raise FlowError("a Workflow needs at least one goal function")
    nodes: list[Node] = []
    index: dict[Hashable, int] = {}
    visiting: dict[Hashable, int] = {}  # key -> its position on the path
    path: list[str] = []
    goal_indexes: list[int] = []
    for goal in goals:
        root = key_of(goal)
        if root not in index:
            _visit(goal, root, nodes, index, visiting, path)
        goal_indexes.append(index[root])
    by_name: dict[str, Node] = {}
    for node in nodes:
        other = by_name.setdefault(node.name, node)
        if other is not node:
            raise FlowError(f"two steps are named '{node.name}' ({describe(other.fn)} and "
                            f"{describe(node.fn)}): give one @step(name=...)")
    for node in nodes:
        _check_when(node, nodes)
    return Graph(nodes, goal_indexes, by_name, index)


def _visit(goal: Callable[..., Any] | Mapped, root: Hashable, nodes: list[Node],
           index: dict[Hashable, int], visiting: dict[Hashable, int], path: list[str]) -> None:
    """Depth first without recursion (a 10,000-step chain is no deeper than one step)."""
    info = _analyse(goal)
    stack: list[tuple[Hashable, _Info, Iterator[tuple[str, Any]]]] = [
        (root, info, iter(info.deps))]
    visiting[root] = 0
    path.append(info.name)
    while stack:
        key, info, children = stack[-1]
        for _, child in children:
            child_key = key_of(child)
            if child_key in index:
                continue
            if child_key in visiting:
                raise CycleError([*path[visiting[child_key]:], path[visiting[child_key]]])
            child_info = _analyse(child)
            visiting[child_key] = len(path)
            path.append(child_info.name)
            stack.append((child_key, child_info, iter(child_info.deps)))
            break
        else:
            stack.pop()
            path.pop()
            del visiting[key]
            index[key] = len(nodes)
            nodes.append(_node(len(nodes), info, index))


def _node(i: int, info: _Info, index: dict[Hashable, int]) -> Node:
    deps = tuple((param, index[key_of(target)]) for param, target in info.deps if param)
    parents = tuple(dict.fromkeys(index[key_of(target)] for _, target in info.deps))
    over = literal = None
    if info.mapped is not None:
        if isinstance(info.mapped.over, Dependency):
            over = index[key_of(info.mapped.over.fn)]
        else:
            literal = info.mapped.over
    return Node(i, info.name, info.fn, info.options, inspect.iscoroutinefunction(info.fn),
                deps, parents, info.positional, info.required, info.varargs, over, literal)


def _check_when(node: Node, nodes: list[Node]) -> None:
    when = node.options.when
    if when is None:
        return
    params = tuple(p for p, _ in node.deps)
    if callable(when):
        try:
            signature = inspect.signature(when)
        except (TypeError, ValueError):
            node.when_params = params
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
            node.when_params = params
            return
        named = tuple(signature.parameters)
        unknown = [p for p in named if p not in params]
        if unknown:
            raise FlowError(f"step '{node.name}': when= names '{unknown[0]}', which is not "
                            f"one of its dependencies ({', '.join(params) or 'none'})")
        node.when_params = named
        return
    from chordflow.errors import ConditionError
    from chordflow.workflow.conditions import parse_condition

    try:
        node.condition = parse_condition(when)
    except ConditionError as exc:
        raise FlowError(f"step '{node.name}': when: {exc}") from None
    parents = {nodes[p].name for p in node.parents}
    for ref in node.condition.references():
        if ref.step is None or ref.step not in parents:
            raise FlowError(f"step '{node.name}': when: '${{{ref.text}}}' must read one of "
                            f"its dependencies (${{steps.NAME.outputs.result}}, NAME one of "
                            f"{', '.join(sorted(parents)) or 'none'})")


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def import_path(fn: Callable[..., Any], what: str = "function") -> str:
    """``package.module:qualname`` by which a worker imports ``fn``; NotImportable,
    saying why and what to do, when that would not give back this very function."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    shown = describe(fn)
    if not module or not qualname or not _IDENTIFIER.fullmatch(qualname):
        raise NotImportable(f"{what} {shown} is not importable by path (a lambda, or "
                            "defined inside another function): workers import functions by "
                            "'package.module:name'; define it at the top level of a module")
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is None or not spec.name or spec.name == "__main__":
            raise NotImportable(f"{what} {qualname} is defined in the script being run "
                                "(__main__), which workers cannot import: move it into a "
                                "module (or run the script with python -m package.module)")
        found: Any = main
        module = spec.name
    else:
        try:
            found = importlib.import_module(module)
        except ImportError as exc:
            raise NotImportable(f"{what} {shown}: cannot import '{module}': {exc}") from None
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not fn and getattr(found, "__wrapped__", None) is not fn:
        raise NotImportable(f"{what} {shown}: '{module}:{qualname}' is not this function "
                            "(redefined, or decorated without functools.wraps)")
    return f"{module}:{qualname}"
