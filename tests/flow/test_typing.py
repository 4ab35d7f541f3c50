"""mypy on a typed example: ``Depends(fn)`` is ``fn``'s return type (awaited for an
``async def``), ``Map`` the list of its function's results, ``@step`` keeps the
function's type; a parameter annotated otherwise is an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT

TYPED = ROOT / "tests" / "flow" / "typed"


def _package_tree(at: Path) -> Path:
    """The package as installed (chordflow/, chordflow/modules/, ...): mypy does not
    follow the editable install's import hook (the Makefile's lint does the same)."""
    package = at / "chordflow"
    package.mkdir(parents=True)
    for entry in (ROOT / "app").iterdir():
        (package / entry.name).symlink_to(entry)
    for name in ("modules", "tasks", "workers"):
        (package / name).symlink_to(ROOT / name)
    return at


#: Only chordflow.flow's own modules are followed: what they import for the Celery
#: path (pydantic, the engine) is not what the example's types depend on, and would
#: take mypy most of its time.
SKIPPED = ("pydantic.*", "pydantic_settings.*", "chordflow.workflow.*", "chordflow.config",
           "chordflow.service", "chordflow.engine.*", "chordflow.modules.*",
           "chordflow.flow.remote", "chordflow.flow.document")
CONFIG = ("[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n"
          f"[mypy-{','.join(SKIPPED)}]\nfollow_imports = skip\n")


def test_mypy_sees_the_dependency_return_types(tmp_path: Path) -> None:
    tree = _package_tree(tmp_path / "tree")
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", str(config),
         "--no-error-summary", str(TYPED / "example.py"), str(TYPED / "wrong.py")],
        cwd=tree, env={**os.environ, "MYPYPATH": str(tree)}, capture_output=True,
        text=True, timeout=180)
    lines = [line.split(TYPED.name + "/", 1)[-1] for line in done.stdout.splitlines()]
    assert sorted(lines) == sorted([
        'wrong.py:11: error: Incompatible default for parameter "p" (default has type '
        '"dict[str, str]", parameter has type "int")  [assignment]',
        'example.py:26: note: Revealed type is "dict[str, str]"',
        'example.py:30: note: Revealed type is "dict[str, str]"',
        'example.py:31: note: Revealed type is "list[int]"',
        'example.py:32: note: Revealed type is "list[str]"',
        'example.py:33: note: Revealed type is "def (x: int) -> str"',
    ]), done.stdout + done.stderr
