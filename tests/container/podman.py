"""Builds and runs the serving image with podman for the container tests (no Docker engine on CI machines)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "deploy" / "podman" / "build.sh"
BASE_IMAGE_SCRIPT = ROOT / "deploy" / "podman" / "base-image.sh"
# runc with these ulimits is the combination known to work inside the sandboxed CI machines.
PODMAN = ("podman", "--runtime", "runc")
ULIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
SERVER_PORT = 8000
# What deploy/kubernetes/lutnet.yaml asks of the pod, so every test proves the server works under it.
HARDENING = ("--read-only", "--tmpfs", "/tmp", "--cap-drop", "all", "--security-opt", "no-new-privileges")


class PodmanError(RuntimeError):
    """A podman command failed; the message carries its output."""


def unavailable_reason() -> str | None:
    """Why podman cannot build and run the image on this machine, or None when it can."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (run .ci/install-container-tools.sh as root)"
    if os.geteuid() != 0:
        return "the chroot builds and debootstrap of the container tests need root"
    probe = subprocess.run([*PODMAN, "info"], capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        last_line = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"podman cannot run here: {last_line}"
    return None


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs one podman command and returns it; raises PodmanError with its output when ``check`` and it fails."""
    result = subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise PodmanError(f"podman {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def stage_context(destination: Path, demo_repository: Path | None = None) -> Path:
    """Copies the checkout's files (tracked and untracked, not git-ignored) to ``destination`` as a build context.

    The demo target bakes ``models/`` of the context, so ``demo_repository`` goes there; staging keeps the
    user's own ``models/`` out of it. The real .dockerignore comes along and still decides what is sent.
    """
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    for name in filter(None, listing.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    if demo_repository is not None:
        shutil.copytree(demo_repository, destination / "models")
    return destination


def base_image() -> str:
    """The tag of the local Debian base image, built first (minutes, once per machine) when it is missing."""
    return subprocess.run([str(BASE_IMAGE_SCRIPT)], capture_output=True, text=True, check=True, timeout=900).stdout.strip()


def build_image(context: Path, target: str | None, tag: str, timeout: float = 900) -> None:
    """Builds ``target`` of the context's Dockerfile (None: the default, last stage, as `docker build .` does) as ``tag``
    through deploy/podman/build.sh."""
    target_option = ["--target", target] if target is not None else []
    result = subprocess.run(
        [str(BUILD_SCRIPT), *target_option, "--tag", tag, str(context)],
        capture_output=True, text=True, timeout=timeout,
    )
    if result.returncode != 0:
        raise PodmanError(f"build.sh {' '.join(target_option)} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


def image_size_bytes(tag: str) -> int:
    """The image's size as podman counts it (all layers, uncompressed)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", tag).stdout)


@dataclass(frozen=True)
class Container:
    """A running container of the serving image, reachable at ``base_url`` on 127.0.0.1."""

    name: str
    base_url: str

    def state(self, field: str) -> str:
        """One field of ``podman inspect``'s State (Running, ExitCode, ...)."""
        return podman("inspect", "--format", f"{{{{.State.{field}}}}}", self.name).stdout.strip()

    def logs(self) -> str:
        result = podman("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str) -> str:
        """Runs ``command`` inside the container (as the image's user) and returns its standard output."""
        return podman("exec", self.name, *command).stdout

    def wait_ready(self, timeout_s: float = 60) -> None:
        """Polls /v2/health/ready until it answers 200; raises with the server's log when it never does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.state("Running") != "true":
                raise PodmanError(f"container {self.name} exited {self.state('ExitCode')} before it was ready:\n{self.logs()}")
            try:
                if httpx.get(f"{self.base_url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.25)
        raise PodmanError(f"container {self.name} not ready after {timeout_s} s:\n{self.logs()}")

    def stop(self, grace_s: int) -> tuple[int, float]:
        """Sends SIGTERM, allows ``grace_s`` seconds before SIGKILL; returns (exit code, seconds it took)."""
        started = time.monotonic()
        podman("stop", "--time", str(grace_s), self.name, timeout=grace_s + 30)
        return int(self.state("ExitCode")), time.monotonic() - started


@contextmanager
def run_container(
    image: str,
    name: str,
    *,
    environment: Mapping[str, str] | None = None,
    volumes: Sequence[tuple[Path, str]] = (),
) -> Iterator[Container]:
    """Runs ``image`` detached and hardened, port 8000 published on a free port of 127.0.0.1; removes it afterwards."""
    podman("rm", "--force", "--volumes", "--ignore", name)
    options = [f"--env={key}={value}" for key, value in (environment or {}).items()]
    options += [f"--volume={source}:{target}:ro" for source, target in volumes]
    podman("run", "--detach", "--name", name, *ULIMITS, *HARDENING, "--publish", f"127.0.0.1::{SERVER_PORT}", *options, image)
    try:
        published = podman("port", name, str(SERVER_PORT)).stdout.strip().splitlines()[0]
        yield Container(name=name, base_url=f"http://{published}")
    finally:
        podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
