"""The ASGI application uvicorn serves (``chordflow.api.main:app``), from ``CHORDFLOW_*``."""

from chordflow.api.app import create_app

app = create_app()
