"""A real ``lutnet serve`` process on 127.0.0.1 and a free port, for end-to-end tests; stopped by its PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``lutnet serve --repository REPOSITORY FLAGS...`` with its output in a log file."""

    def __init__(self, repository: Path, *flags: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "lutnet", "serve", "--repository", str(repository), "--port", str(self.port), *flags]
        with log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server not ready after {STARTUP_S} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> bool:
        """SIGTERM, then SIGKILL if it has not exited within 15 s; whether it shut down cleanly."""
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.exited_cleanly()

    def exited_cleanly(self) -> bool:
        """uvicorn finishes its shutdown, then re-raises the SIGTERM it caught, so -SIGTERM is a clean exit too."""
        return self.process.wait() in (0, -signal.SIGTERM) and "Application shutdown complete" in self.output()
