"""Step modules: what a step can do. Built-ins live here, one file per module."""

from chordflow.modules.context import StepContext
from chordflow.modules.registry import (
    MethodSpec,
    Registry,
    StepModule,
    default_registry,
    load_registry,
)

__all__ = [
    "MethodSpec",
    "Registry",
    "StepContext",
    "StepModule",
    "default_registry",
    "load_registry",
]
