"""Model families: torch forward equals lutnet.reference.forward; checkpoints round-trip through contract A."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lutnet import reference
from lutnet.checkpoint import expected_tensor_shapes, read_checkpoint, write_checkpoint
from lutnet.spec import LUTSpec, ModelSpec
from lutnet.training.models import LutnetModel, build_model, checkpoint_from_model, model_from_checkpoint


def randomize(model: LutnetModel, seed: int) -> LutnetModel:
    """Random weights, tables, ranges and standardization, so no part of the forward pass is trivial."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            tensor.copy_(torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * (0.5 if "weight" in name else 1.0))
        for lut in model.luts():
            lut.lo.copy_(-1.0 - torch.rand(lut.lo.shape, generator=generator, dtype=lut.lo.dtype))
            lut.hi.copy_(1.0 + torch.rand(lut.hi.shape, generator=generator, dtype=lut.hi.dtype))
        model.input_mean.copy_(torch.randn(model.input_mean.shape, generator=generator, dtype=model.input_mean.dtype))
        model.input_std.copy_(0.5 + torch.rand(model.input_std.shape, generator=generator, dtype=model.input_std.dtype))
        if model.task == "regression":
            model.target_mean.fill_(3.0)
            model.target_std.fill_(2.5)
    return model


def spec_of(family: str, activation: str, mode: str = "linear", extrapolate: str = "linear", shared: bool = False) -> ModelSpec:
    shape = (5,) if family == "mlp" else (2, 6, 5)
    lut = LUTSpec(bins=8, mode=mode, extrapolate=extrapolate, shared=shared)
    return ModelSpec(family=family, input_shape=shape, num_outputs=3, hidden=(7, 4), activation=activation, lut=lut)


def labels_for(spec: ModelSpec, task: str) -> list[str]:
    return [f"c{i}" for i in range(spec.num_outputs)] if task == "classification" else []


CASES = [
    ("mlp", "lut", "linear", "linear"),
    ("mlp", "lut", "nearest", "clamp"),
    ("mlp", "relu", "linear", "linear"),
    ("mlp", "gelu", "linear", "linear"),
    ("convnet", "lut", "linear", "clamp"),
    ("convnet", "lut", "nearest", "linear"),
    ("convnet", "relu", "linear", "linear"),
    ("convnet", "gelu", "linear", "linear"),
]


@pytest.mark.parametrize("task", ["classification", "regression"])
@pytest.mark.parametrize("family,activation,mode,extrapolate", CASES)
def test_model_equals_the_numpy_reference(family: str, activation: str, mode: str, extrapolate: str, task: str) -> None:
    """model(raw x) equals lutnet.reference.forward(checkpoint, raw x) in float64, standardization included."""
    spec = spec_of(family, activation, mode, extrapolate)
    model = randomize(build_model(spec, task).double(), seed=1)
    x = torch.randn(11, *spec.input_shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2 + 0.5
    checkpoint = checkpoint_from_model(model, labels=labels_for(spec, task))
    expected = reference.forward(checkpoint, x.numpy())
    np.testing.assert_allclose(model(x).detach().numpy(), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("family", ["mlp", "convnet"])
@pytest.mark.parametrize("activation", ["lut", "relu"])
def test_submodules_map_one_to_one_to_contract_tensor_names(family: str, activation: str) -> None:
    """Parameters and buffers of hidden/act/head are exactly contract A's tensors, with its shapes."""
    spec = spec_of(family, activation, shared=family == "convnet")
    model = build_model(spec)
    shapes = {name: tuple(t.shape) for name, t in model.contract_tensors().items()}
    assert shapes == expected_tensor_shapes(spec)
    assert set(model.state_dict()) - set(shapes) == {"input_mean", "input_std", "target_mean", "target_std"}


specs = st.builds(
    lambda family, hidden, activation, bins, mode, extrapolate, init, shared, outputs, kernel, pool: ModelSpec(
        family=family,
        input_shape=(3,) if family == "mlp" else (2, 8, 4),
        num_outputs=outputs,
        hidden=tuple(hidden[:2]) if family == "convnet" else tuple(hidden),
        activation=activation,
        lut=LUTSpec(bins=bins, mode=mode, extrapolate=extrapolate, init=init, shared=shared),
        kernel_size=kernel,
        pool=pool,
    ),
    family=st.sampled_from(["mlp", "convnet"]),
    hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    activation=st.sampled_from(["lut", "relu", "gelu"]),
    bins=st.integers(2, 12),
    mode=st.sampled_from(["linear", "nearest"]),
    extrapolate=st.sampled_from(["clamp", "linear"]),
    init=st.sampled_from(["relu", "gelu", "tanh", "identity"]),
    shared=st.booleans(),
    outputs=st.integers(1, 4),
    kernel=st.sampled_from([1, 3]),
    pool=st.sampled_from(["max", "avg"]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs, task=st.sampled_from(["classification", "regression"]), seed=st.integers(0, 1000))
def test_checkpoint_round_trip(tmp_path: Path, spec: ModelSpec, task: str, seed: int) -> None:
    """Any model written with write_checkpoint and read back has identical tensors, settings and outputs."""
    model = randomize(build_model(spec, task), seed)
    directory = tmp_path / f"ckpt-{seed}-{abs(hash(spec))}"
    write_checkpoint(checkpoint_from_model(model, labels=labels_for(spec, task), info={"note": "round trip"}), directory)
    loaded_checkpoint = read_checkpoint(directory)
    loaded = model_from_checkpoint(loaded_checkpoint)
    assert loaded_checkpoint.spec == spec and loaded_checkpoint.task == task and loaded_checkpoint.info == {"note": "round trip"}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    x = torch.randn(4, *spec.input_shape, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("family", ["mlp", "convnet"])
def test_model_built_and_run_under_inference_mode(family: str) -> None:
    """Inference tensors have no version counter: a LUT model made and run in inference mode still equals the reference."""
    spec = spec_of(family, "lut")
    with torch.inference_mode():
        model = randomize(build_model(spec, "classification").double(), seed=3)
        x = torch.randn(6, *spec.input_shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        outputs = model(x).numpy()
        checkpoint = checkpoint_from_model(model, labels=labels_for(spec, "classification"))
    np.testing.assert_allclose(outputs, reference.forward(checkpoint, x.numpy()), rtol=1e-10, atol=1e-10)
