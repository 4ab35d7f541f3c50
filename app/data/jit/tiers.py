"""The tiers of a deployment (``CHORDFLOW_JIT_TIERS``) and which tier an event means.

``CHORDFLOW_JIT_TIERS`` is a JSON object, tier name -> options::

    {"fast": {"primary": "scratch:cache/data",      # REMOTE:folder, near the compute
              "secondary": "archive:bucket/data",   # REMOTE:folder, the origin
              "capacity": "50GiB",                  # bytes, or with a unit
              "primary_endpoint": "https://scruffy.example:9000",     # optional
              "secondary_endpoint": "https://data.example:443"}}      # optional

Remotes are the deployment's (``CHORDFLOW_REMOTES`` or the rclone config file): a tier
names them, never a credential. ``capacity`` is where a tier starts; ``PATCH
/api/v1/jit/tiers/{name}`` (``chordflow jit capacity``) changes it at run time, and a
changed ``capacity`` here wins again at the next use (the latest change wins).

An Argo event names its endpoints as URLs and its folders as paths. Its tier is the one
named (``?tier=``, a plain event's ``tier``), else the one whose primary and secondary
both match: an endpoint matches a remote by the remote's name, its configured
``endpoint`` or ``url``, or the tier's ``primary_endpoint``/``secondary_endpoint``; a
folder matches the folder after the remote's colon.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from chordflow.data.jit.events import EventInvalid, JitEvent
from chordflow.errors import ChordflowError
from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator


class TierConfigError(ChordflowError):
    """``CHORDFLOW_JIT_TIERS`` is wrong, or names an unknown tier; says which and why."""


class Tier(BaseModel):
    """One tier: where its files live, how much room they have, how its runs run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=100)
    primary: str = Field(description="REMOTE:folder where the files are made present.")
    secondary: str = Field(description="REMOTE:folder the files are copied from.")
    capacity: ByteSize = Field(description="Bytes the primary may hold (or '50GiB').")
    primary_endpoint: str | None = None
    secondary_endpoint: str | None = None
    #: How long a workflow's hold lasts without its finished event (a lost event must
    #: not pin files forever).
    hold_seconds: float = Field(default=24 * 3600.0, gt=0)
    #: The timeout of a replication step; also how long a copy under way is trusted to
    #: its run before another event may take it over (a killed worker's copy).
    copy_timeout: float = Field(default=3600.0, gt=0, le=7 * 86400)
    retries: int = Field(default=2, ge=0, le=100)
    retry_delay: float = Field(default=5.0, ge=0, le=86400)
    #: rclone's ``--transfers``: files copied at once.
    transfers: int = Field(default=4, ge=1, le=256)
    #: The Celery queue of the tier's runs (workers near the primary); None: default.
    queue: str | None = None

    @field_validator("primary", "secondary")
    @classmethod
    def _remote_path(cls, value: str) -> str:
        remote, colon, _ = value.partition(":")
        if not colon or not remote or "/" in remote:
            raise ValueError(f"{value!r} is not REMOTE:folder (a remote's name, a colon, "
                             "then the folder)")
        return value

    @property
    def primary_remote(self) -> str:
        return self.primary.partition(":")[0]

    @property
    def secondary_remote(self) -> str:
        return self.secondary.partition(":")[0]

    @property
    def primary_folder(self) -> str:
        return _folder(self.primary.partition(":")[2])

    @property
    def secondary_folder(self) -> str:
        return _folder(self.secondary.partition(":")[2])

    def primary_path(self, path: str = "") -> str:
        """``REMOTE:folder/path`` on the primary, as rclone names it."""
        return _join(self.primary_remote, self.primary_folder, path)

    def secondary_path(self, path: str = "") -> str:
        return _join(self.secondary_remote, self.secondary_folder, path)

    def public(self) -> dict[str, Any]:
        """What the API shows of the tier's configuration (remote names, no option)."""
        return {"name": self.name, "primary": self.primary, "secondary": self.secondary,
                "configured_capacity": int(self.capacity),
                "hold_seconds": self.hold_seconds, "copy_timeout": self.copy_timeout,
                "queue": self.queue}


def _folder(text: str) -> str:
    return text.strip("/")


def _join(remote: str, folder: str, path: str) -> str:
    inner = "/".join(p for p in (folder, path.strip("/")) if p)
    return f"{remote}:{inner}"


def load_tiers(entries: Mapping[str, Any]) -> dict[str, Tier]:
    """The tiers of ``CHORDFLOW_JIT_TIERS``; TierConfigError naming tier and field."""
    tiers: dict[str, Tier] = {}
    for name, options in entries.items():
        if not isinstance(options, Mapping):
            raise TierConfigError(f"CHORDFLOW_JIT_TIERS: tier '{name}' must be an object")
        try:
            tiers[name] = Tier.model_validate({**options, "name": name})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                for e in exc.errors())
            raise TierConfigError(f"CHORDFLOW_JIT_TIERS: tier '{name}': {problems}") from None
    return tiers


def get_tier(tiers: Mapping[str, Tier], name: str) -> Tier:
    try:
        return tiers[name]
    except KeyError:
        known = ", ".join(sorted(tiers)) or "none is configured (CHORDFLOW_JIT_TIERS)"
        raise TierConfigError(f"no tier '{name}' (tiers: {known})") from None


#: Per remote name, what an event may call it besides its name (its endpoint, url).
RemoteNames = Mapping[str, Iterable[str]]


def remote_names(remotes: Iterable[Any]) -> dict[str, list[str]]:
    """What events may call each remote: its configured ``endpoint`` or ``url``
    (from chordflow.data.remotes.Remote objects; never a credential)."""
    names: dict[str, list[str]] = {}
    for remote in remotes:
        options = getattr(remote, "options", {}) or {}
        names[remote.name] = [str(options[k]) for k in ("endpoint", "url") if options.get(k)]
    return names


def _norm(value: str) -> str:
    return value.strip().rstrip("/:").lower()


def _matches(endpoint: str | None, remote: str, alias: str | None,
             names: RemoteNames) -> bool:
    if endpoint is None:
        return True
    wanted = _norm(endpoint)
    candidates = [remote, *(names.get(remote) or ()), *([alias] if alias else [])]
    return any(_norm(c) == wanted for c in candidates)


def _mismatch(event: JitEvent, tier: Tier, names: RemoteNames) -> tuple[str, str] | None:
    """The first field of ``event`` that says it is not about ``tier`` (field, why)."""
    checks = (
        ("primary_endpoint", _matches(event.primary_endpoint, tier.primary_remote,
                                      tier.primary_endpoint, names), tier.primary_remote),
        ("secondary_endpoint", _matches(event.secondary_endpoint, tier.secondary_remote,
                                        tier.secondary_endpoint, names),
         tier.secondary_remote),
        ("primary_folder", event.primary_folder is None
         or _folder(event.primary_folder) == tier.primary_folder, tier.primary_folder),
        ("secondary_folder", event.secondary_folder is None
         or _folder(event.secondary_folder) == tier.secondary_folder,
         tier.secondary_folder),
    )
    for name, ok, ours in checks:
        if not ok:
            return name, f"{getattr(event, name)!r} is not tier '{tier.name}''s ({ours!r})"
    return None


def match_tier(event: JitEvent, tiers: Mapping[str, Tier], names: RemoteNames,
               chosen: str | None = None) -> Tier:
    """The tier ``event`` is about (see the module docstring); EventInvalid naming the
    field that matches no tier (or matches several)."""
    name = chosen or event.tier
    if name is not None:
        if name not in tiers:
            known = ", ".join(sorted(tiers)) or "none is configured (CHORDFLOW_JIT_TIERS)"
            raise EventInvalid(f"no tier '{name}' (tiers: {known})", "tier")
        wrong = _mismatch(event, tiers[name], names)
        if wrong is not None:
            raise EventInvalid(wrong[1], wrong[0])
        return tiers[name]
    if event.primary_endpoint is None and event.primary_folder is None:
        raise EventInvalid("name the tier (tier, or ?tier=) or the primary_endpoint and "
                           "primary_folder", "tier")
    found = [t for t in tiers.values() if _mismatch(event, t, names) is None]
    if len(found) == 1:
        return found[0]
    if not found:
        raise EventInvalid(
            f"no tier has primary {event.primary_endpoint!r} folder "
            f"{event.primary_folder!r} and secondary {event.secondary_endpoint!r} folder "
            f"{event.secondary_folder!r} (tiers: {', '.join(sorted(tiers)) or 'none'})",
            "primary_endpoint")
    raise EventInvalid(f"the event matches tiers {', '.join(t.name for t in found)}; "
                       "name one (tier, or ?tier=)", "tier")
