"""Remotes: the deployment's rclone remotes, by name, never with a credential.

``GET /remotes`` and ``GET /remotes/{name}`` (viewer) show each remote's name, type,
provider and where it is defined (the settings or the rclone config file); nothing else
of its options. ``POST /remotes/{name}/check`` (operator: it makes this server reach
out) lists the remote's top (or ``path``) once, briefly, and says whether it answered,
with rclone's error, credentials redacted.
"""

from __future__ import annotations

from typing import Any

from chordflow.api.security import AUTH_RESPONSES, Operator, Viewer
from chordflow.data.binary import RcloneError
from chordflow.data.probe import probe
from chordflow.data.remotes import RemoteConfigError, Remotes
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

router = APIRouter(prefix="/remotes", tags=["data"], responses={
    **AUTH_RESPONSES, 404: {"description": "No such remote."},
    503: {"description": "The remotes are misconfigured, or rclone is missing here."}})


class RemoteOut(BaseModel):
    name: str
    type: str
    provider: str | None = None
    source: str = Field(description="'settings' (CHORDFLOW_REMOTES) or 'config' "
                                    "(CHORDFLOW_RCLONE_CONFIG).")


class RemoteList(BaseModel):
    remotes: list[RemoteOut]


class RemoteCheck(BaseModel):
    name: str
    type: str
    path: str
    reachable: bool
    error: str | None = None
    elapsed: float = Field(description="Seconds the check took.")


class CheckRequest(BaseModel):
    path: str = Field(default="", max_length=4096,
                      description="A path in the remote to list (a bucket); its top "
                                  "by default.")


def _remotes(request: Request) -> Remotes:
    try:
        return Remotes.from_settings(request.app.state.settings)
    except RemoteConfigError as exc:
        raise HTTPException(503, str(exc)) from None


def _listing(remotes: Remotes) -> list[Any]:
    try:
        return remotes.listing()
    except RcloneError as exc:
        raise HTTPException(503, str(exc)) from None


@router.get("", response_model=RemoteList)
async def list_remotes(request: Request, _: Viewer) -> RemoteList:
    """Every remote of the deployment: name, type, provider, source."""
    remotes = _remotes(request)
    found = await run_in_threadpool(_listing, remotes)
    return RemoteList(remotes=[RemoteOut(**r.public()) for r in found])


@router.get("/{name}", response_model=RemoteOut)
async def get_remote(request: Request, name: str, _: Viewer) -> RemoteOut:
    """One remote: name, type, provider, source."""
    remotes = _remotes(request)
    for remote in await run_in_threadpool(_listing, remotes):
        if remote.name == name:
            return RemoteOut(**remote.public())
    raise HTTPException(404, f"no remote '{name}'")


@router.post("/{name}/check", response_model=RemoteCheck)
async def check_remote(request: Request, name: str, _: Operator,
                       body: CheckRequest | None = None) -> RemoteCheck:
    """Whether the remote answers: one short listing of its top (or ``path``)."""
    remotes = _remotes(request)
    path = body.path if body is not None else ""

    def run() -> dict[str, Any]:
        try:
            return probe(remotes, name, path)
        except RemoteConfigError as exc:
            raise HTTPException(404, str(exc)) from None
        except RcloneError as exc:
            raise HTTPException(503, str(exc)) from None

    return RemoteCheck(**await run_in_threadpool(run))
