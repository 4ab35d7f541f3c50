"""``package.module:attribute`` to the object it names: a Python workflow named on the
command line (chordflow.flow.loading) and a ``python`` step's function
(chordflow.modules.python) are found the same way, and fail with the same words."""

from __future__ import annotations

import importlib
from typing import Any


class NotImportable(Exception):
    """The module cannot be imported, or has no such attribute; the message says which."""


def import_attribute(modname: str, attr: str) -> Any:
    """The object at ``attr`` (dotted: ``Class.method``) in the module ``modname``."""
    try:
        found: Any = importlib.import_module(modname)
    except ImportError as exc:
        raise NotImportable(f"cannot import '{modname}': {exc}") from None
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise NotImportable(f"'{modname}' has no attribute '{attr}'") from None
    return found
