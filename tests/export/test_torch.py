"""The fused graph against the torch model of the separated checkpoint (training's modules), over random specs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from lutnet import reference
from lutnet.checkpoint import Checkpoint
from lutnet.export.fold import fold
from lutnet.export.graph import build_graph
from lutnet.export.verify import EXTREME_TOLERANCE, TOLERANCE, edge_samples, output_scale, probe_inputs, relative_errors, run_fused
from tests.export.test_graph import checkpoints

torch = pytest.importorskip("torch")
models = pytest.importorskip("lutnet.training.models")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(checkpoint=checkpoints())
def test_fused_graph_equals_torch_model(checkpoint: Checkpoint) -> None:
    """onnxruntime on the fused graph, torch on the separated model and the numpy reference agree (nearest: off pocket edges)."""
    probes = probe_inputs(checkpoint, count=24)
    x, typical = probes.all, len(probes.typical)
    fused, activations = run_fused(build_graph(checkpoint), x, len(checkpoint.spec.hidden))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one summation order, as in onnxruntime with one thread per op here
    try:
        model = models.model_from_checkpoint(checkpoint).eval()
        with torch.inference_mode():
            eager = model(torch.from_numpy(x)).numpy()
    finally:
        torch.set_num_threads(threads)
    expected = reference.forward(checkpoint, x)
    nearest = checkpoint.spec.activation == "lut" and checkpoint.spec.lut.mode == "nearest"
    edge = edge_samples(fold(checkpoint), x, activations) if nearest else np.zeros(len(x), dtype=bool)
    scale = output_scale(expected, typical)
    for outputs in (fused, eager):
        errors = np.where(edge, 0.0, relative_errors(outputs, expected, scale))
        assert errors[:typical].max() <= TOLERANCE and errors[typical:].max() <= EXTREME_TOLERANCE
    agree = np.where(edge, 0.0, relative_errors(fused, eager, scale))
    assert agree[:typical].max() <= 2 * TOLERANCE
