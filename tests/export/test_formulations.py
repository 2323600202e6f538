"""The lookup candidates the formulation benchmark times compute the same model as the shipped graph."""
from __future__ import annotations

import pytest

from benchmarks.lookup_formulations import CANDIDATES, CONV_CANDIDATES
from lutnet.export.graph import DEFAULT_OPSET, build_graph
from lutnet.export.verify import probe_inputs, verify
from tests.export.checkpoints import convnet_spec, mlp_spec, random_checkpoint

LOOKUPS = [("nearest", "clamp"), ("linear", "linear")]


@pytest.mark.parametrize(("mode", "extrapolate"), LOOKUPS)
@pytest.mark.parametrize("name", [n for n in CANDIDATES if n != "gather_float_offsets_int32"])
def test_exact_mlp_candidates_pass_verification(name: str, mode: str, extrapolate: str) -> None:
    checkpoint = random_checkpoint(mlp_spec(mode=mode, extrapolate=extrapolate), seed=9)
    builder = CANDIDATES[name]
    proto = build_graph(checkpoint, builder=builder, opset=getattr(builder, "opset", DEFAULT_OPSET))
    result = verify(proto, checkpoint, checkpoint, probe_inputs(checkpoint, count=32))
    assert result.passed, result.failures


@pytest.mark.parametrize(("mode", "extrapolate"), LOOKUPS)
@pytest.mark.parametrize("name", list(CONV_CANDIDATES))
def test_convnet_candidates_pass_verification(name: str, mode: str, extrapolate: str) -> None:
    checkpoint = random_checkpoint(convnet_spec(mode=mode, extrapolate=extrapolate), seed=9)
    result = verify(build_graph(checkpoint, builder=CONV_CANDIDATES[name]), checkpoint, checkpoint, probe_inputs(checkpoint, count=32))
    assert result.passed, result.failures
