"""Per-step overhead of the embedded executor, side by side with a bare floor.

Workloads: a 10,000-step chain and a 10,000-wide fan-out (one root, 9,999 children)
of ``echo`` steps. chordflow's time covers everything a user pays for: validating the
document, compiling the plan, running every step through the engine (state machine,
templating, store records, events) and waiting for the run to finish.

The peer is the floor any DAG runner on a thread pool pays: the standard library's
``graphlib.TopologicalSorter`` feeding a ``ThreadPoolExecutor`` that calls a function
returning its params. It validates nothing, records nothing, renders no templates.
The ratio says what chordflow's guarantees cost over that floor; the targets are
absolute (under 200 µs per step, compile of 10,000 steps under 1 s).

    python bench/embedded.py [--steps 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import graphlib
import statistics
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chordflow.config import Settings  # noqa: E402
from chordflow.engine.embedded import EmbeddedExecutor  # noqa: E402
from chordflow.engine.plan import compile_plan  # noqa: E402
from chordflow.engine.state import RunStatus  # noqa: E402
from chordflow.modules.registry import load_registry  # noqa: E402
from chordflow.workflow.loader import load_data  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

THREADS = 8


def chain(n: int) -> dict[str, Any]:
    steps = [{"name": "s0", "module": "echo", "params": {"i": 0}}]
    steps += [{"name": f"s{i}", "module": "echo",
               "params": {"i": i, "prev": f"${{steps.s{i - 1}.outputs.i}}"}}
              for i in range(1, n)]
    return {"name": "chain", "steps": steps}


def fanout(n: int) -> dict[str, Any]:
    steps = [{"name": "root", "module": "echo", "params": {"x": 1}}]
    steps += [{"name": f"s{i}", "module": "echo",
               "params": {"i": i, "x": "${steps.root.outputs.x}"}} for i in range(1, n)]
    return {"name": "fanout", "steps": steps}


def run_chordflow(doc: dict[str, Any], registry: Any, settings: Settings) -> tuple[float, float]:
    """Seconds for validate+compile, and for validate+compile+run."""
    with EmbeddedExecutor(registry, threads=THREADS, settings=settings) as ex:
        t0 = time.perf_counter()
        plan = compile_plan(load_data(doc), registry)
        t1 = time.perf_counter()
        run_id = ex.submit(plan)
        status = ex.wait(run_id)
        t2 = time.perf_counter()
        assert status is RunStatus.SUCCEEDED, ex.store.get_run(run_id).error
    return t1 - t0, t2 - t0


def echo(**params: Any) -> dict[str, Any]:
    return dict(params)


def run_floor(doc: dict[str, Any]) -> float:
    """graphlib + ThreadPoolExecutor over the same graph."""
    t0 = time.perf_counter()
    graph: dict[str, set[str]] = {}
    for step in doc["steps"]:
        deps = set()
        for value in step["params"].values():
            if isinstance(value, str) and value.startswith("${steps."):
                deps.add(value.split(".")[1])
        graph[step["name"]] = deps
    sorter = graphlib.TopologicalSorter(graph)
    sorter.prepare()
    params = {s["name"]: s["params"] for s in doc["steps"]}
    with ThreadPoolExecutor(THREADS) as pool:
        running = {}
        while sorter.is_active():
            for name in sorter.get_ready():
                running[pool.submit(echo, **params[name])] = name
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
                sorter.done(running.pop(future))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    registry = load_registry()
    settings = Settings(workdir=Path(tempfile.mkdtemp(prefix="chordflow-bench-")))
    console = Console()
    table = Table(title=f"embedded executor, {args.steps:,} echo steps, {THREADS} threads, "
                        f"median of {args.repeat}")
    for col in ("workload", "chordflow µs/step", "floor µs/step", "ratio",
                "compile (s)", "target"):
        table.add_column(col, justify="right" if col != "workload" else "left")
    ok = True
    for name, make in (("chain", chain), ("fan-out", fanout)):
        doc = make(args.steps)
        ours, compiles, floor = [], [], []
        for _ in range(args.repeat):
            compile_s, total = run_chordflow(doc, registry, settings)
            compiles.append(compile_s)
            ours.append(total)
            floor.append(run_floor(doc))
        us = statistics.median(ours) / args.steps * 1e6
        floor_us = statistics.median(floor) / args.steps * 1e6
        compile_s = statistics.median(compiles)
        meets = us < 200 and compile_s < 1.0
        ok &= meets
        table.add_row(name, f"{us:.0f}", f"{floor_us:.0f}", f"{us / floor_us:.1f}x",
                      f"{compile_s:.2f}", "met" if meets else "MISSED")
    console.print(table)
    console.print("targets: < 200 µs per step end to end; compile of the DAG < 1 s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
