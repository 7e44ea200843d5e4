"""Tutorial 2 worker: take work from ``faststream.task_queue``, ack each message when its work
is done.

    python -m faststream_impl.worker                      # one slot, prefetch 1: fair dispatch
    python -m faststream_impl.worker --concurrency 4      # four tasks at once, prefetch 4
    python -m faststream_impl.worker --prefetch 0         # unlimited: plain round-robin
    faststream run faststream_impl.app:app                # the same, with FastStream's command

It reads in the tutorial's order: connect (the ``RabbitBroker``), declare the durable queue
(``RabbitQueue(durable=True)``), ``basic_qos`` (``Channel(prefetch_count=...)``), the callback
(the subscriber), consume (the app).

* ``ack_policy=AckPolicy.REJECT_ON_ERROR`` (FastStream's default, named here): the message is
  acknowledged only after the handler returned, so a worker that dies mid-task leaves it
  unacked and RabbitMQ redelivers it, flagged ``redelivered``; a handler that raises rejects it
  without requeue. ``--ack-first`` (``AckPolicy.ACK_FIRST``) acks on receipt instead: the
  negative control that loses the message in hand when the worker dies.
* ``Channel(prefetch_count=N x --prefetch)``: RabbitMQ gives a worker a new message only once
  it acked one (fair dispatch). FastStream's default ``Channel()`` sends no ``basic.qos`` at
  all: unlimited prefetch, every ready message lands on the first worker up.
* The work runs on ``--concurrency`` slot threads, never on the event loop that sends the
  heartbeats (:mod:`faststream_impl.consumer`, which also holds the warm shutdown and the
  reconnect).
* A message it cannot process (a body that is not UTF-8; a task that raised on each of its
  ``MAX_ATTEMPTS`` runs) is rejected without requeue (``RejectMessage``), so RabbitMQ parks it
  in ``faststream.task_queue.dead``, and the worker goes on (:mod:`shared.poison`).
"""

from __future__ import annotations

import asyncio

import aiormq.exceptions

from faststream_impl.broker import run_app, task_queue, translate
from faststream_impl.consumer import GiveUp
from faststream_impl.subscriber import build, parser
from shared import cli


def main() -> int:
    args = cli.parse_worker_args(parser("python -m faststream_impl.worker", __doc__))
    give_up = GiveUp()
    try:
        asyncio.run(run_app(build(args, give_up)))
    except aiormq.exceptions.AMQPError as e:  # e.g. 403 on consume after permissions changed
        raise translate(e, None, "consume", task_queue()) from e
    if give_up.error is not None:
        error = translate(give_up.error, None, "connect")
        raise type(error)(f"{error} (gave up reconnecting)") from give_up.error
    return 0


if __name__ == "__main__":
    cli.run(main)
