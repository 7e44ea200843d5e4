"""Celery over RabbitMQ: the tutorials' hello world and work queue as Celery tasks.

``celery -A celery_impl worker -Q celery.task_queue -c 1`` finds the app here.
"""

from celery_impl.broker import app
from shared import cli

cli.tolerant_output()  # a body stdout cannot encode is escaped, not an error (shared.cli)

__all__ = ["app"]
