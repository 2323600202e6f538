"""A tabular regression model with two inputs: numeric features and categorical codes through embeddings.

Run: ``python -m examples.tabular --repository models``. Inputs ``numeric`` (float32 ``[B, 6]``) and
``categories`` (int64 ``[B, 2]``); the SiLU modules become LUT layers, whose lookups fold into the Linear
layers before them.
"""
from __future__ import annotations

import torch
from torch import nn

from examples.common import Example, main
from lutnet.training import replace_activations

CARDINALITIES = (7, 12)
NUMERIC = 6


class TabularNet(nn.Module):
    def __init__(self, width: int = 32, embedding: int = 4) -> None:
        super().__init__()
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding) for n in CARDINALITIES)
        features = NUMERIC + embedding * len(CARDINALITIES)
        self.body = nn.Sequential(nn.Linear(features, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.head = nn.Linear(width, 1)

    def forward(self, numeric: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        embedded = [table(categories[:, i]) for i, table in enumerate(self.embeddings)]  # each (B, E)
        return self.head(self.body(torch.cat([numeric, *embedded], dim=1)))  # (B, 1)


def build() -> nn.Module:
    return replace_activations(TabularNet(), bins=16)


def data(rows: int, seed: int) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Synthetic: a smooth function of the numeric features plus an effect per category."""
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(rows, NUMERIC, generator=generator)
    categories = torch.stack([torch.randint(n, (rows,), generator=generator) for n in CARDINALITIES], dim=1)
    effects = [torch.randn(n, generator=generator) for n in CARDINALITIES]
    y = torch.sin(numeric[:, 0]) + numeric[:, 1] * numeric[:, 2] + sum(e[categories[:, i]] for i, e in enumerate(effects))
    return (numeric, categories), y.unsqueeze(1)


EXAMPLE = Example("tabular", build, data, "regression", (), ("numeric", "categories"))

if __name__ == "__main__":
    raise SystemExit(main(EXAMPLE))
