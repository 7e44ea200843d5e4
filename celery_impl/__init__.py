"""Celery over RabbitMQ: the tutorials' hello world and work queue as Celery tasks.

``celery -A celery_impl worker -Q celery.task_queue -c 1`` finds the app here.
"""

from celery_impl.broker import app

__all__ = ["app"]
