"""Session fixtures of the container tests: the demo model trained and exported on the host, the images, a server."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container import podman

RUNTIME_TAG = "localhost/lutnet-test:runtime"
DEMO_TAG = "localhost/lutnet-test:demo"
MODEL = "digits"
IMAGE_SIZES = pytest.StashKey[dict[str, int]]()


@pytest.fixture(scope="session")
def podman_available() -> None:
    reason = podman.unavailable_reason()
    if reason is not None:
        pytest.skip(f"container tests need podman: {reason}")


def lutnet(*args: str) -> None:
    """Runs the host's ``lutnet`` CLI (the project's own environment, with the train and export extras)."""
    subprocess.run([sys.executable, "-m", "lutnet", *args], check=True, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def digits_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding the demo digits model, trained and exported with the project's CLI."""
    work = tmp_path_factory.mktemp("digits")
    lutnet("train", "--dataset", "digits", "--epochs", "3", "--quiet", "--out", str(work / "run"))
    lutnet("export", str(work / "run"), "--repository", str(work / "models"), "--name", MODEL)
    return work / "models"


@pytest.fixture(scope="session")
def build_context(podman_available: None, tmp_path_factory: pytest.TempPathFactory, digits_repository: Path) -> Path:
    return podman.stage_context(tmp_path_factory.mktemp("context"), demo_repository=digits_repository)


@pytest.fixture(scope="session")
def runtime_image(build_context: Path) -> str:
    """The serving image, built as the README builds it: the default target, no --target."""
    podman.build_image(build_context, None, RUNTIME_TAG)
    return RUNTIME_TAG


@pytest.fixture(scope="session")
def demo_image(build_context: Path, runtime_image: str) -> str:
    podman.build_image(build_context, "demo", DEMO_TAG)
    return DEMO_TAG


@pytest.fixture(scope="module")
def server(runtime_image: str, digits_repository: Path) -> Iterator[podman.Container]:
    """The runtime image serving the host's repository mounted read-only at /models."""
    with podman.run_container(runtime_image, "lutnet-test-server", volumes=[(digits_repository, "/models")]) as container:
        container.wait_ready()
        yield container


@pytest.fixture(scope="session")
def image_sizes(request: pytest.FixtureRequest) -> dict[str, int]:
    """Image sizes measured by the tests, printed in the terminal summary."""
    return request.config.stash.setdefault(IMAGE_SIZES, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for tag, size in config.stash.get(IMAGE_SIZES, {}).items():
        terminalreporter.write_line(f"container image {tag}: {size / 1e6:.0f} MB")
