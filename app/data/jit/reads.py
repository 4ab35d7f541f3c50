"""Reading through a tier: ``stage_in: [{tier: fast, source: ..., path: ...}]``.

The entry's ``source`` names a file of the tier: its path relative to the tier's
folders (``dataset/0210.csv``), or its full name on the secondary or the primary
(``archive:bucket/data/dataset/0210.csv``). Before the step's module starts, the file
is made present on the tier's primary (copied from the secondary if missing, evicting
as an event would) and held there for the step, so no event evicts it while the step
reads; the step then stages it from the primary through the host cache like any other
input, and the hold is dropped when the module ends (app/data/staging.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chordflow.data.jit.events import EventInvalid, clean_path
from chordflow.data.jit.replicate import make_present, release
from chordflow.data.jit.runtime import tier_named, tier_store
from chordflow.data.jit.tiers import Tier
from chordflow.data.jit.transfers import Transfers
from chordflow.data.remotes import Remotes
from chordflow.errors import StepFailed
from chordflow.modules.context import StepContext


class TierSourceInvalid(StepFailed):
    """A source that is not a file of the tier: retrying cannot help."""

    final = True


@dataclass
class TierRead:
    """A file held present on a tier's primary for one step."""

    tier: str
    path: str
    #: The file on the primary, as rclone names it: what the step stages.
    source: str
    copied: bool
    release: Callable[[], object]


def relative_path(tier: Tier, source: str, where: str) -> str:
    """``source`` as a path relative to ``tier``'s folders."""
    for prefix in (tier.secondary_path(), tier.primary_path()):
        base = prefix.rstrip("/") + "/"
        if source.startswith(base):
            source = source[len(base):]
            break
    else:
        head, colon, _ = source.partition(":")
        if colon and "/" not in head:
            raise TierSourceInvalid(f"{where}: '{source}' is not in tier '{tier.name}' "
                                    f"(under {tier.secondary_path()} or "
                                    f"{tier.primary_path()}); or name a path relative to "
                                    "the tier's folders")
    try:
        return clean_path(source, where)
    except EventInvalid as exc:
        raise TierSourceInvalid(str(exc)) from None


def read_through(tier_name: str, source: str, ctx: StepContext, where: str) -> TierRead:
    """Make ``source`` present on the tier's primary and hold it for the step
    (``ctx``'s run and step) until ``release`` is called."""
    tier = tier_named(tier_name)
    path = relative_path(tier, source, where)
    store = tier_store()
    item = "" if ctx.item_index is None else f"[{ctx.item_index}]"
    owner = f"run:{ctx.run_id}:{ctx.step}{item}:read"
    try:
        outcome = make_present(tier, [path], store=store,
                               mover=Transfers(tier, Remotes.from_settings(), ctx),
                               owner=owner, check=ctx.check)
    except BaseException:
        release(tier, owner, store=store)
        raise
    return TierRead(tier.name, path, tier.primary_path(path), bool(outcome.copied),
                    lambda: release(tier, owner, store=store))
