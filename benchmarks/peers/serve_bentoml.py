"""BentoML peer: one ONNX model behind a BentoML service (its ``POST /predict`` API), one worker, 127.0.0.1.

Run inside the bentoml environment: ``benchmarks/.venvs/bentoml/bin/python -m benchmarks.peers.serve_bentoml --onnx M --port P``;
it hands over to ``bentoml serve`` in the same process (stop it by its PID; its worker is in the same process group).
Request: ``{"rows": [[...]]}``; response: the output rows as a JSON list.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import bentoml
import numpy as np

from benchmarks.peers.serving import HOST, OnnxPredictor, parse_launch_args

MODEL_ENV = "LUTNET_PEER_ONNX"
THREADS_ENV = "LUTNET_PEER_THREADS"
REPOSITORY = Path(__file__).resolve().parents[2]


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class OnnxService:
    """Batch rows in, model outputs out, from one onnxruntime session opened in the worker."""

    def __init__(self) -> None:
        self.predictor = OnnxPredictor(Path(os.environ[MODEL_ENV]), int(os.environ.get(THREADS_ENV, "1")))

    @bentoml.api
    def predict(self, rows: np.ndarray) -> np.ndarray:
        return self.predictor(rows)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_launch_args(argv, __doc__.splitlines()[0])
    os.environ.update({MODEL_ENV: str(config.onnx.resolve()), THREADS_ENV: str(config.threads), "BENTOML_DO_NOT_TRACK": "true"})
    os.environ.setdefault("BENTOML_HOME", str(REPOSITORY / "benchmarks" / ".work" / "bentoml"))
    serve = ["bentoml", "serve", "benchmarks.peers.serve_bentoml:OnnxService"]
    os.execv(sys.executable, [sys.executable, "-m", *serve, "--host", HOST, "--port", str(config.port), "--working-dir", str(REPOSITORY)])


if __name__ == "__main__":
    sys.exit(main())
