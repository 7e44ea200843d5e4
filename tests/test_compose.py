"""docker-compose.yml is valid Compose, and runs what the README says (validated without an
engine: ``docker-compose config`` checks the file against the Compose schema client-side)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

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


def test_compose_file_is_valid() -> None:
    result = _config(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stderr
    for impl in ("pika", "celery", "dramatiq"):
        assert f"{impl}-worker:" in result.stdout and f"{impl}-producer:" in result.stdout
    for service in ("rabbitmq:",):
        assert service in result.stdout
    assert "service_healthy" in result.stdout


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """Negative control: the validator does reject what is not Compose."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  rabbitmq:\n    imagez: rabbitmq:3-management\n")
    assert _config(broken).returncode != 0
