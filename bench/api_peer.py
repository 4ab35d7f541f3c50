"""The peer of bench/api_load.py: the submission path of the FastAPI + MongoDB DAG
engine chordflow replaces, reduced to its floor. ``POST /submit`` stores the workflow
document in MongoDB and sends one Celery message; ``GET /status/{id}`` reads the
document back. No validation, no auth, no per-step records.

Served by bench/api_load.py as ``uvicorn bench.api_peer:app`` with the same worker
count and the same ``CHORDFLOW_*`` settings as chordflow's API.
"""

from __future__ import annotations

import uuid
from typing import Any

import pymongo
from chordflow.config import get_settings
from chordflow.workers.celery_app import make_celery
from fastapi import FastAPI, HTTPException

settings = get_settings()
celery = make_celery(settings)
collection = pymongo.MongoClient(settings.mongo_url)[settings.mongo_db]["peer_workflows"]
app = FastAPI()


@app.post("/submit")
def submit(workflow: dict[str, Any]) -> dict[str, str]:
    workflow_id = uuid.uuid4().hex
    collection.insert_one({"_id": workflow_id, "workflow": workflow, "status": "pending"})
    celery.send_task("bench.peer.noop", args=[workflow_id], queue="peer", ignore_result=True)
    return {"workflow_id": workflow_id, "status": "pending"}


@app.get("/status/{workflow_id}")
def status(workflow_id: str) -> dict[str, Any]:
    doc = collection.find_one({"_id": workflow_id})
    if doc is None:
        raise HTTPException(404, "no such workflow")
    return {"workflow_id": workflow_id, "status": doc["status"]}
