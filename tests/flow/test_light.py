"""``import chordflow.flow`` stays light: none of Celery, kombu, pymongo, FastAPI,
pydantic, YAML or networkx is imported, by the import or by an embedded run (checked
in a fresh interpreter, as an embedding program starts)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("celery", "kombu", "pymongo", "bson", "fastapi", "starlette", "pydantic",
         "pydantic_settings", "yaml", "networkx", "httpx", "typer", "rich", "redis")

PROGRAM = """
import json, sys
import chordflow.flow
after_import = sorted(sys.modules)
from chordflow.flow import Depends, Map, Workflow, step

async def a(x: int) -> list[int]:
    return [x, x + 1]

@step(retries=1, timeout=5)
def b(v: int) -> int:
    return v * 2

async def c(xs: list[int] = Map(b, over=Depends(a))) -> int:
    return sum(xs)

assert Workflow(c).run_sync({a: [1]}, strict=True) == [6]
print(json.dumps({"import": after_import, "run": sorted(sys.modules)}))
"""


def _top(modules: list[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_import_and_an_embedded_run_load_nothing_heavy() -> None:
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout)
    for phase in ("import", "run"):
        heavy = sorted(_top(loaded[phase]) & set(HEAVY))
        assert heavy == [], f"{phase} loaded {heavy}"
    assert "chordflow.flow" in loaded["import"]
    assert "importlib.metadata" not in loaded["import"]  # chordflow.__version__ is lazy


def test_importtime_lists_none_of_them() -> None:
    """``python -X importtime -c 'import chordflow.flow'``, the check the docs give."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import chordflow.flow"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    imported = [line.rpartition("|")[2].strip() for line in done.stderr.splitlines()
                if line.startswith("import time:") and "|" in line]
    assert "chordflow.flow" in imported
    assert sorted(_top(imported) & set(HEAVY)) == []
