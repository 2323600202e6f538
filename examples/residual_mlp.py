"""A residual MLP with LayerNorm on the bundled digits data, its GELU/ReLU modules converted to LUT layers.

Run: ``python -m examples.residual_mlp --repository models``. The first layer's lookup folds into its
Linear; the lookup after each residual block's Linear folds too, while the one after the final residual
sum keeps its coordinate map as a Mul and an Add.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from examples.common import Example, main
from lutnet.training import replace_activations


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.linear = nn.Linear(width, width)
        self.act = nn.ReLU()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.act(self.linear(self.norm(h)))  # (B, W)


class ResidualMLP(nn.Module):
    def __init__(self, features: int = 64, width: int = 64, classes: int = 10, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(features, width), nn.GELU())
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(blocks)))
        self.out_act = nn.SiLU()
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.out_act(self.blocks(self.stem(x))))  # (B, classes)


def build() -> nn.Module:
    return replace_activations(ResidualMLP(), bins=16, example_inputs=torch.zeros(2, 64))


def data(rows: int, seed: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))[:rows]
    x = torch.tensor(digits.data[order] / 16.0, dtype=torch.float32)  # (N, 64) in [0, 1]
    return (x,), torch.tensor(digits.target[order])


EXAMPLE = Example("residual_mlp", build, data, "classification", tuple(str(d) for d in range(10)))

if __name__ == "__main__":
    raise SystemExit(main(EXAMPLE))
