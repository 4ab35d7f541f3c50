"""Large runs on real workers (Redis, the MongoDB-protocol server, two Celery workers):
a workflow of 20,000 steps whose definition is larger than a MongoDB document, and a
``foreach`` of 100,000 elements expanded by a worker, both run to the end.

They have a stack of their own: a MongoDB-protocol server that other tests' queries do
not have to wade through afterwards, and workers whose broker gives a message back
after fifteen minutes (not the thirty seconds the other tests use to see lost messages
come back quickly): expanding 100,000 elements on a loaded two-core machine takes
longer than thirty seconds, and a second expansion would only compete with the first.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chordflow.engine.large_values import INLINE_BYTES
from chordflow.engine.state import RunStatus, StepStatus
from chordflow.workflow.loader import load_data

from tests.conftest import CeleryStack, celery_stack_on
from tests.servers import mongo_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def celery_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryStack]:
    with mongo_server() as url, celery_stack_on(url, tmp_path_factory.mktemp("large"),
                                                CHORDFLOW_VISIBILITY_TIMEOUT="900") as stack:
        yield stack


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


@pytest.mark.timeout(900)
def test_a_large_foreach_is_expanded_by_a_worker_and_runs_on_celery(celery_stack):
    n = 100_000
    service = celery_stack.service()
    run_id = service.submit(load_data({"name": "large-foreach", "steps": [
        {"name": "each", "module": "echo", "foreach": list(range(n)),
         "params": {"n": "${item}"}},
        {"name": "total", "module": "echo", "depends_on": "each",
         "params": {"last": f"${{steps.each.outputs.items[{n - 1}].n}}"}},
    ]}))
    # The submitter sent one message, not 100,000, and follows none of the elements.
    backend = service.engine.dispatcher.app.backend  # type: ignore[attr-defined]
    assert not backend.result_consumer.subscribed_to
    assert service.wait(run_id, timeout=800) is RunStatus.SUCCEEDED
    steps = service.engine.store.get_steps(run_id, ["each", "total"])
    assert steps["total"].outputs == {"last": n - 1}
    items = steps["each"].items or []
    assert len(items) == n and all(i.status is StepStatus.SUCCEEDED for i in items)
    assert [i.outputs for i in items[:3]] == [{"n": 0}, {"n": 1}, {"n": 2}]
    # Sent in batches (app/engine/dispatch.py): 1,563 deliveries, not 100,000.
    assert len({i.task_id for i in items}) == -(-n // 64)
