"""inkan peer: a KANNetwork (uniform cubic B-splines, grid of 5, SiLU residual) with hidden widths sized to the budget."""
from __future__ import annotations

import sys

from torch import nn

from benchmarks.peers.peer_training import run_peer

GRID_INTERVALS = 5  # inkan's default


def build_kan_network(widths: list[int], seed: int) -> nn.Module:
    from inkan import KANNetwork

    # Eager basis: torch.compile would add minutes of compilation to each short run and cannot be exported.
    return KANNetwork(widths, grid_size=GRID_INTERVALS, compile_basis=False)


if __name__ == "__main__":
    sys.exit(run_peer("inkan", build_kan_network, ["inkan"]))
