"""The ASGI application uvicorn serves (``app.api.main:app``), from ``CHORDFLOW_*``."""

from app.api.app import create_app

app = create_app()
