"""``package.module:attribute``: a Python workflow named on the command line.

As ``celery -A`` and ``uvicorn`` do, the current directory is importable, so that
``chordflow run examples.flow_quickstart:workflow`` works from the repository's root.
"""

from __future__ import annotations

import os
import re
import sys

from chordflow.flow.errors import FlowError
from chordflow.flow.workflow import Workflow
from chordflow.importing import NotImportable, import_attribute

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
        found = import_attribute(modname, attr)
    except NotImportable as exc:
        raise FlowError(str(exc)) from None
    if not isinstance(found, Workflow):
        raise FlowError(f"'{text}' is a {type(found).__name__}, not a chordflow.flow."
                        "Workflow")
    return found
