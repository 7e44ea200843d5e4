"""Node provisioning: provider choice, the Docker provider where an engine answers, and what
an external broker refuses to do."""

from __future__ import annotations

import socket

import pytest

from shared.errors import BrokerUnavailable
from testbed import provider
from testbed.docker_node import DockerNode, docker_engine_available
from testbed.local_node import LocalNode
from testbed.node import ExternalNode, Node
from testbed.process import wait_until
from tests.helpers import restart_nodes_without_statistics


def test_auto_takes_an_explicit_amqp_url_as_external(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@example.invalid:5672/%2F")
    monkeypatch.delenv("MQLAB_BROKER", raising=False)
    chosen = provider.make_node()
    assert isinstance(chosen, ExternalNode)
    assert chosen.management_url == "http://example.invalid:15672"
    assert not chosen.can_kill
    with pytest.raises(NotImplementedError):
        chosen.kill()


def test_auto_without_any_rabbitmq_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.delenv("MQLAB_BROKER", raising=False)
    monkeypatch.setattr(provider, "local_binary_available", lambda: False)
    monkeypatch.setattr(provider, "docker_engine_available", lambda: False)
    with pytest.raises(BrokerUnavailable, match="apt-get install rabbitmq-server"):
        provider.make_node()


def test_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQLAB_BROKER", "podman")
    with pytest.raises(ValueError, match="auto, local, docker, cluster, netns or external"):
        provider.make_node()


def test_external_broker_answers(broker: Node) -> None:
    """The external provider against a live node: URLs, versions and queue figures work."""
    external = ExternalNode(broker.amqp_url, broker.management_url)
    external.start()
    assert external.management.versions()["rabbitmq"] == broker.management.versions()["rabbitmq"]
    assert external.management.queue("mqlabtest.no-such-queue") is None


@pytest.mark.broker  # starts a node in Docker itself
@pytest.mark.timeout(300)
def test_docker_provider_kill_and_start() -> None:
    if not docker_engine_available():
        pytest.skip("no Docker engine answers here; the docker provider needs one")
    with provider.provision("docker") as b:
        assert isinstance(b, DockerNode)
        url = b.amqp_url
        b.kill()
        b.start()
        assert b.amqp_url == url
        assert b.management.versions()["rabbitmq"]


@pytest.mark.destructive
@pytest.mark.timeout(120)
def test_a_node_whose_management_agent_died_is_restarted(killable_broker: Node) -> None:
    """The broker fixture's repair for RabbitMQ 3.10.8's management agent crash: the agent
    stopped as the bug leaves it (its top supervisor gone), the node is restarted and serves
    statistics again."""
    node = killable_broker
    if not isinstance(node, LocalNode):
        pytest.skip(f"needs a local node; this one is {node.provider}")
    assert restart_nodes_without_statistics(node) == []  # negative control: healthy, left alone
    node.rabbitmqctl("eval", "exit(whereis(rabbit_mgmt_agent_sup_sup), kill).")
    wait_until(node.management.agent_failed, 30, what="the management agent to be down")
    assert restart_nodes_without_statistics(node) == [node.node]
    assert not node.management.agent_failed()


@pytest.mark.broker  # boots a node of its own
@pytest.mark.timeout(240)  # below the 600 s given to wait_ready: a missed BOOT FAILED hangs here
def test_a_node_that_cannot_boot_fails_with_its_reason_not_a_timeout() -> None:
    """A node whose management port is taken fails its boot (``BOOT FAILED``, ``eaddrinuse``):
    ``wait_ready`` raises with this boot's output instead of waiting out its timeout. The port
    taken is the management API's: the socket holding it never answers HTTP, where one on the
    AMQP port would accept the readiness check's TCP connect itself (RabbitMQ starts the AMQP
    listeners last, after the plugins). Control: the same node, launched again once the port
    is free, boots and serves."""
    node = LocalNode()
    with node, socket.socket() as taken:
        taken.bind(("127.0.0.1", node.management_port))
        taken.listen()
        node.launch()
        with pytest.raises(RuntimeError, match="failed to start") as failed:
            node.wait_ready(timeout=600)
        assert "BOOT FAILED" in str(failed.value) and "eaddrinuse" in str(failed.value)
        node.kill()
        taken.close()
        node.start()
        assert node.amqp_accepts() and node.management.answers()
