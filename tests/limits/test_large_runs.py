"""Large runs on real workers (Redis, the MongoDB-protocol server, two Celery workers):
a workflow of 20,000 steps whose definition is larger than a MongoDB document, and a
``foreach`` of 100,000 elements, both run to the end."""

from __future__ import annotations

import pytest

from app.engine.large_values import INLINE_BYTES
from app.engine.state import RunStatus
from app.workflow.loader import load_data

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_a_20000_step_workflow_larger_than_a_document_runs_on_celery(celery_stack):
    pad = "x" * 1000  # 20 MB of definition in all: more than one 16 MB document holds
    steps = [{"name": f"s{i}", "module": "echo",
              "params": {"n": i, "pad": pad},
              **({"depends_on": [f"s{i - 1}"]} if i % 100 else {})}
             for i in range(20_000)]
    steps.append({"name": "last", "module": "echo", "depends_on": [f"s{i}" for i in
                                                                  range(99, 20_000, 100)],
                  "params": {"n": "${steps.s19999.outputs.n}"}})
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "twenty-thousand", "steps": steps}))
    assert service.wait(run_id, timeout=600) is RunStatus.SUCCEEDED
    store = service.engine.store
    stored = store.workflows.find_one({"_id": store.get_run(run_id).digest})
    assert "parts" in stored and "definition" not in stored  # not one document
    assert len(store.get_workflow(run_id)["steps"]) == 20_001
    assert store.get_steps(run_id, ["last"])["last"].outputs == {"n": 19_999}
    assert INLINE_BYTES < 20_000 * len(pad)


@pytest.mark.timeout(1200)
def test_a_foreach_of_100000_elements_runs_on_celery(celery_stack):
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "hundred-thousand", "steps": [
        {"name": "each", "module": "echo", "foreach": list(range(100_000)),
         "params": {"n": "${item}"}},
        {"name": "total", "module": "echo", "depends_on": "each",
         "params": {"last": "${steps.each.outputs.items[99999].n}"}},
    ]}))
    assert service.wait(run_id, timeout=900) is RunStatus.SUCCEEDED
    steps = service.engine.store.get_steps(run_id, ["each", "total"])
    assert steps["total"].outputs == {"last": 99_999}
    assert steps["each"].items_left == 0
