"""The smoke benchmark's own pieces: the served ReLU MLP graph and the onnxruntime timer."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime

from benchmarks.peers.smoke import SERVED_HIDDEN, onnx_latency, relu_mlp_onnx


def test_served_mlp_computes_relu_mlp_of_its_weights(tmp_path):
    model = relu_mlp_onnx(64, SERVED_HIDDEN, 10, seed=1)
    weights = {tensor.name: onnx.numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    assert sum(w.size for w in weights.values()) == 64 * 266 + 266 + 266 * 10 + 10
    x = np.random.default_rng(2).standard_normal((7, 64)).astype(np.float32)
    expected = np.maximum(x @ weights["w1"] + weights["b1"], 0) @ weights["w2"] + weights["b2"]
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)
    assert all(w.dtype == np.float32 for w in weights.values())


def test_latency_summary_orders_its_quantiles_and_counts_its_calls(tmp_path):
    onnx.save(relu_mlp_onnx(64, 32, 10), tmp_path / "m.onnx")
    small, large = (onnx_latency(tmp_path / "m.onnx", batch, repeats=50) for batch in (1, 1024))
    assert small["n"] == large["n"] == 50
    assert 0 < small["p10"] <= small["median"] <= small["p90"]
    assert large["median"] > small["median"]
