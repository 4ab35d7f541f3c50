"""Transfers: one rclone operation as a one-step run (``POST /transfers``, operator).

The body names the ``rclone`` module's method (``copy`` by default) and its params;
the run is the workflow ``transfer`` of app/data/transfers.py, submitted like an inline
run (so ``CHORDFLOW_OPERATOR_MODULES`` applies: ``rclone`` is allowed to operators
unless the admin says otherwise) and answered as ``POST /runs`` answers: follow it at
``links.events``, read it at ``/runs/{run_id}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from chordflow.api.routes.runs import submit_run
from chordflow.api.schemas import ErrorBody, RunCreate, RunCreated
from chordflow.api.security import AUTH_RESPONSES, Operator
from chordflow.data.transfers import DEFAULT_RETRIES, transfer_document
from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

router = APIRouter(prefix="/transfers", tags=["data"], responses={**AUTH_RESPONSES})

Method = Literal["copy", "copyto", "sync", "move", "delete", "purge", "mkdir", "lsjson",
                 "size", "check", "hashsum"]


class TransferCreate(BaseModel):
    """One rclone operation. ``source``/``dest`` for copy, copyto, sync, move and check;
    ``path`` for delete, purge, mkdir, lsjson, size and hashsum."""

    model_config = ConfigDict(extra="forbid")

    method: Method = "copy"
    source: str | None = Field(default=None, max_length=4096,
                               description="'REMOTE:path' (or a path on the worker).")
    dest: str | None = Field(default=None, max_length=4096)
    path: str | None = Field(default=None, max_length=4096)
    include: list[str] | None = None
    exclude: list[str] | None = None
    dry_run: bool | None = None
    checksum: bool | None = None
    flags: dict[str, Any] | None = Field(
        default=None, description="rclone flags from the module's fixed set "
                                  "(transfers, bwlimit, max_age, ...).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Any other param of the method (recursive, "
                                          "hash, ...).")
    retries: int = Field(default=DEFAULT_RETRIES, ge=0, le=100)
    retry_delay: float | None = Field(default=None, ge=0, le=86400)
    timeout: float | None = Field(default=None, gt=0, le=7 * 86400)
    queue: str | None = Field(default=None, min_length=1, max_length=200)

    def document(self) -> dict[str, Any]:
        params = {**self.params, "source": self.source, "dest": self.dest,
                  "path": self.path, "include": self.include, "exclude": self.exclude,
                  "dry_run": self.dry_run, "checksum": self.checksum, "flags": self.flags}
        return transfer_document(self.method, params, retries=self.retries,
                                 retry_delay=self.retry_delay, timeout=self.timeout,
                                 queue=self.queue)


@router.post("", status_code=201, response_model=RunCreated,
             responses={200: {"model": RunCreated, "description": "Replayed (the same "
                              "Idempotency-Key)."},
                        422: {"model": ErrorBody, "description": "A bad param, named "
                              "(step 'transfer', field params.X)."},
                        503: {"model": ErrorBody, "description": "The store or the "
                              "broker is unavailable; see Retry-After."}})
def create_transfer(
    request: Request, response: Response, body: TransferCreate, principal: Operator,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> RunCreated:
    """Run one rclone operation as a one-step run of the workflow ``transfer``."""
    created, new = submit_run(request, principal, RunCreate(workflow=body.document()),
                              idempotency_key, trigger="transfer")
    if not new:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return created
