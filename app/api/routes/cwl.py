"""``POST /api/v1/workflows/submit-cwl``: a CWL document and its job object, run as a
chordflow workflow (docs/cwl.md), answered as ``/workflows/submit`` answers.

The document comes packed (one JSON or YAML object, a ``$graph`` or a single process)
or with its imports: ``files`` maps each relative path its ``run:`` or ``$import``
names to that file's text. It is loaded, validated and packed here; the run records
the packed document, so the workers need none of these files. Files the job object
names must be where the workers can read them (absolute paths or URIs). Output files
go to ``<CHORDFLOW_WORKDIR>/cwl-outputs/<run id>`` on the workers; the run's
``outputs.cwl`` is the output object, naming them there.

A CWL document runs the caller's commands: it is inline code, so an operator key may
submit it only where the admin allows operators the ``cwl`` module
(``CHORDFLOW_OPERATOR_MODULES``); an author's may. Errors: 422 naming the field (an
invalid document or job, a path outside ``files``), 400 for a document that needs
what the workers cannot give (a required container without Docker or Podman).
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import yaml
from chordflow.api.routes.compat import SubmitResponse
from chordflow.api.routes.runs import submit_run
from chordflow.api.schemas import RunCreate
from chordflow.api.security import AUTH_RESPONSES, Operator
from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel, Field

router = APIRouter(prefix="/workflows", tags=["cwl"], responses=AUTH_RESPONSES)
log = logging.getLogger("chordflow.api.cwl")

#: The document's file name in the directory it is loaded from.
MAIN_FILE = "workflow.cwl"


class CwlSubmission(BaseModel):
    document: dict[str, Any] | str = Field(
        description="The CWL document: an object, or its YAML/JSON text (packed, or "
                    "with its imports in files).")
    job: dict[str, Any] = Field(default_factory=dict, description="The job object.")
    files: dict[str, str] = Field(
        default_factory=dict, description="Relative path -> text of each file the "
        "document imports or runs (run: tool.cwl).")


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise HTTPException(422, f"files.{name}: must be a relative path inside the "
                                     "document's folder")
        path = folder.joinpath(*relative.parts)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:  # NUL, a lone surrogate, a name too long
            raise HTTPException(422, f"files.{name!r}: cannot be a file here: "
                                     f"{exc}") from None


@router.post("/submit-cwl", response_model=SubmitResponse,
             responses={400: {"description": "The document needs what the workers lack."},
                        422: {"description": "An invalid CWL document or job object."}})
def submit_cwl(request: Request, principal: Operator,
               body: Annotated[CwlSubmission, Body()]) -> SubmitResponse:
    """Submit a CWL workflow or tool with its job object, to run now."""
    from chordflow.cwl.convert import cwl_document
    from chordflow.cwl.document import CwlInvalid, CwlUnsupported

    settings = request.app.state.settings
    outdir = Path(settings.workdir) / "cwl-outputs" / uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="chordflow-cwl-") as folder:
        _write(Path(folder), body.files)
        text = body.document if isinstance(body.document, str) else \
            yaml.safe_dump(body.document, sort_keys=False)
        try:
            (Path(folder) / MAIN_FILE).write_text(text, encoding="utf-8")
        except ValueError as exc:  # a lone surrogate
            raise HTTPException(422, f"document: not text: {exc}") from None
        try:
            doc = cwl_document(Path(folder) / MAIN_FILE, body.job, outdir, base=folder)
        except CwlUnsupported as exc:
            raise HTTPException(400, f"document: {exc}") from None
        except CwlInvalid as exc:
            raise HTTPException(422, f"document: {exc}") from None
        except Exception as exc:  # what the CWL libraries raise on input they cannot read
            log.info("a CWL document could not be loaded", exc_info=True)
            raise HTTPException(422, f"document: could not be loaded "
                                     f"({type(exc).__name__}: {exc})") from None
    try:
        created, _ = submit_run(request, principal, RunCreate(workflow=doc), None,
                                trigger="api")
    except OverflowError:  # pymongo's, for an int a MongoDB document cannot hold
        raise HTTPException(422, "document: an integer beyond 8 bytes, which the run's "
                                 "records in MongoDB cannot hold") from None
    return SubmitResponse(workflow_id=created.run_id, status="pending",
                          message="Workflow submitted successfully")
