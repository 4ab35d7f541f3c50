"""The HTTP front door: a FastAPI application over the same RunService as the CLI.

``chordflow.api.app.create_app`` builds it; ``chordflow api`` serves it with uvicorn. The
engine core never imports this package, so workers never load the web stack.
"""
