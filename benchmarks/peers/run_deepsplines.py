"""deepsplines peer: (Linear -> per-neuron linear-spline activation, DeepBSpline) per hidden layer -> Linear, sized to the budget."""
from __future__ import annotations

import itertools
import sys

from torch import nn

from benchmarks.peers.peer_training import run_peer

SPLINE_COEFFICIENTS = 51  # the library's defaults: 51 coefficients on [-4, 4], initialised as leaky ReLU
SPLINE_RANGE = 4.0


def build_spline_mlp(widths: list[int], seed: int) -> nn.Module:
    from deepsplines.ds_modules import DeepBSpline

    layers: list[nn.Module] = []
    for fan_in, width in itertools.pairwise(widths[:-1]):
        layers += [nn.Linear(fan_in, width), DeepBSpline("fc", width, size=SPLINE_COEFFICIENTS, range_=SPLINE_RANGE, init="leaky_relu")]
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


if __name__ == "__main__":
    sys.exit(run_peer("deepsplines", build_spline_mlp, ["deepsplines"]))
