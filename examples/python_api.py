"""A workflow built in Python and run in this process: nothing else to install or start.

Its steps call functions of Python's standard library (the `python` module imports
"package.module:function"). Run it from any directory:

    python examples/python_api.py
"""

import json

from chordflow.engine.embedded import EmbeddedExecutor
from chordflow.engine.report import run_report
from chordflow.workflow.loader import load_data

workflow = load_data({
    "name": "python-steps",
    "variables": {"values": [3, 1, 4, 1, 5, 9, 2, 6]},
    "steps": [
        {"name": "mean", "module": "python",
         "params": {"function": "statistics:mean", "args": ["${variables.values}"]}},
        {"name": "top", "module": "python",
         "params": {"function": "heapq:nlargest", "args": [3, "${variables.values}"]}},
        {"name": "summary", "module": "echo",
         "params": {"mean": "${steps.mean.outputs.result}",
                    "top": "${steps.top.outputs.result}"}},
    ],
    "outputs": {"summary": "${steps.summary.outputs}"},
})

with EmbeddedExecutor() as executor:
    run_id = executor.run(workflow, {"values": [10, 20, 30, 40]})
    report = run_report(executor.store, run_id)

print(report["status"], json.dumps(report["outputs"]))
raise SystemExit(0 if report["status"] == "succeeded" else 1)
