"""``Depends`` and ``Map``: the defaults that wire functions into a DAG.

FastAPI's style: a parameter whose default is ``Depends(fn)`` receives ``fn``'s result.
At run time the default is a marker object; for the type checker it *is* the result
(``Depends`` is typed to return what ``fn`` returns, awaited for an ``async def``), so
editors and mypy see ``p`` in ``def f(p=Depends(create_person))`` as a ``dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar, cast, overload

T = TypeVar("T")
X = TypeVar("X")
R = TypeVar("R")


class Dependency:
    """The marker ``Depends(fn)`` puts in a signature: "call ``fn`` and pass me its result"."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[..., Any]):
        if not callable(fn):
            raise TypeError(f"Depends() takes a function, not {type(fn).__name__}")
        self.fn = fn

    def __repr__(self) -> str:
        return f"Depends({getattr(self.fn, '__qualname__', self.fn)!r})"


class Mapped:
    """The marker ``Map(fn, over=...)`` makes: "call ``fn`` once per element of ``over``
    and pass me the list of results" (a ``foreach`` step of the workflow format)."""

    __slots__ = ("fn", "over", "name")

    def __init__(self, fn: Callable[..., Any], over: Any, name: str | None = None):
        if not callable(fn):
            raise TypeError(f"Map() takes a function, not {type(fn).__name__}")
        if not isinstance(over, Dependency | list | tuple):
            raise TypeError("Map(fn, over=...) takes Depends(g) or a list, not "
                            f"{type(over).__name__}")
        self.fn = fn
        self.over: Dependency | list[Any] = over if isinstance(over, Dependency) else list(over)
        self.name = name

    def __repr__(self) -> str:
        return f"Map({getattr(self.fn, '__qualname__', self.fn)!r}, over={self.over!r})"


@overload
def Depends(fn: Callable[..., Coroutine[Any, Any, T]]) -> T: ...  # type: ignore[overload-overlap]
@overload
def Depends(fn: Callable[..., T]) -> T: ...
def Depends(fn: Callable[..., Any]) -> Any:  # noqa: N802 - FastAPI's and JFlow's name
    """The result of ``fn`` (awaited if it is async), computed once per run."""
    return Dependency(fn)


@overload
def Map(fn: Callable[[X], Coroutine[Any, Any, R]], over: Iterable[X],  # type: ignore[overload-overlap]
        *, name: str | None = None) -> list[R]: ...
@overload
def Map(fn: Callable[[X], R], over: Iterable[X], *, name: str | None = None) -> list[R]: ...
def Map(fn: Callable[..., Any], over: Any, *, name: str | None = None) -> Any:  # noqa: N802
    """``[fn(x) for x in over]``, each call a step of its own (retried, timed out and
    run concurrently like one). ``over`` is ``Depends(g)`` or a literal list; ``fn``'s
    first positional parameter receives the element, its others may be ``Depends``."""
    return cast(Any, Mapped(fn, over, name))
