"""Tutorial 1 consumer: print every message from the ``hello`` queue.

python -m raw_pika.receive
"""

from __future__ import annotations

import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from raw_pika.broker import connect, declare_hello_queue, hello_queue
from shared import cli, pika_errors, settings, tasks
from shared.errors import BrokerUnreachable


def main() -> int:
    cli.receive_args("python -m raw_pika.receive", __doc__)
    connected = connect()
    connection, params = connected.connection, connected.params
    queue = hello_queue()
    try:
        channel = connection.channel()
        declare_hello_queue(channel, queue, params)
    except pika.exceptions.ConnectionClosedByBroker as e:  # 541: quorum queue without quorum
        raise pika_errors.translate(e, params, queue, "declare") from e

    def callback(
        ch: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        tasks.hello(body.decode("utf-8", errors="replace"))

    # Tutorial 1 acknowledges on delivery (auto_ack); tutorial 2's worker does better.
    try:
        channel.basic_consume(queue=queue, on_message_callback=callback, auto_ack=True)
        print(f" [*] Connected to {settings.broker_address(settings.load().amqp_url)}", flush=True)
        print(" [*] Waiting for messages. To exit press CTRL+C", flush=True)
        channel.start_consuming()
    except KeyboardInterrupt:  # Ctrl+C: the tutorial's way to stop, a clean exit (0)
        print(" [*] Interrupted", flush=True)
        connection.close()
    except pika.exceptions.ChannelClosedByBroker as e:  # 403: no read permission
        raise pika_errors.translate(e, params, queue, "consume") from e
    except pika.exceptions.AMQPConnectionError as e:  # the node stopped or crashed
        raise BrokerUnreachable(
            f"lost the connection to RabbitMQ ({pika_errors.root_cause(e)}); tutorial 1's "
            "receiver does not reconnect: start it again"
        ) from e
    return 0


if __name__ == "__main__":
    cli.run(main)
