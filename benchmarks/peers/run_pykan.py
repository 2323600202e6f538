"""pykan peer: a KAN (cubic B-splines on a grid of 5) with hidden widths sized to the parameter budget."""
from __future__ import annotations

import sys

from torch import nn

from benchmarks.peers.peer_training import run_peer

GRID_INTERVALS = 5  # pykan's README examples; the spline order k=3 is its default


def build_kan(widths: list[int], seed: int) -> nn.Module:
    from kan import KAN

    # speed() turns off the symbolic branch, activation caching and checkpoint files: plain numeric training.
    # KAN rewrites the width list it is given in place ([n] -> [n, 0]), hence the copy.
    return KAN(width=list(widths), grid=GRID_INTERVALS, k=3, seed=seed, auto_save=False).speed()


if __name__ == "__main__":
    sys.exit(run_peer("pykan", build_kan, ["pykan"]))
