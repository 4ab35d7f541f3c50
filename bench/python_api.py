"""Per-step overhead of chordflow.flow embedded, against the floor and its peers.

Two DAGs of no-op ``async def`` functions: a random DAG of 1,000 nodes (each depends on
up to three random earlier ones, seeded) and a 1,000-step chain. Each runner:

- **floor**: the same DAG hand-wired with asyncio tasks and events (nothing checked,
  nothing recorded: the least any asyncio DAG runner pays);
- **chordflow.flow**: ``await Workflow(*sinks).run()`` (the plan is built once, before
  timing, as a program builds its workflow once and runs it many times);
- **JFlow-style**: a minimal implementation of JFlow's semantics written here, as that
  library is about 100 lines: ``Depends`` defaults resolved recursively, each function
  once per run through a dict of futures;
- **Hamilton** (``hamilton.async_driver``) and **Prefect 3** (a local ``@flow`` of
  ``@task``\\ s, its ephemeral API): from PyPI, ``pip install 'chordflow[bench]'``
  (they pin their own FastAPI: a virtual environment of their own is best). Absent,
  they are reported "not installed". Prefect runs fewer nodes (``--prefect-nodes``):
  its per-task cost makes 1,000 take minutes.

Printed: µs per step (the median of ``--repeat`` runs) and the ratio to the floor, as a
Markdown table, then how long ``import chordflow.flow`` takes in a fresh interpreter.
Targets: chordflow within 3x of the floor, faster than every peer but the floor.

    python bench/python_api.py [--nodes 1000] [--repeat 5] [--prefect-nodes 100]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Coroutine
from typing import Any

from chordflow.flow import Depends, Workflow

Dag = list[list[int]]  # node -> its parents (earlier nodes)


def random_dag(n: int, seed: int = 7, fan_in: int = 3) -> Dag:
    rng = random.Random(seed)
    return [sorted(rng.sample(range(i), min(i, rng.randint(0, fan_in)))) for i in range(n)]


def chain(n: int) -> Dag:
    return [[i - 1] if i else [] for i in range(n)]


def sinks(dag: Dag) -> list[int]:
    used = {p for parents in dag for p in parents}
    return [i for i in range(len(dag)) if i not in used]


async def noop(**_: Any) -> int:
    return 1


# -- the floor: asyncio tasks and events, hand-wired ------------------------------------

async def run_floor(dag: Dag) -> float:
    events = [asyncio.Event() for _ in dag]
    results: list[Any] = [None] * len(dag)

    async def node(i: int) -> None:
        for p in dag[i]:
            await events[p].wait()
        results[i] = await noop(**{f"p{p}": results[p] for p in dag[i]})
        events[i].set()

    t0 = time.perf_counter()
    await asyncio.gather(*(node(i) for i in range(len(dag))))
    return time.perf_counter() - t0


# -- chordflow.flow ---------------------------------------------------------------------

def _with_parameters(fn: Callable[..., Any], name: str,
                     defaults: dict[str, Any]) -> Callable[..., Any]:
    """A copy of ``fn`` named ``name`` whose signature has ``defaults`` (as if written
    ``async def name(p3=Depends(n3), ...)``)."""
    copy = types.FunctionType(fn.__code__, fn.__globals__, name)
    copy.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
         for k, v in defaults.items()])
    return copy


def flow_functions(dag: Dag, depends: Callable[[Any], Any]) -> list[Callable[..., Any]]:
    fns: list[Callable[..., Any]] = []
    for i, parents in enumerate(dag):
        fns.append(_with_parameters(noop, f"n{i}", {f"p{p}": depends(fns[p]) for p in parents}))
    return fns


async def run_chordflow(dag: Dag) -> float:
    fns = flow_functions(dag, Depends)
    workflow = Workflow(*(fns[i] for i in sinks(dag)), name="bench")
    t0 = time.perf_counter()
    await workflow.run()
    return time.perf_counter() - t0


# -- the JFlow-style peer: its semantics in a few lines ----------------------------------

class JDepends:
    def __init__(self, fn: Callable[..., Coroutine[Any, Any, Any]]):
        self.fn = fn


class JWorkflow:
    """JFlow's whole idea: resolve ``Depends`` defaults recursively, each function once
    per run (a future per function), goals' results in order."""

    def __init__(self, *goals: Callable[..., Any]):
        self.goals = goals

    async def run(self, entry_points: dict[Any, list[Any]] | None = None) -> list[Any]:
        entry = entry_points or {}
        futures: dict[Any, asyncio.Future[Any]] = {}

        async def call(fn: Callable[..., Any]) -> Any:
            if fn in futures:
                return await futures[fn]
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            futures[fn] = future
            deps = {name: p.default.fn for name, p in inspect.signature(fn).parameters.items()
                    if isinstance(p.default, JDepends)}
            values = await asyncio.gather(*(call(d) for d in deps.values()))
            result = await fn(*entry.get(fn, []), **dict(zip(deps, values, strict=True)))
            future.set_result(result)
            return result

        return list(await asyncio.gather(*(call(g) for g in self.goals)))


async def run_jflow(dag: Dag) -> float:
    fns = flow_functions(dag, JDepends)
    workflow = JWorkflow(*(fns[i] for i in sinks(dag)))
    t0 = time.perf_counter()
    await workflow.run()
    return time.perf_counter() - t0


# -- Hamilton's async driver ------------------------------------------------------------

def hamilton_module(dag: Dag) -> types.ModuleType:
    """Hamilton names dependencies by parameter name: node ``n5`` taking ``n1, n3``."""
    source = "\n".join(
        f"async def n{i}({', '.join(f'n{p}: int' for p in parents)}) -> int:\n    return 1"
        for i, parents in enumerate(dag))
    module = types.ModuleType(f"bench_hamilton_{len(dag)}_{id(dag)}")
    exec(compile(source, module.__name__, "exec"), module.__dict__)  # noqa: S102
    sys.modules[module.__name__] = module
    return module


async def run_hamilton(dag: Dag) -> float:
    from hamilton import async_driver

    module = hamilton_module(dag)
    driver = await async_driver.Builder().with_modules(module).build()
    t0 = time.perf_counter()
    await driver.execute([f"n{i}" for i in sinks(dag)])
    return time.perf_counter() - t0


# -- Prefect 3 --------------------------------------------------------------------------

def run_prefect(dag: Dag) -> float:
    from prefect import flow, task

    @task
    async def step(*parents: int) -> int:
        return 1

    @flow
    async def whole() -> None:
        futures: list[Any] = []
        for parents in dag:
            futures.append(step.submit(*(futures[p] for p in parents)))
        for future in futures:
            future.wait()

    t0 = time.perf_counter()
    asyncio.run(whole())
    return time.perf_counter() - t0


# -- the table --------------------------------------------------------------------------

def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def measure(runner: Callable[[Dag], Any], dag: Dag, repeat: int) -> float:
    """Median µs per step over ``repeat`` runs (after one warm-up run)."""
    def once() -> float:
        result = runner(dag)
        return asyncio.run(result) if inspect.iscoroutine(result) else float(result)

    once()
    return statistics.median(once() for _ in range(repeat)) / len(dag) * 1e6


def import_time(repeat: int = 5) -> float:
    """Best ms of ``import chordflow.flow`` in a fresh interpreter."""
    code = ("import time; t = time.perf_counter(); import chordflow.flow; "
            "print(time.perf_counter() - t)")
    return min(float(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                    text=True, check=True, timeout=60).stdout)
               for _ in range(repeat)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--prefect-nodes", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Its ephemeral API server (SQLite) starts slowly on a busy machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    workloads = {f"random DAG, {args.nodes:,} nodes": random_dag(args.nodes),
                 f"chain, {args.nodes:,} steps": chain(args.nodes)}
    runners: list[tuple[str, Callable[[Dag], Any], str | None]] = [
        ("floor (asyncio tasks + events)", run_floor, None),
        ("chordflow.flow", run_chordflow, None),
        ("JFlow-style (dedup with futures)", run_jflow, None),
        ("Hamilton async driver", run_hamilton, "hamilton"),
        ("Prefect 3 local flow", run_prefect, "prefect"),
    ]
    floors: dict[str, float] = {}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, median of "
          f"{args.repeat} runs\n")
    header = " | ".join(f"{name}: µs/step (× floor)" for name in workloads)
    print(f"| runner | {header} |")
    print("|---|" + "---|" * len(workloads))
    for label, runner, module in runners:
        cells = []
        for name, dag in workloads.items():
            if module and not installed(module):
                cells.append("not installed")
                continue
            use = dag
            if runner is run_prefect and len(dag) > args.prefect_nodes:
                use = random_dag(args.prefect_nodes) if name.startswith("random") \
                    else chain(args.prefect_nodes)
            repeat = 1 if runner is run_prefect else args.repeat
            try:
                us = measure(runner, use, repeat)
            except Exception as exc:  # noqa: BLE001 - a peer that cannot run here: say why
                cells.append(f"failed: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            if runner is run_floor:
                floors[name] = us
            # A smaller DAG is compared with the floor of that same DAG.
            base = floors[name] if use is dag else measure(run_floor, use, args.repeat)
            note = f" ({len(use)} nodes)" if use is not dag else ""
            cells.append(f"{us:,.1f} ({us / base:.1f}×){note}")
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(f"\nimport chordflow.flow: {import_time():.0f} ms (best of 5, fresh interpreter)")

if __name__ == "__main__":
    main()
