"""chordflow: workflows as DAGs of steps, run embedded in one process or on Celery
workers, every run recorded in MongoDB.

This folder (app/ in the repository) is the ``chordflow`` package itself; modules/,
tasks/ and workers/ are ``chordflow.modules``, ``chordflow.tasks`` and
``chordflow.workers`` (see pyproject.toml).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chordflow")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
