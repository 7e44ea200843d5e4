"""docker-compose.yml is valid Compose, and runs what the README says (validated without an
engine: ``docker-compose config`` checks the file against the Compose schema client-side)."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import IMPLEMENTATIONS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose")

pytestmark = pytest.mark.skipif(
    COMPOSE is None, reason="docker-compose is not installed (apt-get install docker-compose)"
)


def _config(path: Path) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [COMPOSE, "-f", str(path), "config"], capture_output=True, text=True, timeout=60
    )


@functools.cache
def _repo_config() -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of the repository's file, run once for the tests that read it."""
    return _config(ROOT / "docker-compose.yml")


def test_compose_file_is_valid() -> None:
    result = _repo_config()
    assert result.returncode == 0, result.stderr
    for impl in IMPLEMENTATIONS:
        assert f"{impl}-worker:" in result.stdout and f"{impl}-producer:" in result.stdout
    for service in ("rabbitmq:",):
        assert service in result.stdout
    assert "service_healthy" in result.stdout


def test_compose_cluster_profile_is_valid() -> None:
    """The "cluster" profile: three nodes with one cookie and classic-config peer discovery,
    and workers given every node's URL with quorum queues."""
    result = _repo_config()
    assert result.returncode == 0, result.stderr
    for node in ("rabbit1", "rabbit2", "rabbit3"):
        assert f"{node}:" in result.stdout
    assert "cluster_nodes {[rabbit@rabbit1,rabbit@rabbit2,rabbit@rabbit3],disc}" in result.stdout
    assert result.stdout.count("RABBITMQ_ERLANG_COOKIE: mqlab-cluster-cookie") == 3
    assert "MQLAB_QUEUE_TYPE: quorum" in result.stdout
    assert "amqp://guest:guest@rabbit3:5672/%2F" in result.stdout
    for impl in IMPLEMENTATIONS:
        assert f"{impl}-worker-cluster:" in result.stdout


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """Negative control: the validator does reject what is not Compose."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  rabbitmq:\n    imagez: rabbitmq:3-management\n")
    assert _config(broken).returncode != 0


def test_compose_validation_rejects_a_broken_anchor(tmp_path: Path) -> None:
    """Negative control for the cluster profile's YAML anchors: an unknown alias fails."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  rabbit1:\n    <<: *no-such-anchor\n")
    assert _config(broken).returncode != 0
