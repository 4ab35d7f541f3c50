"""Just-in-time tiers, the parts without I/O: the replaced service's Argo events read as
it read them, plain JSON events, which tier an event means, the run an event becomes,
and the cache state's rules (LRU, holds, exact accounting)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chordflow.data.jit import state as ops
from chordflow.data.jit.events import EventInvalid, parse_event
from chordflow.data.jit.runs import event_workflow
from chordflow.data.jit.tiers import TierConfigError, load_tiers, match_tier
from chordflow.engine.plan import compile_plan
from chordflow.modules.registry import default_registry
from chordflow.workflow.loader import load_data

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "jit"
PRIMARY_URL = "https://scruffy.lab.example.net:9000"
SECONDARY_URL = "https://data.archive.example.org:443"
TIERS = load_tiers({
    "fast": {"primary": "scratch:naa-vre-user-data/analyst@example.org",
             "secondary": "archive:naa-vre-public/datasets/", "capacity": "5kB",
             "primary_endpoint": PRIMARY_URL},
    "other": {"primary": "scratch:elsewhere", "secondary": "archive:naa-vre-public/datasets",
              "capacity": 10},
})
#: The secondary is matched by its remote's configured endpoint.
NAMES = {"archive": [SECONDARY_URL], "scratch": ["http://10.0.0.5:9000"]}


def test_the_three_argo_event_shapes_read_as_the_replaced_service_read_them():
    add = parse_event((FIXTURES / "ADD_workflow.json").read_bytes())
    running = parse_event((FIXTURES / "RUNNING_workflow.yaml").read_text())
    succeeded = parse_event((FIXTURES / "SUCCEEDED_workflow.yaml").read_text())
    assert add.files == ("dataset_basetest/0210-csv.csv", "dataset_basetest/0298-csv.csv")
    assert (add.type, add.phase, add.finished) == ("ADD", None, False)
    assert add.holder == "argo:0b9e2a53-6f3c-4a8e-9d51-7c2f3e1a8b40"
    assert add.primary_endpoint == PRIMARY_URL
    assert add.secondary_folder == "naa-vre-public/datasets"
    # A log preamble before the first '{', single-quoted files list, phase label.
    assert running.files == ("dataset_basetest/0402-csv.csv",)
    assert (running.type, running.phase, running.finished) == ("UPDATE", "Running", False)
    assert (succeeded.phase, succeeded.finished) == ("Succeeded", True)
    assert succeeded.holder == add.holder  # the same workflow's end releases its hold
    for event in (add, running, succeeded):
        assert match_tier(event, TIERS, NAMES).name == "fast"


def test_plain_json_events_and_their_tier():
    event = parse_event(json.dumps({"files": ["/a/b.csv", "a/b.csv", "c"], "tier": "other",
                                    "workflow": "nightly"}))
    assert event.files == ("a/b.csv", "c")  # each once, relative to the folders
    assert event.holder == "workflow:nightly"
    assert match_tier(event, TIERS, NAMES).name == "other"
    assert match_tier(parse_event({"files": ["x"]}), TIERS, NAMES, chosen="fast").name == "fast"


@pytest.mark.parametrize(("body", "field", "words"), [
    ("just a log line", None, "no event found"),
    ({"files": "not json ["}, "files", "must be a JSON list"),
    ({"files": ["ok", "../../etc/passwd"]}, "files[1]", "'..'"),
    ({"files": ["a/\x00b"]}, "files[0]", "control character"),
    ({"files": [3]}, "files[0]", "must be a string"),
    ({"files": ["a"], "primary_endpoint": 7}, "primary_endpoint", "must be a string"),
    ({"kind": "Workflow", "spec": {}}, "spec.arguments.parameters", "needs"),
    ({"type": "ADD", "body": {"spec": {"arguments": {"parameters": [{"value": 1}]}}}},
     "spec.arguments.parameters[0]", "{name, value}"),
])
def test_bad_events_name_the_field(body, field, words):
    with pytest.raises(EventInvalid) as caught:
        parse_event(body)
    assert caught.value.field == field and words in caught.value.message


def test_an_event_that_matches_no_tier_or_contradicts_the_named_one_is_refused():
    with pytest.raises(EventInvalid) as caught:
        match_tier(parse_event({"files": ["x"], "primary_endpoint": "https://nowhere"}),
                   TIERS, NAMES)
    assert caught.value.field == "primary_endpoint" and "no tier" in caught.value.message
    with pytest.raises(EventInvalid) as caught:
        match_tier(parse_event({"files": ["x"], "tier": "fast",
                                "primary_folder": "other/folder"}), TIERS, NAMES)
    assert caught.value.field == "primary_folder"
    with pytest.raises(EventInvalid) as caught:
        match_tier(parse_event({"files": ["x"], "tier": "slow"}), TIERS, NAMES)
    assert "tiers: fast, other" in caught.value.message
    with pytest.raises(EventInvalid) as caught:  # both tiers share the secondary
        match_tier(parse_event({"files": ["x"], "secondary_endpoint": "archive",
                                "primary_folder": None, "primary_endpoint": "scratch"}),
                   TIERS, NAMES)
    assert "matches tiers fast, other" in caught.value.message


def test_bad_tier_settings_name_the_tier_and_field():
    with pytest.raises(TierConfigError, match="tier 'x': primary: Value error, 'nocolon'"):
        load_tiers({"x": {"primary": "nocolon", "secondary": "a:b", "capacity": 1}})
    with pytest.raises(TierConfigError, match="tier 'x': capacity"):
        load_tiers({"x": {"primary": "a:b", "secondary": "a:c", "capacity": "lots"}})


def test_an_event_becomes_a_one_step_run_that_compiles():
    registry = default_registry()
    add = parse_event((FIXTURES / "ADD_workflow.json").read_bytes())
    doc = event_workflow(TIERS["fast"], add)
    plan = compile_plan(load_data(doc), registry)
    step = plan.workflow.steps[0]
    assert (plan.name, step.module, step.method) == ("jit-fast", "jit", "replicate")
    assert step.params["holder"] == add.holder and step.retries == 2
    done = event_workflow(TIERS["fast"], parse_event(
        (FIXTURES / "SUCCEEDED_workflow.yaml").read_text()))
    assert done["steps"][0]["method"] == "release"
    # A path holding '${' is a file name, not a reference.
    odd = event_workflow(TIERS["fast"], parse_event({"files": ["a/${run.id}.csv"]}))
    assert compile_plan(load_data(odd), registry).workflow.steps[0].params["files"] == \
        ["a/$${run.id}.csv"]
    with pytest.raises(EventInvalid, match="names no workflow"):
        event_workflow(TIERS["fast"], parse_event({"files": ["a"], "phase": "Succeeded"}))


def _tier(capacity: int, files: dict[str, tuple[int, float, list[str]]]) -> ops.TierState:
    state = ops.TierState("t", capacity)
    for path, (size, used_at, holders) in files.items():
        entry = ops.Entry(path, size, "present", used_at)
        for holder in holders:
            entry.hold(holder, 1e12)
        state.files[path] = entry
    return state


def test_claims_evict_least_recently_used_unheld_files_outside_the_event():
    state = _tier(10, {"old-held": (3, 1.0, ["argo:w1"]), "old": (3, 2.0, []),
                       "listed": (2, 3.0, []), "newer": (2, 4.0, [])})
    claim = ops.claim(state, ["listed", "new"], {"new": 4}, holds=[("run:r", 1e12)],
                      owner="run:r", owner_until=1e12, now=10.0)
    # 0 free, 4 needed: "old-held" is held and "listed" is the event's own.
    assert claim.evict == ["old", "newer"] and claim.missing == ["new"]
    assert state.used == 10 and state.files["listed"].last_access == 10.0
    assert ops.evicted(state, claim.evict, "run:r") == ["old", "newer"]
    again = ops.claim(state, ["listed", "new"], {"new": 4}, holds=[("run:r", 1e12)],
                      owner="run:r", owner_until=1e12, now=11.0)
    assert again.copy == ["new"] and state.used == 9  # reserved while it copies
    assert ops.copied(state, ["new"], "run:r", 12.0) == ["new"]
    assert [e.path for e in state.lru()] == ["old-held", "listed", "new"]
    assert ops.release(state, "run:r", 13.0) == 2
    assert ops.claim(state, ["listed", "new"], {}, holds=[], owner="run:s",
                     owner_until=1e12, now=14.0).done


def test_a_claim_that_cannot_fit_evicts_nothing_and_says_why():
    state = _tier(10, {"a": (4, 1.0, ["argo:w1"]), "b": (4, 2.0, ["argo:w2"])})
    claim = ops.claim(state, ["c"], {"c": 5}, holds=[], owner="run:r", owner_until=1e12,
                      now=5.0)
    assert claim.evict == [] and claim.short == 3 and claim.held_bytes == 8
    assert all(e.state == "present" for e in state.files.values())


def test_a_dead_runs_copy_is_taken_over_and_a_live_ones_waited_for():
    state = ops.TierState("t", 10)
    state.files["x"] = ops.Entry("x", 3, "copying", 1.0, owner="run:dead", owner_until=5.0)
    state.files["y"] = ops.Entry("y", 3, "copying", 1.0, owner="run:live", owner_until=99.0)
    claim = ops.claim(state, ["x", "y"], {}, holds=[], owner="run:me", owner_until=50.0,
                      now=10.0)
    assert claim.copy == ["x"] and claim.wait == ["y"]
    assert state.files["x"].owner == "run:me" and state.used == 6
    ops.abort(state, ["x"], "run:me")  # the copy failed: its bytes are free again
    assert "x" not in state.files and state.used == 3


def test_trim_after_a_lowered_capacity_keeps_held_files():
    state = _tier(10, {"a": (4, 1.0, ["argo:w"]), "b": (4, 2.0, []), "c": (2, 3.0, [])})
    state.capacity = 5
    assert ops.trim(state, owner="run:t", owner_until=1e12, now=4.0) == ["b", "c"]
    assert state.files["a"].state == "present"
