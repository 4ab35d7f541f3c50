"""``package.module:attribute``: a Python workflow named on the command line.

As ``celery -A`` and ``uvicorn`` do, the current directory is importable, so that
``chordflow run examples.flow_quickstart:workflow`` works from the repository's root.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from chordflow.flow.errors import FlowError
from chordflow.flow.workflow import Workflow

_REFERENCE = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_reference(text: str) -> bool:
    """Whether ``text`` reads as ``package.module:attribute`` (not a file name)."""
    return bool(_REFERENCE.fullmatch(text))


def load_reference(text: str) -> Workflow:
    """The ``Workflow`` object at ``package.module:attribute``; FlowError saying why not."""
    if not is_reference(text):
        raise FlowError(f"'{text}' is not 'package.module:attribute'")
    modname, _, attr = text.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        found: Any = importlib.import_module(modname)
    except ImportError as exc:
        raise FlowError(f"cannot import '{modname}': {exc}") from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise FlowError(f"'{modname}' has no attribute '{attr}'") from None
    if not isinstance(found, Workflow):
        raise FlowError(f"'{text}' is a {type(found).__name__}, not a chordflow.flow."
                        "Workflow")
    return found
