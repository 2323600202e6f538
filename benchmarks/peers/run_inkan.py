"""inkan peer: a one-hidden-layer KANNetwork (uniform cubic B-splines, grid of 5, SiLU residual) sized to the budget."""
from __future__ import annotations

import sys

from torch import nn

from benchmarks.peers.peer_training import run_peer

GRID_INTERVALS = 5  # inkan's default


def build_kan_network(n_features: int, width: int, n_outputs: int, seed: int) -> nn.Module:
    from inkan import KANNetwork

    # Eager basis: torch.compile would add minutes of compilation to each short run and cannot be exported.
    return KANNetwork([n_features, width, n_outputs], grid_size=GRID_INTERVALS, compile_basis=False)


if __name__ == "__main__":
    sys.exit(run_peer("inkan", build_kan_network, ["inkan"]))
