"""Functions the dashboard's test runs call through the ``python`` module (the workers
import them: their PYTHONPATH is the repository)."""

from __future__ import annotations


def explode(value: int) -> None:
    """Print a line, then fail with a traceback two frames deep."""
    print(f"about to check {value}")
    _check(value)


def _check(value: int) -> None:
    raise ValueError(f"bad value {value}")
