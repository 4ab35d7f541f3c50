"""Step modules: what a step can do. Built-ins live here, one file per module."""

from modules.context import StepContext
from modules.registry import MethodSpec, Registry, StepModule, default_registry, load_registry

__all__ = [
    "MethodSpec",
    "Registry",
    "StepContext",
    "StepModule",
    "default_registry",
    "load_registry",
]
