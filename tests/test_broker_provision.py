"""Broker provisioning: provider choice, the Docker provider where an engine answers, and what
an external broker refuses to do."""

from __future__ import annotations

import pytest

from shared import broker as broker_module
from shared.broker import Broker, DockerBroker, ExternalBroker, docker_engine_available
from shared.errors import BrokerUnavailable


def test_auto_takes_an_explicit_amqp_url_as_external(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMQP_URL", "amqp://u:p@example.invalid:5672/%2F")
    monkeypatch.delenv("MQLAB_BROKER", raising=False)
    chosen = broker_module.make_broker()
    assert isinstance(chosen, ExternalBroker)
    assert chosen.management_url == "http://example.invalid:15672"
    assert not chosen.can_kill
    with pytest.raises(NotImplementedError):
        chosen.kill()


def test_auto_without_any_rabbitmq_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMQP_URL", raising=False)
    monkeypatch.delenv("MQLAB_BROKER", raising=False)
    monkeypatch.setattr(broker_module, "local_binary_available", lambda: False)
    monkeypatch.setattr(broker_module, "docker_engine_available", lambda: False)
    with pytest.raises(BrokerUnavailable, match="apt-get install rabbitmq-server"):
        broker_module.make_broker()


def test_unknown_provider_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQLAB_BROKER", "podman")
    with pytest.raises(ValueError, match="auto, local, docker or external"):
        broker_module.make_broker()


def test_external_broker_answers(broker: Broker) -> None:
    """The external provider against a live node: URLs, versions and queue figures work."""
    external = ExternalBroker(broker.amqp_url)
    external.management_url = broker.management_url
    external.start()
    assert external.versions()["rabbitmq"] == broker.versions()["rabbitmq"]
    assert external.queue("mqlabtest.no-such-queue") is None


@pytest.mark.timeout(300)
def test_docker_provider_kill_and_start() -> None:
    if not docker_engine_available():
        pytest.skip("no Docker engine answers here; the docker provider needs one")
    with Broker.provision("docker") as b:
        assert isinstance(b, DockerBroker)
        url = b.amqp_url
        b.kill()
        b.start()
        assert b.amqp_url == url
        assert b.versions()["rabbitmq"]
