"""``jit``: just-in-time tiers, as steps (what ``POST /api/v1/jit/events`` runs).

- ``replicate``: make files present on a tier's primary, copying the missing ones from
  its secondary and evicting least recently used unheld files to stay under capacity;
  the files stay held for ``holder`` (an event's workflow) until its finished event.
- ``release``: drop a holder's holds (a workflow's finished event).
- ``trim``: evict until the tier fits its capacity again (after it was lowered).

The tiers are the worker's ``CHORDFLOW_JIT_TIERS`` (the same as the API's), their state
the deployment's MongoDB (app/data/jit/). A step is one run's work on a tier: a retried
attempt continues the reservations of the one before, a cancel kills rclone and gives
back what was not copied.
"""

from __future__ import annotations

from typing import Any

from chordflow.data.jit.events import EventInvalid, clean_path
from chordflow.data.jit.replicate import make_present
from chordflow.data.jit.replicate import release as release_holds
from chordflow.data.jit.replicate import trim as trim_tier
from chordflow.data.jit.runtime import tier_named, tier_store
from chordflow.data.jit.transfers import Transfers
from chordflow.data.remotes import Remotes
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext
from chordflow.modules.registry import StepModule

#: runs_code=False: it copies and deletes files between the admin's configured tiers.
module = StepModule("jit", "Just-in-time tiers: make files present on a tier's primary.",
                    runs_code=False)


class BadFiles(StepFailed):
    final = True


def _owner(ctx: StepContext) -> str:
    """This step's run: owns its reservations across attempts and holds its files."""
    item = "" if ctx.item_index is None else f"[{ctx.item_index}]"
    return f"run:{ctx.run_id}:{ctx.step}{item}"


@module.method
def replicate(ctx: StepContext, tier: str, files: list[str],
              holder: str | None = None) -> dict[str, Any]:
    """Make files present on a tier's primary; outputs copied, evicted, bytes, used.

    tier: the tier's name (CHORDFLOW_JIT_TIERS).
    files: paths relative to the tier's folders.
    holder: who keeps the files held once this step is done (an Argo workflow,
        "argo:<uid>"), until its release or the tier's hold_seconds.
    """
    try:
        paths = [clean_path(f, f"files[{i}]") for i, f in enumerate(files)]
    except EventInvalid as exc:
        raise BadFiles(f"params.{exc}") from None
    config = tier_named(tier)
    store = tier_store()
    owner = _owner(ctx)
    try:
        outcome = make_present(config, paths, store=store,
                               mover=Transfers(config, Remotes.from_settings(), ctx),
                               owner=owner, holder=holder, check=ctx.check)
    finally:
        release_holds(config, owner, store=store)
    ctx.logger.info("tier %s: %d files present, %d copied (%d bytes), %d evicted "
                    "(%d bytes); %d of %d bytes used", tier, outcome.files,
                    len(outcome.copied), outcome.bytes_copied, len(outcome.evicted),
                    outcome.bytes_evicted, outcome.used, outcome.capacity)
    return outcome.outputs()


@module.method
def release(ctx: StepContext, tier: str, holder: str) -> dict[str, Any]:
    """Drop a holder's holds on a tier's files; outputs released (how many).

    tier: the tier's name.
    holder: whose holds ("argo:<uid>").
    """
    count = release_holds(tier_named(tier), holder, store=tier_store())
    return {"tier": tier, "holder": holder, "released": count}


@module.method
def trim(ctx: StepContext, tier: str) -> dict[str, Any]:
    """Evict least recently used unheld files until a tier fits its capacity.

    tier: the tier's name.
    """
    config = tier_named(tier)
    outcome = trim_tier(config, store=tier_store(),
                        mover=Transfers(config, Remotes.from_settings(), ctx),
                        owner=_owner(ctx))
    return outcome.outputs()
