"""chordflow: workflows as DAGs of steps, run embedded in one process or on Celery
workers, every run recorded in MongoDB.

This folder (app/ in the repository) is the ``chordflow`` package itself; modules/,
tasks/ and workers/ are ``chordflow.modules``, ``chordflow.tasks`` and
``chordflow.workers`` (see pyproject.toml).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """``__version__``, read from the installed metadata when first asked for:
    importlib.metadata costs tens of milliseconds, which ``import chordflow.flow``
    (the embedded Python API) should not pay."""
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("chordflow")
        except PackageNotFoundError:  # run from a checkout that was never installed
            found = "0+unknown"
        globals()["__version__"] = found
        return found
    raise AttributeError(f"module 'chordflow' has no attribute {name!r}")
