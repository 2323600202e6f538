"""Function-fitting data sets, generated procedurally: Friedman #1-#3 and closed-form physics formulas.

Each task draws its inputs uniformly from stated ranges with a fixed seed and adds Gaussian noise of a stated
fraction of the clean target's standard deviation, so a data set is the same on every machine and needs no
download. The formulas are from the Feynman lectures, as collected for symbolic-regression benchmarks (the
equation numbers name them); Friedman's come from scikit-learn's generators.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAMPLES = 4000
NOISE = 0.01  # noise standard deviation, as a fraction of the clean target's
GENERATOR_SEED = 20261207  # fixed: the data are the same for every split seed; the split seed only shuffles them


@dataclass(frozen=True)
class Formula:
    """A target as a numpy function of named inputs, each drawn uniformly from its range."""

    equation: str
    text: str
    ranges: dict[str, tuple[float, float]]
    function: Callable[..., np.ndarray]


FORMULAS = {
    "feynman_i_6_20": Formula("I.6.20", "exp(-(theta/sigma)^2/2) / (sqrt(2 pi) sigma)", {"theta": (1, 3), "sigma": (1, 3)},
                              lambda theta, sigma: np.exp(-((theta / sigma) ** 2) / 2) / (np.sqrt(2 * np.pi) * sigma)),
    "feynman_i_12_11": Formula("I.12.11", "q (Ef + B v sin(theta))", {"q": (1, 5), "Ef": (1, 5), "B": (1, 5), "v": (1, 5), "theta": (1, 5)},
                               lambda q, Ef, B, v, theta: q * (Ef + B * v * np.sin(theta))),
    "feynman_i_13_4": Formula("I.13.4", "m (v^2 + u^2 + w^2) / 2", {"m": (1, 5), "v": (1, 5), "u": (1, 5), "w": (1, 5)},
                              lambda m, v, u, w: 0.5 * m * (v**2 + u**2 + w**2)),
    "feynman_i_18_4": Formula("I.18.4", "(m1 r1 + m2 r2) / (m1 + m2)", {"m1": (1, 5), "m2": (1, 5), "r1": (1, 5), "r2": (1, 5)},
                              lambda m1, m2, r1, r2: (m1 * r1 + m2 * r2) / (m1 + m2)),
    "feynman_i_29_16": Formula("I.29.16", "sqrt(x1^2 + x2^2 - 2 x1 x2 cos(theta1 - theta2))",
                               {"x1": (1, 5), "x2": (1, 5), "theta1": (1, 5), "theta2": (1, 5)},
                               lambda x1, x2, theta1, theta2: np.sqrt(x1**2 + x2**2 - 2 * x1 * x2 * np.cos(theta1 - theta2))),
    "feynman_i_39_22": Formula("I.39.22", "n kb T / V", {"n": (1, 5), "kb": (1, 5), "T": (1, 5), "V": (1, 5)},
                               lambda n, kb, T, V: n * kb * T / V),
    "feynman_i_40_1": Formula("I.40.1", "n0 exp(-m g x / (kb T))", {"n0": (1, 5), "m": (1, 5), "x": (1, 5), "T": (1, 5), "g": (1, 5), "kb": (1, 5)},
                              lambda n0, m, x, T, g, kb: n0 * np.exp(-m * g * x / (kb * T))),
    "feynman_ii_6_15a": Formula("II.6.15a", "3 p_d z sqrt(x^2 + y^2) / (4 pi epsilon r^5)",
                                {"epsilon": (1, 3), "p_d": (1, 3), "r": (1, 3), "x": (1, 3), "y": (1, 3), "z": (1, 3)},
                                lambda epsilon, p_d, r, x, y, z: p_d / (4 * np.pi * epsilon) * 3 * z / r**5 * np.sqrt(x**2 + y**2)),
}
FRIEDMAN = ("friedman1", "friedman2", "friedman3")
TASKS = (*FRIEDMAN, *FORMULAS)


def generate(name: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """Inputs ``X [SAMPLES, d]``, noisy targets ``y``, feature names and a one-line description of task ``name``."""
    rng = np.random.default_rng(GENERATOR_SEED)
    if name in FRIEDMAN:
        import sklearn.datasets

        make = getattr(sklearn.datasets, f"make_{name}")
        X, clean = make(n_samples=SAMPLES, noise=0.0, random_state=GENERATOR_SEED)
        names = [f"x{i}" for i in range(X.shape[1])]
        text = f"sklearn.datasets.make_{name} (its stated input ranges)"
    else:
        formula = FORMULAS[name]
        columns = {var: rng.uniform(low, high, SAMPLES) for var, (low, high) in formula.ranges.items()}
        X, clean, names = np.column_stack(list(columns.values())), formula.function(**columns), list(columns)
        ranges = ", ".join(f"{var} in [{low}, {high}]" for var, (low, high) in formula.ranges.items())
        text = f"Feynman {formula.equation}: {formula.text}; {ranges}"
    y = clean + rng.normal(0.0, NOISE * clean.std(), SAMPLES)
    return X.astype(np.float64), y.astype(np.float64), names, f"{text}; {SAMPLES} samples, noise {NOISE:g} of the target's std"
