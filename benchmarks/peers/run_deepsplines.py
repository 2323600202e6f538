"""deepsplines peer: Linear -> per-neuron linear-spline activation (DeepBSpline) -> Linear, sized to the budget."""
from __future__ import annotations

import sys

from torch import nn

from benchmarks.peers.peer_training import run_peer

SPLINE_COEFFICIENTS = 51  # the library's defaults: 51 coefficients on [-4, 4], initialised as leaky ReLU
SPLINE_RANGE = 4.0


def build_spline_mlp(n_features: int, width: int, n_outputs: int, seed: int) -> nn.Module:
    from deepsplines.ds_modules import DeepBSpline

    return nn.Sequential(
        nn.Linear(n_features, width),
        DeepBSpline("fc", width, size=SPLINE_COEFFICIENTS, range_=SPLINE_RANGE, init="leaky_relu"),
        nn.Linear(width, n_outputs),
    )


if __name__ == "__main__":
    sys.exit(run_peer("deepsplines", build_spline_mlp, ["deepsplines"]))
