r"""Quoting a value for the place it takes in a shell command.

A reference in shell code (app/workflow/templating.py) becomes text that the shell reads
back as exactly that value. How depends on where the author put it, which this module
works out once, at compile time, from the literal text around each reference (a small
POSIX ``sh`` lexer):

- unquoted (also inside ``$(...)`` and backquotes): ``shlex.quote``, one word;
- inside ``"..."``: ``\``, ``$``, ````` and ``"`` escaped with a backslash, so
  ``echo "hi ${variables.x}"`` prints the value and runs nothing of it;
- inside ``'...'``: each ``'`` becomes ``'\''``;
- in a here-document: ``\``, ``$`` and ````` escaped (nothing, if its delimiter is
  quoted), and a value that holds the delimiter, which would end it early, fails the
  step;
- in a ``#`` comment: line breaks become spaces (a line break would end the comment);
- inside backquotes, whatever of the above applies, with ``\``, ````` and ``$``
  escaped once more (the shell reads backquoted text twice).

Refused, with an error naming the field: a reference inside a shell parameter
expansion (``$${VAR:-...}``) or ``$'...'``, where quoting rules differ between shells.
A ``raw:`` reference is inserted as it is; the lexer reads the text around it as
written, so a raw value that opens or closes a quote is the author's responsibility.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from chordflow.errors import ReferenceResolutionError

_DOUBLE_RE = re.compile(r'[\\$`"]')
_HEREDOC_RE = re.compile(r"[\\$`]")
_WORD_END = frozenset(" \t\n;&|()<>")


@dataclass(frozen=True, slots=True)
class Quoting:
    """How one reference's text is inserted: ``kind`` is one of word, double, single,
    heredoc, literal-heredoc, comment, raw."""

    kind: str
    delimiter: str = ""
    #: Inside backquotes: the shell removes a backslash before ``\``, ````` and ``$``
    #: before it parses the command inside, so those are escaped once more.
    backquoted: bool = False

    def apply(self, text: str, ref: str) -> str:
        """``text`` as the shell will read it back here; ``ref`` names the reference."""
        quoted = self._apply(text, ref)
        return _HEREDOC_RE.sub(r"\\\g<0>", quoted) if self.backquoted else quoted

    def _apply(self, text: str, ref: str) -> str:
        kind = self.kind
        if kind == "word":
            return shlex.quote(text)
        if kind == "double":
            return _DOUBLE_RE.sub(r"\\\g<0>", text)
        if kind == "single":
            return text.replace("'", "'\\''")
        if kind == "comment":
            return text.replace("\r", " ").replace("\n", " ")
        if kind in ("heredoc", "literal-heredoc"):
            if self.delimiter in text:
                raise ReferenceResolutionError(
                    f"'${{{ref}}}': its value holds '{self.delimiter}', the delimiter of "
                    "the here-document it is in, which would end it early")
            return _HEREDOC_RE.sub(r"\\\g<0>", text) if kind == "heredoc" else text
        return text  # raw: code, by the author's choice


WORD = Quoting("word")
RAW = Quoting("raw")


@dataclass
class _Context:
    kind: str  # top, sub, backtick, double, single, ansi, param, comment, heredoc
    depth: int = 0  # open parentheses inside $( ... )
    delimiter: str = ""
    literal: bool = False  # a here-document whose delimiter is quoted
    strip_tabs: bool = False  # <<-
    line: list[str] = field(default_factory=list)  # a here-document's current line


_UNQUOTED = frozenset({"top", "sub", "backtick"})


class _Lexer:
    """Follows the quoting state of ``sh`` through literal text and holes."""

    def __init__(self) -> None:
        self.stack = [_Context("top")]
        self.pending: list[_Context] = []  # here-documents whose bodies come next
        self.word_start = True

    @property
    def ctx(self) -> _Context:
        return self.stack[-1]

    def hole(self) -> Quoting:
        """The quoting of a reference at the current position."""
        ctx = self.ctx
        self.word_start = False
        backquoted = any(c.kind == "backtick" for c in self.stack)
        if ctx.kind == "heredoc":
            ctx.line.append("\0")
            return Quoting("literal-heredoc" if ctx.literal else "heredoc", ctx.delimiter,
                           backquoted)
        if ctx.kind in _UNQUOTED:
            return Quoting("word", backquoted=backquoted)
        if ctx.kind in ("double", "single", "comment"):
            return Quoting(ctx.kind, backquoted=backquoted)
        what = "a shell parameter expansion ($${...})" if ctx.kind == "param" else "$'...'"
        raise ValueError(f"a reference inside {what} cannot be quoted safely; move it "
                         "out, or mark it ${raw:...} if it is meant as code")

    def feed(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n:
            i = self._step(text, i, n)

    def _push(self, kind: str) -> None:
        self.stack.append(_Context(kind))

    def _step(self, text: str, i: int, n: int) -> int:
        """Read the character at ``i``; return where the next one starts."""
        ctx, c = self.ctx, text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        kind = ctx.kind
        if kind == "single":
            if c == "'":
                self.stack.pop()
            return i + 1
        if kind == "comment":
            if c == "\n":
                self.stack.pop()
                return i  # the line break is read again by the enclosing context
            return i + 1
        if kind == "heredoc":
            return self._heredoc(ctx, text, i, n)
        if c == "\\":
            return i + 2
        if kind == "ansi":
            if c == "'":
                self.stack.pop()
            return i + 1
        if c == "$" and nxt in "({":
            self._push("sub" if nxt == "(" else "param")
            self.word_start = nxt == "("
            return i + 2
        if c == "`":
            if kind == "backtick":
                self.stack.pop()
            else:
                self._push("backtick")
            return i + 1
        if kind == "double":
            if c == '"':
                self.stack.pop()
            return i + 1
        if kind == "param":
            if c == "}":
                self.stack.pop()
            elif c in "'\"":
                self._push("single" if c == "'" else "double")
            return i + 1
        # top, sub, backtick: unquoted
        if c == "$" and nxt == "'":
            self._push("ansi")
            return i + 2
        if c in "'\"":
            self._push("single" if c == "'" else "double")
        elif kind == "sub" and c == "(":
            ctx.depth += 1
        elif kind == "sub" and c == ")":
            if ctx.depth:
                ctx.depth -= 1
            else:
                self.stack.pop()
        elif c == "#" and self.word_start:
            self._push("comment")
        elif c == "<" and nxt == "<":
            if text[i + 2:i + 3] == "<":  # <<< a here-string: a word like any other
                self.word_start = True
                return i + 3
            return self._redirect(text, i + 2, n)
        elif c == "\n" and self.pending:
            self.stack.append(self.pending.pop(0))
        self.word_start = c in _WORD_END
        return i + 1

    def _redirect(self, text: str, i: int, n: int) -> int:
        """``<<WORD``: note the here-document whose body starts at the next line."""
        strip = i < n and text[i] == "-"
        i += strip
        while i < n and text[i] in " \t":
            i += 1
        start = i
        while i < n and text[i] not in _WORD_END:
            i += 1
        word = text[start:i]
        if not word:
            raise ValueError("cannot tell the delimiter of a here-document ('<<' is "
                             "followed by a reference or nothing)")
        delimiter = re.sub(r"""['"\\]""", "", word)
        self.pending.append(_Context("heredoc", delimiter=delimiter,
                                     literal=delimiter != word, strip_tabs=strip))
        self.word_start = False
        return i

    def _heredoc(self, ctx: _Context, text: str, i: int, n: int) -> int:
        c = text[i]
        if c == "\n":
            line = "".join(ctx.line)
            if (line.lstrip("\t") if ctx.strip_tabs else line) == ctx.delimiter:
                self.stack.pop()
                if self.pending:
                    self.stack.append(self.pending.pop(0))
            ctx.line.clear()
            return i + 1
        ctx.line.append(c)
        if ctx.literal:
            return i + 1
        if c == "\\":
            if i + 1 < n and text[i + 1] != "\n":
                ctx.line.append(text[i + 1])
            return i + 2
        if c == "$" and i + 1 < n and text[i + 1] in "({":
            self._push("sub" if text[i + 1] == "(" else "param")
            return i + 2
        if c == "`":
            self._push("backtick")
        return i + 1


def quotings(parts: Sequence[object], raw: frozenset[int]) -> tuple[Quoting | None, ...]:
    """For each part of a shell template (literal text as ``str``, anything else a
    reference), how its value is inserted (None for text). Raises ValueError where no
    quoting is safe."""
    lexer = _Lexer()
    out: list[Quoting | None] = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            lexer.feed(part)
            out.append(None)
        elif i in raw:
            lexer.word_start = False
            if lexer.ctx.kind == "heredoc":
                lexer.ctx.line.append("\0")
            out.append(RAW)
        else:
            out.append(lexer.hole())
    return tuple(out)
