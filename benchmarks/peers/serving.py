"""What the serving-peer launchers share: their command line and the onnxruntime session they serve from."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime

HOST = "127.0.0.1"


@dataclass(frozen=True)
class LaunchConfig:
    onnx: Path
    port: int
    name: str
    threads: int


def parse_launch_args(argv: Sequence[str] | None, description: str) -> LaunchConfig:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--onnx", type=Path, required=True, help="ONNX model with one float input (batch, features)")
    parser.add_argument("--port", type=int, required=True, help=f"listen on {HOST}:PORT")
    parser.add_argument("--name", default="model", help="model name in KServe's URLs (BentoML's route is its API name, /predict)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = parser.parse_args(argv)
    return LaunchConfig(args.onnx, args.port, args.name, args.threads)


class OnnxPredictor:
    """One onnxruntime CPU session: float32 rows in, the first output out."""

    def __init__(self, path: Path, threads: int) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(rows, dtype=np.float32)})[0]
