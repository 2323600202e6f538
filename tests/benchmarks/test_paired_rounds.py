"""Paired rounds: every call timed in every round, ratios taken within a round before the median over rounds."""
from __future__ import annotations

import pytest

from benchmarks.common import PairedRounds, paired_rounds


def test_every_call_is_timed_repeats_times_in_every_round() -> None:
    counts = {"a": 0, "b": 0}

    def call(name: str) -> None:
        counts[name] += 1

    timed = paired_rounds({name: (lambda name=name: call(name)) for name in counts}, rounds=4, repeats=5)
    assert len(timed.rounds) == 4 and all(set(r) == {"a", "b"} for r in timed.rounds)
    assert {name: len(v) for name, v in timed.samples.items()} == {"a": 20, "b": 20}
    assert counts == {"a": 20 + 4 * 3, "b": 20 + 4 * 3}  # plus each round's warm-up calls


def test_a_slow_phase_of_the_machine_does_not_tilt_the_ratio() -> None:
    # b costs twice a in every round; the machine runs 10x slower while b is timed in most rounds' samples.
    rounds = [{"a": 1.0, "b": 2.0}, {"a": 10.0, "b": 20.0}, {"a": 10.0, "b": 20.0}, {"a": 1.0, "b": 2.0}, {"a": 10.0, "b": 20.0}]
    samples = {"a": [1.0, 1.0, 1.0, 10.0, 10.0], "b": [20.0, 20.0, 20.0, 2.0, 2.0]}
    timed = PairedRounds(samples, rounds)
    assert timed.ratio("b", "a") == pytest.approx(2.0)
    assert timed.median("b") / timed.median("a") == pytest.approx(20.0)  # what pooled medians would have said
