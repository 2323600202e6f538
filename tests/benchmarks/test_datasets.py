"""The .npz split hand-over: what is written is read back unchanged, and bad splits are refused."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.peers.datasets import ARRAY_NAMES, SplitArrays, main, read_npz, sklearn_digits, split_arrays, write_npz
from lutnet.errors import DataError


def test_round_trip_keeps_every_array_and_the_task(tmp_path):
    split = sklearn_digits(seed=3)
    write_npz(split, tmp_path / "digits.npz")
    back = read_npz(tmp_path / "digits.npz")
    assert (back.name, back.task) == ("digits", "classification")
    for name in ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(back, name), getattr(split, name))
        assert getattr(back, name).dtype == getattr(split, name).dtype


def test_digits_split_is_fixed_and_partitions_the_data_set():
    from sklearn.datasets import load_digits

    first, again = sklearn_digits(seed=0), sklearn_digits(seed=0)
    np.testing.assert_array_equal(first.X_test, again.X_test)
    assert (len(first.X_train), len(first.X_val), len(first.X_test)) == (1078, 359, 360)
    X, y = load_digits(return_X_y=True)
    together = np.concatenate([first.X_train, first.X_val, first.X_test])
    np.testing.assert_array_equal(np.sort(together.sum(axis=1)), np.sort(X.sum(axis=1)))
    np.testing.assert_array_equal(np.bincount(np.concatenate([first.y_train, first.y_val, first.y_test])), np.bincount(y))
    assert first.n_outputs == 10


def test_regression_targets_stay_float_and_images_are_flattened():
    rng = np.random.default_rng(0)
    arrays = {name: rng.standard_normal((5, 2, 3)) if name.startswith("X") else rng.standard_normal(5) for name in ARRAY_NAMES}
    split = split_arrays(SplitArrays("toy", "regression", **arrays))
    assert split.X_train.shape == (5, 6) and split.y_train.dtype == np.float32 and split.n_outputs == 1


def test_unknown_task_is_refused(tmp_path):
    split = dataclasses.replace(sklearn_digits(), task="ranking")
    with pytest.raises(DataError, match="expected classification or regression, got ranking"):
        write_npz(split, tmp_path / "bad.npz")
    assert list(tmp_path.iterdir()) == []


def test_mismatched_rows_are_refused():
    split = sklearn_digits()
    with pytest.raises(DataError, match="bad val split"):
        split_arrays(dataclasses.replace(split, y_val=split.y_val[:-1]))


def test_missing_file_and_missing_array_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="cannot read split"):
        read_npz(tmp_path / "absent.npz")
    np.savez(tmp_path / "partial.npz", X_train=np.zeros((2, 2)))
    with pytest.raises(DataError, match="lacks an array"):
        read_npz(tmp_path / "partial.npz")


def test_cli_writes_the_split_training_makes(tmp_path):
    from lutnet.training.data import load_dataset

    assert main(["wine", str(tmp_path / "wine.npz"), "--seed", "2"]) == 0
    written, expected = read_npz(tmp_path / "wine.npz"), load_dataset("wine", seed=2)
    assert written.name == "wine" and written.task == "classification"
    np.testing.assert_array_equal(written.X_test, expected.X_test.astype(np.float32))
    np.testing.assert_array_equal(written.y_val, expected.y_val)


def test_cli_names_a_bad_data_set_in_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["no-such-set", str(tmp_path / "x.npz")]) == 2
    assert capsys.readouterr().err.startswith("benchmarks.peers.datasets: error: data set: expected one of")
    assert list(tmp_path.iterdir()) == []
