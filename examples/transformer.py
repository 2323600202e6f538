"""A small transformer encoder over token sequences whose feed-forward block uses a channels-last LUT layer.

Run: ``python -m examples.transformer --repository models``. Input ``tokens`` (int64 ``[B, T]``). The
feed-forward lookup (channels on the last dim of ``[B, T, C]``) folds into the MatMul and Add of the Linear
before it.
"""
from __future__ import annotations

import torch
from torch import nn

from examples.common import Example, main
from lutnet.training import LUTActivation

VOCABULARY, LENGTH = 12, 16


class EncoderBlock(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.up, self.down = nn.Linear(width, hidden), nn.Linear(hidden, width)
        self.act = LUTActivation(hidden, bins=16, init="gelu", extrapolate="linear", dim=-1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        attended, _ = self.attention(h, h, h, need_weights=False)
        h = self.norm1(h + attended)  # (B, T, W)
        return self.norm2(h + self.down(self.act(self.up(h))))  # (B, T, W)


class TinyEncoder(nn.Module):
    def __init__(self, width: int = 32, heads: int = 4, hidden: int = 64, blocks: int = 2, classes: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCABULARY, width)
        self.position = nn.Parameter(0.02 * torch.randn(LENGTH, width))
        self.blocks = nn.Sequential(*(EncoderBlock(width, heads, hidden) for _ in range(blocks)))
        self.head = nn.Linear(width, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.embed(tokens) + self.position)  # (B, T, W)
        return self.head(h.mean(dim=1))  # (B, classes)


def build() -> nn.Module:
    return TinyEncoder()


def data(rows: int, seed: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Synthetic: does token 1 occur more often than token 2?"""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(VOCABULARY, (rows, LENGTH), generator=generator)
    return (tokens,), ((tokens == 1).sum(1) > (tokens == 2).sum(1)).long()


EXAMPLE = Example("transformer", build, data, "classification", ("no", "yes"), ("tokens",))

if __name__ == "__main__":
    raise SystemExit(main(EXAMPLE))
