"""Templates: parameters with ``${...}`` references, compiled once, rendered per step.

Rules (DESIGN.md, "Workflow format"):

- A string that is exactly one reference keeps the referenced value's type: a list
  stays a list, a number stays a number.
- A reference inside a longer string is formatted into it: strings as they are,
  numbers with ``str``, everything else (dicts, lists, booleans, null) as JSON, so
  ``"n=${x}"`` gives ``n=true`` rather than Python's ``n=True``.
- ``$${`` is a literal ``${``.
- References are found inside nested dicts and lists, at any depth.

Shell code (DESIGN.md, "Security model": a value is never pasted as code). A parameter
a module declares as shell code (``shell_params``, bash's ``cmd``) is compiled with
``shell=True``: each reference in it is inserted so that the shell reads back exactly
its text, ``shlex.quote`` of it where it stands unquoted, escaped inside the author's
``"..."`` or ``'...'`` (app/workflow/shellquote.py), so no variable, step output or
secret can change the command's structure (``echo X=${variables.x}`` with x =
``'; echo INJECTED; '`` prints the value). A string that is exactly one reference is
quoted too: a value is data even when it is the whole command; a list value stays a
list (an argv, run without a shell, needs no quoting).
An author who means a value to be code says so: ``${raw:variables.x}`` is inserted as
it is. ``raw:`` only changes how the value is inserted, and means nothing (so it is an
error) anywhere but in shell code. The elements of a list-form command are arguments,
never shell code.

Compiling separates the work done once per workflow (finding and parsing references,
checking they point somewhere) from the work done once per step run (looking values
up), which keeps rendering a few microseconds per parameter.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from chordflow.errors import ReferenceResolutionError
from chordflow.workflow.references import Reference, parse_reference, walk
from chordflow.workflow.shellquote import Quoting, quotings

_TOKEN_RE = re.compile(r"\$\$\{|\$\{([^{}]*)\}")

#: Looks a reference up; the plan supplies one that knows where each root lives.
Resolver = Callable[[Reference], Any]


class Node:
    """A compiled template value."""

    __slots__ = ()

    def render(self, resolve: Resolver) -> Any:
        raise NotImplementedError

    def references(self) -> Iterator[Reference]:
        return iter(())


@dataclass(frozen=True, slots=True)
class Literal(Node):
    value: Any

    def render(self, resolve: Resolver) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class Ref(Node):
    """A string that is exactly one reference: keeps the value's type."""

    ref: Reference

    def render(self, resolve: Resolver) -> Any:
        return resolve(self.ref)

    def references(self) -> Iterator[Reference]:
        yield self.ref


@dataclass(frozen=True, slots=True)
class Interpolated(Node):
    """A string mixing text and references: always renders to a string."""

    parts: tuple[str | Reference, ...]

    def render(self, resolve: Resolver) -> str:
        out = []
        for part in self.parts:
            out.append(part if isinstance(part, str) else to_text(resolve(part)))
        return "".join(out)

    def references(self) -> Iterator[Reference]:
        for part in self.parts:
            if isinstance(part, Reference):
                yield part


@dataclass(frozen=True, slots=True)
class ShellRef(Node):
    """Shell code that is exactly one reference: the value as one quoted word (a list
    as it is: an argv); ``raw``: the value as it is, code by the author's choice."""

    ref: Reference
    raw: bool = False

    def render(self, resolve: Resolver) -> Any:
        value = resolve(self.ref)
        if self.raw or isinstance(value, list):
            return value
        return shlex.quote(to_text(value))

    def references(self) -> Iterator[Reference]:
        yield self.ref


@dataclass(frozen=True, slots=True)
class ShellInterpolated(Node):
    """Shell code mixing text and references: each reference's text inserted as its
    place in the command needs (``quoting``, one per part, worked out at compile time
    by app/workflow/shellquote.py; None for text)."""

    parts: tuple[str | Reference, ...]
    quoting: tuple[Quoting | None, ...]

    def render(self, resolve: Resolver) -> str:
        out = []
        for part, quoting in zip(self.parts, self.quoting, strict=True):
            if isinstance(part, str) or quoting is None:
                out.append(str(part))
            else:
                out.append(quoting.apply(to_text(resolve(part)), part.text))
        return "".join(out)

    def references(self) -> Iterator[Reference]:
        for part in self.parts:
            if isinstance(part, Reference):
                yield part


@dataclass(frozen=True, slots=True)
class DictNode(Node):
    items: tuple[tuple[str, Node], ...]

    def render(self, resolve: Resolver) -> dict[str, Any]:
        return {key: node.render(resolve) for key, node in self.items}

    def references(self) -> Iterator[Reference]:
        for _, node in self.items:
            yield from node.references()


@dataclass(frozen=True, slots=True)
class ListNode(Node):
    items: tuple[Node, ...]

    def render(self, resolve: Resolver) -> list[Any]:
        return [node.render(resolve) for node in self.items]

    def references(self) -> Iterator[Reference]:
        for node in self.items:
            yield from node.references()


class TemplateSyntaxError(ValueError):
    """A malformed ``${...}``; carries the path of the offending value."""

    def __init__(self, message: str, where: str):
        self.where = where
        super().__init__(message)


def to_text(value: Any) -> str:
    """How a referenced value reads inside a longer string."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, default=str)


FoundRefs = list[tuple[str, Reference]]


def compile_template(value: Any, where: str = "", found: FoundRefs | None = None, *,
                     shell: bool = False) -> Node:
    """Compile a parameter value (any JSON value) into a Node.

    ``where`` is the dotted field path used in error messages (``params.url``); if
    ``found`` is given, each reference is appended to it with the path it sits at.
    ``shell``: the value is shell code when it is a string (see the module's docstring).
    """
    if isinstance(value, str):
        node = _compile_string(value, where, shell)
        if found is not None and not isinstance(node, Literal):
            found.extend((where, ref) for ref in node.references())
        return node
    if isinstance(value, Mapping):
        return compile_params(value, (), where, found)
    if isinstance(value, list | tuple):
        items = tuple(
            compile_template(v, f"{where}[{i}]", found) for i, v in enumerate(value)
        )
        if all(isinstance(n, Literal) for n in items):
            return Literal([n.value for n in items])  # type: ignore[attr-defined]
        return ListNode(items)
    return Literal(value)


def compile_params(params: Mapping[str, Any], shell_params: Collection[str] = (),
                   where: str = "", found: FoundRefs | None = None) -> Node:
    """Compile a mapping (a step's params); the values of the keys in ``shell_params``
    are shell code (``compile_template(shell=True)``), compiled so once per workflow."""
    nodes = tuple(
        (str(k), compile_template(v, f"{where}.{k}" if where else str(k), found,
                                  shell=k in shell_params))
        for k, v in params.items()
    )
    if all(isinstance(n, Literal) for _, n in nodes):
        return Literal({k: n.value for k, n in nodes})  # type: ignore[attr-defined]
    return DictNode(nodes)


#: The marker of a reference meant as shell code: ``${raw:variables.x}``.
RAW = "raw:"


def _compile_string(text: str, where: str, shell: bool = False) -> Node:
    if "${" not in text:
        return Literal(text)
    if _has_unclosed(text):
        raise TemplateSyntaxError(f"unclosed '${{' in {text!r}", where)
    parts: list[str | Reference] = []
    raw: set[int] = set()  # indexes in ``parts`` of the references marked raw
    buf: list[str] = []
    pos = 0
    for m in _TOKEN_RE.finditer(text):
        buf.append(text[pos:m.start()])
        pos = m.end()
        if m.group(0) == "$${":
            buf.append("${")
            continue
        inner = m.group(1).strip()
        is_raw = inner.startswith(RAW)
        if is_raw:
            if not shell:
                raise TemplateSyntaxError(
                    f"'${{{inner}}}': the '{RAW}' marker (insert a value as code) is "
                    "allowed only in parameters that are shell code, such as bash's cmd",
                    where)
            inner = inner[len(RAW):]
        try:
            ref = parse_reference(inner)
        except ValueError as exc:
            raise TemplateSyntaxError(str(exc), where) from None
        if buf and "".join(buf):
            parts.append("".join(buf))
        buf = []
        if is_raw:
            raw.add(len(parts))
        parts.append(ref)
    buf.append(text[pos:])
    tail = "".join(buf)
    if tail:
        parts.append(tail)
    if not any(isinstance(p, Reference) for p in parts):
        return Literal("".join(p for p in parts if isinstance(p, str)))
    if len(parts) == 1:
        if shell:
            return ShellRef(parts[0], 0 in raw)  # type: ignore[arg-type]
        return Ref(parts[0])  # type: ignore[arg-type]
    if shell:
        try:
            quoting = quotings(parts, frozenset(raw))
        except ValueError as exc:
            raise TemplateSyntaxError(str(exc), where) from None
        return ShellInterpolated(tuple(parts), quoting)
    return Interpolated(tuple(parts))


def _has_unclosed(text: str) -> bool:
    stripped = _TOKEN_RE.sub("", text)
    return "${" in stripped


def resolve_in(root: Mapping[str, Any]) -> Resolver:
    """A resolver over one nested mapping: ``{'variables': ..., 'steps': ...}``."""

    def resolve(ref: Reference) -> Any:
        head = str(ref.path[0])
        if head not in root:
            raise ReferenceResolutionError(f"'${{{ref.text}}}': '{head}' is not available here")
        if head == "secrets":  # never say which secrets exist, nor show a value
            secrets = root[head]
            name = ref.path[1] if len(ref.path) == 2 else None
            if not isinstance(name, str) or name not in secrets:
                raise ReferenceResolutionError(
                    f"'${{{ref.text}}}': no such secret is configured on this worker")
            return secrets[name]
        return walk(root[head], ref.path, 1, text=ref.text)

    return resolve
