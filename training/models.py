"""The model families (mlp, convnet) in torch, and their mapping to and from contract-A checkpoints.

Submodule names are the checkpoint's tensor names: ``hidden.{i}`` (Linear or Conv2d), ``act.{i}``
(LUTActivation; parameter-free for relu/gelu) and ``head`` (Linear). Input standardization and, for
regression, target de-standardization are buffers, so ``model(raw_x)`` equals
``lutnet.reference.forward(checkpoint, raw_x)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lutnet.checkpoint import Checkpoint
from lutnet.spec import ModelSpec
from lutnet.training.lut import LUTActivation

CONTRACT_PREFIXES = ("hidden.", "act.", "head.")


class LutnetModel(nn.Module):
    """One model of ``spec``: (layer -> activation [-> 2x2 pooling]) per hidden entry, then a Linear head."""

    def __init__(self, spec: ModelSpec, task: str = "classification") -> None:
        super().__init__()
        spec.validate()
        self.spec, self.task = spec, task
        self.hidden = nn.ModuleList()
        self.act = nn.ModuleList()
        fan_in = spec.input_shape[0]
        for width in spec.hidden:
            if spec.family == "mlp":
                self.hidden.append(nn.Linear(fan_in, width))
            else:
                self.hidden.append(nn.Conv2d(fan_in, width, spec.kernel_size, padding=spec.kernel_size // 2))
            self.act.append(make_activation(spec, width))
            fan_in = width
        self.head = nn.Linear(spec.head_in_features(), spec.num_outputs)
        self.register_buffer("input_mean", torch.zeros(spec.input_shape[0]))
        self.register_buffer("input_std", torch.ones(spec.input_shape[0]))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        h = (x - self.input_mean.view(shape)) / self.input_std.view(shape)
        for layer, activation in zip(self.hidden, self.act, strict=True):
            h = activation(layer(h))  # (B, C) or (B, C, H, W)
            if self.spec.family == "convnet":
                h = F.max_pool2d(h, 2) if self.spec.pool == "max" else F.avg_pool2d(h, 2)
        out = self.head(h.flatten(1))  # (B, num_outputs)
        return out * self.target_std + self.target_mean if self.task == "regression" else out

    def luts(self) -> list[LUTActivation]:
        """The LUT activation layers, in order (empty for relu/gelu models)."""
        return [a for a in self.act if isinstance(a, LUTActivation)]

    def contract_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors contract A stores, by their checkpoint names."""
        return {name: t for name, t in self.state_dict().items() if name.startswith(CONTRACT_PREFIXES)}


def make_activation(spec: ModelSpec, channels: int) -> nn.Module:
    """The activation layer of ``spec`` for ``channels`` channels."""
    if spec.activation == "relu":
        return nn.ReLU()
    if spec.activation == "gelu":
        return nn.GELU()
    lut = spec.lut
    return LUTActivation(channels, bins=lut.bins, range=lut.range, mode=lut.mode, extrapolate=lut.extrapolate, init=lut.init, shared=lut.shared)


def build_model(spec: ModelSpec, task: str = "classification") -> LutnetModel:
    """A freshly initialized model of ``spec`` (seed torch first for a reproducible one)."""
    return LutnetModel(spec, task)


def model_from_checkpoint(checkpoint: Checkpoint) -> LutnetModel:
    """The torch model a checkpoint describes, in float32."""
    model = LutnetModel(checkpoint.spec, checkpoint.task)
    state = {name: torch.from_numpy(np.asarray(value, dtype=np.float32)) for name, value in checkpoint.tensors.items()}
    state["input_mean"] = torch.tensor(checkpoint.input_mean, dtype=torch.float32)
    state["input_std"] = torch.tensor(checkpoint.input_std, dtype=torch.float32)
    state["target_mean"] = torch.tensor(checkpoint.target_mean, dtype=torch.float32)
    state["target_std"] = torch.tensor(checkpoint.target_std, dtype=torch.float32)
    model.load_state_dict(state)
    return model


def checkpoint_from_model(model: LutnetModel, *, labels: list[str] | None = None, info: dict[str, Any] | None = None) -> Checkpoint:
    """A validated checkpoint of ``model`` (write it with ``lutnet.write_checkpoint``)."""
    as_numpy = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    checkpoint = Checkpoint(
        spec=model.spec,
        tensors={name: as_numpy(t) for name, t in model.contract_tensors().items()},
        task=model.task,
        labels=list(labels or []),
        input_mean=as_numpy(model.input_mean),
        input_std=as_numpy(model.input_std),
        target_mean=float(model.target_mean),
        target_std=float(model.target_std),
        info=dict(info or {}),
    )
    checkpoint.validate()
    return checkpoint
