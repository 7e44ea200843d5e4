"""The actors: the shared task functions, sent through RabbitMQ by Dramatiq.

Importing this module builds the broker (:func:`dramatiq_impl.broker.make_broker`) and makes it
Dramatiq's global broker, so the native worker command runs them as they are::

    dramatiq dramatiq_impl.actors -p 1 -t 1              # one process, one thread, prefetch 1

The actors add nothing to :mod:`shared.tasks`.
"""

from __future__ import annotations

import dramatiq

from dramatiq_impl.broker import hello_queue, make_broker, task_queue
from shared import cli, settings, tasks

cli.tolerant_output()  # a body stdout cannot encode is escaped, not an error (shared.cli)
with cli.one_line_errors():  # a bad AMQP_URL or setting: one line, before Dramatiq starts
    broker = make_broker()
    _settings = settings.load()
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="hello", queue_name=hello_queue())
def hello(text: str) -> None:
    """Tutorial 1: print `` [x] Received <text>``."""
    tasks.hello(text)


@dramatiq.actor(actor_name="work", queue_name=task_queue())
def work(body: str) -> None:
    """Tutorial 2: one unit of work per ``.`` in ``body`` (``MQLAB_DOT_SECONDS`` each, times
    ``MQLAB_SLOWDOWN``)."""
    tasks.work(body, _settings.dot_seconds, _settings.slowdown)
