"""Set-up of the peers' virtual environments (benchmarks/.venvs/<peer>) from the pinned lists in requirements/.

Usage: ``python -m benchmarks.peers.setup [--only NAME ...] [--force]``. Each environment is built with pip from
PyPI under the project's constraints (torch 2.13.0) and stamped with the hashes of what it was built from, so a
second run skips environments that are already up to date.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lutnet.atomic import write_text_atomic
from lutnet.errors import LutnetError

REPOSITORY = Path(__file__).resolve().parents[2]
VENVS = REPOSITORY / "benchmarks" / ".venvs"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements"
CONSTRAINTS = REPOSITORY / "constraints.txt"
STAMP_NAME = "lutnet-peer.json"
PIP_NOISE = "WARNING: Location"  # pip's complaint about the machine's sparse local indexes, not about our packages


@dataclass(frozen=True)
class Peer:
    """A peer library: the module its environment must import, and whether it learns or serves."""

    name: str
    module: str
    role: str

    @property
    def venv(self) -> Path:
        return VENVS / self.name

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def requirements(self) -> Path:
        return REQUIREMENTS / f"{self.name}.txt"


PEERS = {
    peer.name: peer
    for peer in (
        Peer("pykan", "kan", "learning"),
        Peer("deepsplines", "deepsplines.ds_modules", "learning"),
        Peer("inkan", "inkan", "learning"),
        Peer("kserve", "kserve", "serving"),
        Peer("bentoml", "bentoml", "serving"),
    )
}


class PeerSetupError(LutnetError):
    """A peer's environment could not be built or does not import its library."""


def build_fingerprint(peer: Peer) -> dict[str, str]:
    """What an environment was built from; equal fingerprints mean the environment is up to date."""
    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return {"requirements_sha256": digest(peer.requirements), "constraints_sha256": digest(CONSTRAINTS), "python": platform.python_version()}


def is_up_to_date(peer: Peer) -> bool:
    stamp = peer.venv / STAMP_NAME
    if not stamp.is_file() or not peer.python.exists():
        return False
    recorded = json.loads(stamp.read_text())
    return {key: recorded.get(key) for key in build_fingerprint(peer)} == build_fingerprint(peer)


def run_quietly(command: Sequence[str | Path], peer: Peer, step: str) -> None:
    """Run one build step; on failure raise PeerSetupError with the tail of its output, pip's index noise left out."""
    completed = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if completed.returncode != 0:
        lines = [line for line in (completed.stdout + completed.stderr).splitlines() if not line.startswith(PIP_NOISE)]
        tail = "\n    ".join(lines[-15:])
        raise PeerSetupError(f"{peer.name}: {step} failed (exit {completed.returncode}):\n    {tail}")


def build(peer: Peer) -> float:
    """(Re)build one environment from scratch; returns the seconds it took. A failed build leaves no environment behind."""
    started = time.perf_counter()
    shutil.rmtree(peer.venv, ignore_errors=True)
    peer.venv.parent.mkdir(parents=True, exist_ok=True)
    try:
        run_quietly([sys.executable, "-m", "venv", peer.venv], peer, "creating the virtual environment")
        pip = [peer.python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
        run_quietly([*pip, "-c", CONSTRAINTS, "-r", peer.requirements], peer, f"pip install -r {peer.requirements.name}")
        run_quietly([peer.python, "-c", f"import {peer.module}"], peer, f"importing {peer.module}")
    except BaseException:
        shutil.rmtree(peer.venv, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    write_text_atomic(peer.venv / STAMP_NAME, json.dumps({**build_fingerprint(peer), "setup_seconds": round(seconds, 1)}, indent=2))
    return seconds


def ensure(peer: Peer, *, force: bool = False) -> dict[str, object]:
    """Build the peer's environment unless it is already up to date; report what was done and how long it took."""
    if not force and is_up_to_date(peer):
        recorded = json.loads((peer.venv / STAMP_NAME).read_text())
        return {"peer": peer.name, "built": False, "setup_seconds": recorded.get("setup_seconds")}
    return {"peer": peer.name, "built": True, "setup_seconds": round(build(peer), 1)}


def selected_peers(names: Sequence[str] | None) -> list[Peer]:
    unknown = sorted(set(names or ()) - PEERS.keys())
    if unknown:
        raise PeerSetupError("unknown peer", expected=" or ".join(PEERS), got=", ".join(unknown))
    return [PEERS[name] for name in names] if names else list(PEERS.values())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.setup", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help=f"set up only this peer (repeatable): {', '.join(PEERS)}")
    parser.add_argument("--force", action="store_true", help="rebuild even when the environment is up to date")
    args = parser.parse_args(argv)
    try:
        for peer in selected_peers(args.only):
            print(f"{peer.name}: setting up {peer.venv.relative_to(REPOSITORY)} ...", file=sys.stderr, flush=True)
            print(json.dumps(ensure(peer, force=args.force)), flush=True)
    except LutnetError as error:
        print(f"benchmarks.peers.setup: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
