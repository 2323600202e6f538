"""The generated function-fitting tasks: the stated formula, ranges and noise, the same data on every call."""
from __future__ import annotations

import numpy as np
import pytest

from lutnet.training import formulas
from lutnet.training.data import load_dataset


@pytest.mark.parametrize("name", list(formulas.FORMULAS))
def test_targets_follow_the_formula_within_the_stated_noise(name: str) -> None:
    formula = formulas.FORMULAS[name]
    X, y, names, source = formulas.generate(name)
    assert names == list(formula.ranges) and X.shape == (formulas.SAMPLES, len(names))
    for column, (low, high) in zip(X.T, formula.ranges.values(), strict=True):
        assert low <= column.min() and column.max() <= high
    clean = formula.function(**dict(zip(names, X.T, strict=True)))
    assert np.std(y - clean) == pytest.approx(formulas.NOISE * clean.std(), rel=0.1)
    assert formula.equation in source and "noise 0.01" in source


@pytest.mark.parametrize("name", formulas.FRIEDMAN)
def test_friedman_tasks_come_from_scikit_learn(name: str) -> None:
    from sklearn import datasets

    X, y, _, _ = formulas.generate(name)
    X_ref, clean = getattr(datasets, f"make_{name}")(n_samples=formulas.SAMPLES, noise=0.0, random_state=formulas.GENERATOR_SEED)
    np.testing.assert_array_equal(X, X_ref)
    assert np.std(y - clean) == pytest.approx(formulas.NOISE * clean.std(), rel=0.1)


def test_every_task_loads_as_a_regression_data_set_and_is_the_same_each_time() -> None:
    for name in formulas.TASKS:
        data = load_dataset(name, seed=1)
        assert data.task == "regression" and sum(data.sizes().values()) == formulas.SAMPLES
    first, second = load_dataset("feynman_i_12_11", seed=3), load_dataset("feynman_i_12_11", seed=3)
    np.testing.assert_array_equal(first.X_train, second.X_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)
