"""The Celery application and worker entry point (issue #3)."""
