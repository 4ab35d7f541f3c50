"""Keeping secrets out of records: every stored value passes through ``redact``.

A secret reaches a step in clear (it needs it), but the params, outputs and errors the
store keeps, and so every API answer and log built from them, show ``***`` instead.
A secret inserted into a shell command is shell-quoted (app/workflow/templating.py),
which splits a secret holding a ``'`` into pieces; that quoted form is masked too.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")
MASK = "***"


def redact(value: T, secrets: Mapping[str, str]) -> T:
    """``value`` with every occurrence of a secret's text replaced by ``***``."""
    texts = [s for s in secrets.values() if isinstance(s, str) and len(s) >= 3]
    if not texts:
        return value
    # The quoted forms first: each contains its secret's pieces, not its whole text.
    texts = [q for q in map(shlex.quote, texts) if q.strip("'") not in texts] + texts
    return _redact(value, texts)  # type: ignore[no-any-return]


def _redact(value: Any, texts: list[str]) -> Any:
    if isinstance(value, str):
        for text in texts:
            if text in value:
                value = value.replace(text, MASK)
        return value
    if isinstance(value, Mapping):
        return {k: _redact(v, texts) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, texts) for v in value]
    return value
