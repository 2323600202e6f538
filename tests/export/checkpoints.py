"""Random checkpoints built through the lutnet contract alone: tensors of the expected shapes, valid ranges, noisy tables."""
from __future__ import annotations

import numpy as np

from lutnet import metadata
from lutnet.checkpoint import Checkpoint, expected_tensor_shapes
from lutnet.lut import init_table
from lutnet.spec import LUTSpec, ModelSpec


def random_checkpoint(spec: ModelSpec, seed: int = 0, *, task: str = "classification", standardize: bool = True) -> Checkpoint:
    """A valid checkpoint for ``spec``: He-scaled weights, per-channel ranges around zero, tables = init function + noise."""
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {}
    for name, shape in expected_tensor_shapes(spec).items():
        if name.endswith(".weight"):
            fan_in = int(np.prod(shape[1:]))
            tensors[name] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
        elif name.endswith(".bias"):
            tensors[name] = rng.normal(0.0, 0.1, size=shape)
    for i in range(len(spec.hidden)) if spec.activation == "lut" else ():
        rows = tensors[f"hidden.{i}.bias"].shape[0] if not spec.lut.shared else 1
        center, half = np.mean(spec.lut.range), (spec.lut.range[1] - spec.lut.range[0]) / 2
        lo = center - half * rng.uniform(0.5, 1.5, size=rows)
        hi = center + half * rng.uniform(0.5, 1.5, size=rows)
        table = init_table(spec.lut.init, lo, hi, spec.lut.bins)
        tensors[f"act.{i}.table"] = table + rng.normal(0.0, 0.05, size=table.shape)
        tensors[f"act.{i}.lo"], tensors[f"act.{i}.hi"] = lo, hi
    tensors = {name: value.astype(np.float32) for name, value in tensors.items()}
    width = spec.input_shape[0]
    checkpoint = Checkpoint(
        spec=spec,
        tensors=tensors,
        task=task,
        labels=[f"class_{k}" for k in range(spec.num_outputs)] if task == "classification" else [],
        input_mean=rng.normal(0.0, 2.0, size=width) if standardize else None,
        input_std=rng.uniform(0.5, 3.0, size=width) if standardize else None,
        target_mean=float(rng.normal(0.0, 10.0)) if task == "regression" else 0.0,
        target_std=float(rng.uniform(0.5, 5.0)) if task == "regression" else 1.0,
        info={"dataset": {"name": "synthetic"}, "metrics": {"test_accuracy": 0.5}},
    )
    checkpoint.validate()
    return checkpoint


def mlp_spec(**lut: object) -> ModelSpec:
    return ModelSpec(family="mlp", input_shape=(6,), num_outputs=3, hidden=(8, 5), lut=LUTSpec(bins=8, **lut))


def convnet_spec(**lut: object) -> ModelSpec:
    return ModelSpec(family="convnet", input_shape=(2, 6, 5), num_outputs=3, hidden=(4, 3), lut=LUTSpec(bins=8, **lut))


# Every model-card key lutnet.metadata defines for a float export (the quantization record is for int8 exports only),
# and those only LUT models carry.
CARD_KEYS = {value for name, value in vars(metadata).items() if name.isupper() and name != "PREFIX" and value.startswith(metadata.PREFIX)} \
    - {metadata.QUANTIZATION}
LUT_KEYS = {metadata.LUT_MODE, metadata.LUT_BINS, metadata.LUT_EXTRAPOLATE}
