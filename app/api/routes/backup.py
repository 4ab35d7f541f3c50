"""Backup and restore (chordflow.api.backup): admin keys only.

``GET /api/v1/backup?sections=...`` downloads the ZIP (all sections by default);
``POST /api/v1/restore?sections=...`` restores one, sent as the request body
(``application/zip``) or as the multipart field ``file`` (with an optional form field
``sections``), as the replaced platform's ``POST /restore`` took it. Its
``GET /backup`` and ``POST /restore`` answer the same, at its paths. Both are audited
(``backup.download``, ``backup.restore``). The restore's answer lists, by section,
what it created, updated and left unchanged, and ``errors``; ``status`` is false when
there are any (what could be restored was).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from chordflow.api.audit import audit
from chordflow.api.backup import BadBackup, Stores, make_backup, restore_backup, sections_of
from chordflow.api.security import AUTH_RESPONSES, Admin
from fastapi import APIRouter, HTTPException, Query, Request, Response

router = APIRouter(tags=["backup"], responses=AUTH_RESPONSES)

Sections = Annotated[str | None, Query(
    description="Comma-separated: workflows, schedules, connections, modules (default: "
                "all).")]

_ZIP: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {}}, "description": "The backup (ZIP)."}}
_RESTORE_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/zip": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "file": {"type": "string", "format": "binary"},
        "sections": {"type": "string"}}, "required": ["file"]}}}}}


def stores_of(request: Request) -> Stores:
    state = request.app.state
    return Stores(library=state.library, schedules=state.schedules,
                  connections=getattr(state, "connections", None),
                  module_dirs=[Path(p) for p in state.settings.modules_path])


def _chosen(text: str | None) -> tuple[str, ...]:
    try:
        return sections_of(text)
    except BadBackup as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/api/v1/backup", response_class=Response, responses=_ZIP)
@router.get("/backup", response_class=Response, responses=_ZIP, include_in_schema=False)
def download_backup(request: Request, principal: Admin, sections: Sections = None) -> Response:
    """A ZIP of the stored workflows (every version), schedules, connections (no
    credential: the names of the secrets only) and module files."""
    chosen = _chosen(sections)
    data = make_backup(stores_of(request), chosen, by=principal.name)
    audit(request, principal, "backup.download", "backup", sections=list(chosen),
          bytes=len(data))
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    return Response(data, media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="chordflow_backup_{stamp}.zip"'})


@router.post("/api/v1/restore", openapi_extra=_RESTORE_BODY)
@router.post("/restore", include_in_schema=False)
async def restore(request: Request, principal: Admin, sections: Sections = None
                  ) -> dict[str, Any]:
    """Restore a backup; never deletes (see chordflow.api.backup)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(400, "no file: send the backup as the multipart field "
                                     "'file' (or as an application/zip body)")
        data = await upload.read()
        given = form.get("sections")
        sections = sections or (given if isinstance(given, str) else None)
    else:
        data = await request.body()
    chosen = _chosen(sections)
    from fastapi.concurrency import run_in_threadpool

    try:
        report = await run_in_threadpool(restore_backup, stores_of(request), data, chosen,
                                         principal.name)
    except BadBackup as exc:
        raise HTTPException(400, str(exc)) from None
    audit(request, principal, "backup.restore", "backup", sections=list(chosen),
          restored={k: {o: len(v) for o, v in d.items()} for k, d in report.restored.items()},
          errors=len(report.errors))
    return report.to_dict()
