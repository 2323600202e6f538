"""KServe peer: one ONNX model behind KServe's Python model server (its v1 and v2 REST routes), one worker, 127.0.0.1.

Run inside the kserve environment: ``benchmarks/.venvs/kserve/bin/python -m benchmarks.peers.serve_kserve --onnx M --port P``.
v2: ``POST /v2/models/NAME/infer``; v1: ``POST /v1/models/NAME:predict`` with ``{"instances": [[...]]}``.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server
from kserve.utils.utils import generate_uuid

from benchmarks.peers.serving import HOST, OnnxPredictor, parse_launch_args


class OnnxModel(Model):
    """A KServe model answering both protocols from one onnxruntime session."""

    def __init__(self, name: str, predictor: OnnxPredictor) -> None:
        super().__init__(name)
        self.predictor = predictor
        self.ready = True

    def predict(self, payload: dict | InferRequest, headers: dict[str, str] | None = None) -> dict | InferResponse:
        if isinstance(payload, InferRequest):
            prediction = self.predictor(payload.inputs[0].as_numpy())
            output = InferOutput(name="output", shape=list(prediction.shape), datatype="FP32")
            output.set_data_from_numpy(prediction, binary_data=False)
            return InferResponse(model_name=self.name, infer_outputs=[output], response_id=payload.id or generate_uuid())
        return {"predictions": self.predictor(np.asarray(payload["instances"])).tolist()}


class LoopbackRESTServer(model_server.RESTServer):
    """KServe 0.21 binds its REST server to 0.0.0.0 with no option to change it; benchmarks stay on loopback."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.config.host = HOST


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_launch_args(argv, __doc__.splitlines()[0])
    model_server.RESTServer = LoopbackRESTServer
    server = ModelServer(http_port=config.port, workers=1, enable_grpc=False, enable_latency_logging=False)
    # Log lines per request (access log, timing trace) would be measured along with the server; the server has
    # configured logging by now, so this overrides it.
    for name in ("kserve", "kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([OnnxModel(config.name, OnnxPredictor(config.onnx, config.threads))])
    return 0


if __name__ == "__main__":
    sys.exit(main())
