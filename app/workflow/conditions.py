"""``when`` conditions: a small, safe expression language. Never Python ``eval``.

Grammar (lowest precedence first)::

    expr    := and ("or" and)*
    and     := not ("and" not)*
    not     := "not" not | compare
    compare := operand (("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not in") operand)?
    operand := NUMBER | STRING | "true" | "false" | "null" | ${reference}
             | "[" [operand ("," operand)*] "]" | "(" expr ")"

References keep their type (``${steps.count.outputs.n} > 3`` compares numbers). A bare
operand is tested for truthiness. Comparing values that cannot be ordered (``null < 3``)
is an error, not silently false: a condition that cannot be decided should not decide.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from chordflow.errors import ConditionError, ReferenceResolutionError
from chordflow.workflow import limits
from chordflow.workflow.references import Reference, parse_reference
from chordflow.workflow.templating import Resolver

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<ref>\$\{[^{}]*\})
      | (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|<=|>=|<|>|\(|\)|\[|\]|,)
      | (?P<word>[A-Za-z_]+)
    )""",
    re.VERBOSE,
)

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}
_KEYWORDS = {"true": True, "false": False, "null": None, "none": None}


class Expr:
    __slots__ = ()

    def evaluate(self, resolve: Resolver) -> Any:
        raise NotImplementedError

    def references(self) -> Iterator[Reference]:
        return iter(())


@dataclass(frozen=True, slots=True)
class Const(Expr):
    value: Any

    def evaluate(self, resolve: Resolver) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class RefExpr(Expr):
    ref: Reference

    def evaluate(self, resolve: Resolver) -> Any:
        return resolve(self.ref)

    def references(self) -> Iterator[Reference]:
        yield self.ref


@dataclass(frozen=True, slots=True)
class ListExpr(Expr):
    items: tuple[Expr, ...]

    def evaluate(self, resolve: Resolver) -> Any:
        return [item.evaluate(resolve) for item in self.items]

    def references(self) -> Iterator[Reference]:
        for item in self.items:
            yield from item.references()


@dataclass(frozen=True, slots=True)
class Not(Expr):
    operand: Expr

    def evaluate(self, resolve: Resolver) -> Any:
        return not self.operand.evaluate(resolve)

    def references(self) -> Iterator[Reference]:
        yield from self.operand.references()


@dataclass(frozen=True, slots=True)
class BoolOp(Expr):
    op: str  # "and" | "or"
    operands: tuple[Expr, ...]

    def evaluate(self, resolve: Resolver) -> Any:
        if self.op == "and":
            return all(o.evaluate(resolve) for o in self.operands)
        return any(o.evaluate(resolve) for o in self.operands)

    def references(self) -> Iterator[Reference]:
        for o in self.operands:
            yield from o.references()


@dataclass(frozen=True, slots=True)
class Compare(Expr):
    op: str
    left: Expr
    right: Expr

    def evaluate(self, resolve: Resolver) -> Any:
        a, b = self.left.evaluate(resolve), self.right.evaluate(resolve)
        try:
            return _COMPARE[self.op](a, b)
        except TypeError:
            raise ConditionError(
                f"cannot compare {type(a).__name__} {a!r} {self.op} {type(b).__name__} {b!r}"
            ) from None

    def references(self) -> Iterator[Reference]:
        yield from self.left.references()
        yield from self.right.references()


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed ``when`` expression and its source text."""

    text: str
    expr: Expr

    def evaluate(self, resolve: Resolver) -> bool:
        try:
            return bool(self.expr.evaluate(resolve))
        except ReferenceResolutionError as exc:
            raise ConditionError(str(exc)) from None

    def references(self) -> list[Reference]:
        return list(self.expr.references())


def parse_condition(text: str, max_depth: int | None = None) -> Condition:
    """Parse a ``when`` expression; raise ConditionError saying where it went wrong.

    ``max_depth``: levels of parentheses, brackets and ``not`` allowed (the parser and
    the evaluation recurse once per level); the process's nesting limit by default.
    """
    if max_depth is None:
        max_depth = limits.current().nesting
    return Condition(text, _Parser(text, max_depth).parse())


class _Parser:
    def __init__(self, text: str, max_depth: int = limits.DEFAULT_NESTING):
        self.text = text
        self.tokens = list(self._tokenize(text))
        self.pos = 0
        self.max_depth = max_depth
        self.depth = 0

    def deeper(self) -> None:
        """One level more of nesting; refuse past the limit (before Python's stack)."""
        self.depth += 1
        if self.depth > self.max_depth:
            raise ConditionError(
                f"nested more than {self.max_depth} levels deep (parentheses, brackets "
                "and 'not'; the limit is CHORDFLOW_MAX_NESTING)")

    def _tokenize(self, text: str) -> Iterator[tuple[str, str, int]]:
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                return
            m = _TOKEN_RE.match(text, pos)
            if m is None:
                raise ConditionError(
                    f"unexpected character {text[pos:].lstrip()[:1]!r} at position "
                    f"{len(text) - len(text[pos:].lstrip()) + 1} in {text!r}"
                )
            kind = m.lastgroup or ""
            yield kind, m.group(kind), m.start(kind)
            pos = m.end()

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise ConditionError(f"unexpected end of condition {self.text!r}")
        self.pos += 1
        return tok

    def at_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def at_op(self, op: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "op" and tok[1] == op

    def parse(self) -> Expr:
        if not self.tokens:
            raise ConditionError("empty condition")
        expr = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise ConditionError(
                f"unexpected {tok[1]!r} at position {tok[2] + 1} in {self.text!r}"
            )
        return expr

    def parse_or(self) -> Expr:
        operands = [self.parse_and()]
        while self.at_word("or"):
            self.take()
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def parse_and(self) -> Expr:
        operands = [self.parse_not()]
        while self.at_word("and"):
            self.take()
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def parse_not(self) -> Expr:
        if self.at_word("not"):
            self.take()
            self.deeper()
            inner = self.parse_not()
            self.depth -= 1
            return Not(inner)
        return self.parse_compare()

    def parse_compare(self) -> Expr:
        left = self.parse_operand()
        tok = self.peek()
        if tok is None:
            return left
        if tok[0] == "op" and tok[1] in _COMPARE:
            self.take()
            return Compare(tok[1], left, self.parse_operand())
        if self.at_word("in"):
            self.take()
            return Compare("in", left, self.parse_operand())
        if self.at_word("not"):
            self.take()
            if not self.at_word("in"):
                raise ConditionError(f"expected 'in' after 'not' in {self.text!r}")
            self.take()
            return Compare("not in", left, self.parse_operand())
        return left

    def parse_operand(self) -> Expr:
        kind, value, at = self.take()
        if kind == "ref":
            try:
                return RefExpr(parse_reference(value[2:-1]))
            except ValueError as exc:
                raise ConditionError(str(exc)) from None
        if kind == "number":
            return Const(float(value) if any(c in value for c in ".eE") else int(value))
        if kind == "string":
            if "${" in value:
                raise ConditionError(
                    f"a reference inside quotes ({value}) is only text; write it unquoted, "
                    f"as in ${{steps.a.outputs.mode}} == 'full'"
                )
            return Const(_unquote(value))
        if kind == "word" and value.lower() in _KEYWORDS:
            return Const(_KEYWORDS[value.lower()])
        if kind == "op" and value == "(":
            self.deeper()
            expr = self.parse_or()
            if not self.at_op(")"):
                raise ConditionError(f"missing ')' in {self.text!r}")
            self.take()
            self.depth -= 1
            return expr
        if kind == "op" and value == "[":
            self.deeper()
            items: list[Expr] = []
            while not self.at_op("]"):
                items.append(self.parse_operand())
                if self.at_op(","):
                    self.take()
                elif not self.at_op("]"):
                    raise ConditionError(f"expected ',' or ']' in list in {self.text!r}")
            self.take()
            self.depth -= 1
            return ListExpr(tuple(items))
        hint = " (write references as ${...} and strings in quotes)" if kind == "word" else ""
        raise ConditionError(f"unexpected {value!r} at position {at + 1} in {self.text!r}{hint}")


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body)
