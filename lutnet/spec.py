"""Model specifications: the JSON-serializable description of a model family, shared by every package."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lutnet.errors import CheckpointError
from lutnet.lut import EXTRAPOLATIONS, INIT_FUNCTIONS, MODES

FAMILIES = ("mlp", "convnet")
ACTIVATIONS = ("lut", "relu", "gelu")
POOLINGS = ("max", "avg")
TASKS = ("classification", "regression")


@dataclass(frozen=True)
class LUTSpec:
    """Settings of every LUT activation layer in a model."""

    bins: int = 16
    mode: str = "linear"
    extrapolate: str = "linear"
    init: str = "relu"
    shared: bool = False
    range: tuple[float, float] = (-4.0, 4.0)

    def validate(self, where: str = "lut") -> None:
        _check(_is_int(self.bins) and self.bins >= 2, f"{where}.bins", "an integer >= 2", self.bins)
        _check(isinstance(self.shared, bool), f"{where}.shared", "true or false", self.shared)
        _check(self.mode in MODES, f"{where}.mode", f"one of {list(MODES)}", self.mode)
        _check(self.extrapolate in EXTRAPOLATIONS, f"{where}.extrapolate", f"one of {list(EXTRAPOLATIONS)}", self.extrapolate)
        _check(self.init in INIT_FUNCTIONS, f"{where}.init", f"one of {list(INIT_FUNCTIONS)}", self.init)
        ordered = len(self.range) == 2 and all(_is_number(v) for v in self.range) and self.range[0] < self.range[1]
        _check(ordered, f"{where}.range", "[lo, hi] with lo < hi", list(self.range))


@dataclass(frozen=True)
class ModelSpec:
    """One model of the ``mlp`` or ``convnet`` family.

    ``mlp``: input ``[B, F]`` -> (Linear -> activation) per entry of ``hidden`` -> Linear head.
    ``convnet``: input ``[B, C, H, W]`` -> (Conv2d k x k, same padding -> activation -> 2x2 pooling)
    per entry of ``hidden`` (output channels) -> flatten -> Linear head.
    """

    family: str
    input_shape: tuple[int, ...]
    num_outputs: int
    hidden: tuple[int, ...] = (256, 256)
    activation: str = "lut"
    lut: LUTSpec = field(default_factory=LUTSpec)
    kernel_size: int = 3
    pool: str = "max"

    def validate(self) -> None:
        _check(isinstance(self.activation, str) and isinstance(self.pool, str), "model", "string activation and pool", (self.activation, self.pool))
        _check(self.family in FAMILIES, "model.family", f"one of {list(FAMILIES)}", self.family)
        rank = 1 if self.family == "mlp" else 3
        sizes_ok = len(self.input_shape) == rank and all(_is_int(d) and d >= 1 for d in self.input_shape)
        _check(sizes_ok, "model.input_shape", f"{rank} positive sizes for {self.family}", list(self.input_shape))
        _check(_is_int(self.num_outputs) and self.num_outputs >= 1, "model.num_outputs", "an integer >= 1", self.num_outputs)
        _check(len(self.hidden) >= 1 and all(_is_int(w) and w >= 1 for w in self.hidden), "model.hidden", "one or more positive widths", list(self.hidden))
        _check(self.activation in ACTIVATIONS, "model.activation", f"one of {list(ACTIVATIONS)}", self.activation)
        _check(_is_int(self.kernel_size) and self.kernel_size >= 1 and self.kernel_size % 2 == 1, "model.kernel_size", "an odd integer >= 1", self.kernel_size)
        _check(self.pool in POOLINGS, "model.pool", f"one of {list(POOLINGS)}", self.pool)
        if self.family == "convnet":
            side = min(self.input_shape[1:]) >> len(self.hidden)
            most = min(self.input_shape[1:]).bit_length() - 1
            _check(side >= 1, "model.hidden", f"at most {most} conv blocks for input {list(self.input_shape)}", len(self.hidden))
        self.lut.validate("model.lut")

    def head_in_features(self) -> int:
        """Width of the input to the Linear head."""
        if self.family == "mlp":
            return self.hidden[-1]
        _, height, width = self.input_shape
        shrink = 2 ** len(self.hidden)
        return self.hidden[-1] * (height // shrink) * (width // shrink)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> ModelSpec:
        """Build and validate a spec from parsed JSON; errors name the offending field."""
        _check(isinstance(data, dict), "model", "an object", type(data).__name__)
        lut_data = data.get("lut", {})
        _check(isinstance(lut_data, dict), "model.lut", "an object", type(lut_data).__name__)
        try:
            lut = LUTSpec(**{**lut_data, "range": tuple(lut_data.get("range", LUTSpec.range))})
            kwargs = {k: v for k, v in data.items() if k != "lut"}
            for key in ("input_shape", "hidden"):
                if key in kwargs:
                    _check(isinstance(kwargs[key], (list, tuple)), f"model.{key}", "a list of integers", kwargs[key])
                    kwargs[key] = tuple(kwargs[key])
            spec = cls(**kwargs, lut=lut)
        except TypeError as exc:
            fields = sorted(f.name for f in dataclasses.fields(cls)) + [f"lut.{f.name}" for f in dataclasses.fields(LUTSpec)]
            raise CheckpointError("model spec fields", expected=f"only {fields}", got=str(exc)) from None
        spec.validate()
        return spec


def _check(ok: bool, name: str, expected: str, got: object) -> None:
    if not ok:
        raise CheckpointError(f"invalid {name}", expected=expected, got=repr(got))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
