"""The Celery tasks that run steps (issue #3)."""
