"""RabbitMQ in a container (``rabbitmq:3-management``) through testcontainers-python.

Used when no local binary is installed and a Docker engine answers; skipped with a clear reason
otherwise.
"""

from __future__ import annotations

import secrets

from shared.errors import BrokerUnavailable
from testbed.node import Node, free_port


def docker_engine_available() -> bool:
    """Whether a Docker engine answers (not just the client being installed)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


class DockerNode(Node):
    """``rabbitmq:3-management`` in a container, via testcontainers-python.

    Host ports are bound explicitly so they survive :meth:`kill` / :meth:`start` (Docker assigns
    new random ports to a restarted container otherwise), and clients keep their URL.

    Raises:
        BrokerUnavailable: no Docker engine answers.
    """

    provider = "docker"
    can_kill = True
    image = "rabbitmq:3-management"

    def __init__(self) -> None:
        if not docker_engine_available():
            raise BrokerUnavailable("no Docker engine answers (is the daemon running?)")
        from testcontainers.rabbitmq import RabbitMqContainer

        self.amqp_port, self.management_port = free_port(), free_port()
        # A random password instead of guest/guest (RABBITMQ_DEFAULT_USER / _PASS).
        user, password = "mqlab", secrets.token_urlsafe(18)
        self.container = (
            RabbitMqContainer(self.image, username=user, password=password)
            .with_bind_ports(5672, self.amqp_port)
            .with_bind_ports(15672, self.management_port)
        )
        self.amqp_url = f"amqp://{user}:{password}@127.0.0.1:{self.amqp_port}/%2F"
        self.management_url = f"http://127.0.0.1:{self.management_port}"
        self._started = False

    def start(self) -> None:
        """Start the container (or start the killed one again) and wait until ready."""
        if not self._started:
            self.container.start()
            self._started = True
        else:
            self.container.get_wrapped_container().start()
        self.wait_ready()

    def kill(self) -> None:
        """``docker kill`` (SIGKILL) the container, keeping its data."""
        self.container.get_wrapped_container().kill()

    def close(self) -> None:
        """Stop and remove the container."""
        if self._started:
            self.container.stop()
