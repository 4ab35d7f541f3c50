"""ResourceRequirement to a queue (app/cwl/resources.py): which requirement is in force,
a maximum alone as the minimum, rules tried in order, expressions left unrouted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chordflow.config import Settings
from chordflow.cwl.convert import cwl_document
from chordflow.cwl.document import CwlInvalid
from chordflow.cwl.resources import QueueRuleError, check_rules, minimums, routing

DOCS = Path(__file__).with_name("docs")

RULES = check_rules([{"queue": "big", "coresMin": 8}, {"queue": "mem", "ramMin": 65536},
                     {"queue": "mid", "coresMin": 2, "ramMin": 4096}])


def res(**fields: object) -> dict[str, object]:
    return {"class": "ResourceRequirement", **fields}


def test_rules_in_order_each_threshold_reached() -> None:
    tool = {"requirements": [res(coresMin=16)]}
    assert routing(tool, [], [], RULES)["queue"] == "big"
    assert routing({}, [res(ramMin=70000)], [], RULES)["queue"] == "mem"
    # mid needs both thresholds; the step's own requirement beats the workflow's hint
    assert routing({}, [res(coresMin=2, ramMin=8192)], [], RULES)["queue"] == "mid"
    assert "queue" not in routing({}, [res(coresMin=2)], [], RULES)
    assert routing({"requirements": [res(coresMin=1)]}, [res(coresMin=9)], [], RULES
                   ) == {"description": "ResourceRequirement: coresMin 1, ramMin 256"}
    assert routing({}, [], [], RULES) == {}  # no requirement: nothing recorded
    assert minimums(res(coresMax=3)) == {"coresMin": 3, "ramMin": 256}
    expr = routing({}, [], [res(coresMin="$(inputs.n)")], RULES)
    assert "queue" not in expr and "coresMin from an expression" in expr["description"]


def test_bad_rules_are_refused() -> None:
    with pytest.raises(QueueRuleError, match="unknown"):
        check_rules([{"queue": "q", "cores": 2}])
    with pytest.raises(QueueRuleError, match="must be a number"):
        check_rules([{"queue": "q", "ramMin": "lots"}])
    with pytest.raises(QueueRuleError, match="is not"):
        check_rules(["q"])


def test_a_document_s_steps_get_their_queue_from_the_setting(tmp_path: Path,
                                                             monkeypatch) -> None:
    # CHORDFLOW_CWL_QUEUES as the CLI and the API read it (the workers' side is
    # test_cwl_celery.py's remote test, whose "make" step is routed this way).
    monkeypatch.setenv("CHORDFLOW_CWL_QUEUES", json.dumps([{"queue": "cwl-big",
                                                            "coresMin": 2}]))
    rules = Settings().cwl_queues
    doc = cwl_document(DOCS / "resources.cwl", None, tmp_path, queues=rules)
    steps = {s["name"]: s for s in doc["steps"]}
    assert steps["big"]["queue"] == "cwl-big" and "queue" not in steps["small"]
    assert steps["big"]["description"] == ("ResourceRequirement: coresMin 4, ramMin 1024 "
                                           "(queue cwl-big)")
    with pytest.raises(CwlInvalid, match="neither coresMin nor ramMin"):
        cwl_document(DOCS / "resources.cwl", None, tmp_path, queues=[{"queue": "q"}])
