"""The .npz hand-over of one data set split to the peer runners, so every model sees the same rows.

``python -m benchmarks.peers.datasets NAME OUT.npz [--seed S]`` writes the split ``lutnet.training.data.load_dataset`` makes.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from lutnet.atomic import write_bytes_atomic
from lutnet.errors import DataError

TASKS = ("classification", "regression")
ARRAY_NAMES = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")


class DatasetLike(Protocol):
    """Anything with a name, a task and the six split arrays (lutnet.training.data.Dataset is one)."""

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class SplitArrays:
    """One data set's train/val/test split as float32 features and int64 labels (float32 targets for regression)."""

    name: str
    task: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """Number of classes for classification, 1 for regression."""
        return int(self.y_train.max()) + 1 if self.task == "classification" else 1


def split_arrays(dataset: DatasetLike) -> SplitArrays:
    """Copy a data set's split into canonical dtypes, flattening images to one row per sample."""
    label_dtype = np.int64 if dataset.task == "classification" else np.float32
    arrays = {}
    for name in ARRAY_NAMES:
        array = np.asarray(getattr(dataset, name))
        arrays[name] = array.reshape(len(array), -1).astype(np.float32) if name.startswith("X") else array.reshape(-1).astype(label_dtype)
    split = SplitArrays(name=str(dataset.name), task=str(dataset.task), **arrays)
    validate(split)
    return split


def validate(split: SplitArrays) -> None:
    """Raise DataError unless the split has a known task, matching row counts and one feature width."""
    if split.task not in TASKS:
        raise DataError("unknown task", expected=" or ".join(TASKS), got=split.task)
    for part in ("train", "val", "test"):
        X, y = getattr(split, f"X_{part}"), getattr(split, f"y_{part}")
        if X.ndim != 2 or X.shape[1] != split.n_features or len(X) != len(y) or len(X) == 0:
            raise DataError(f"bad {part} split", expected=f"X (n, {split.n_features}) and y (n,), n > 0", got=f"X {X.shape}, y {y.shape}")


def write_npz(split: SplitArrays, path: str | os.PathLike[str]) -> None:
    """Write the split to ``path`` atomically (no pickles: the task and name are stored as strings)."""
    validate(split)
    buffer = io.BytesIO()
    np.savez(buffer, name=np.str_(split.name), task=np.str_(split.task), **{name: getattr(split, name) for name in ARRAY_NAMES})
    write_bytes_atomic(path, buffer.getvalue())


def read_npz(path: str | os.PathLike[str]) -> SplitArrays:
    """Read a split written by write_npz; a missing file or array is a DataError."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            values = {field.name: archive[field.name] for field in fields(SplitArrays)}
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read split {path}: {error}") from None
    except KeyError as error:
        raise DataError(f"split {path} lacks an array", expected=", ".join(f.name for f in fields(SplitArrays)), got=str(error)) from None
    split = SplitArrays(**{**values, "name": str(values["name"]), "task": str(values["task"])})
    validate(split)
    return split


def sklearn_digits(seed: int = 0) -> SplitArrays:
    """sklearn's 8x8 digits, stratified 60/20/20 with a fixed seed: the development set of the peer runners."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.4, random_state=seed, stratify=y)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
    dataset = SplitArrays("digits", "classification", X_train, y_train, X_val, y_val, X_test, y_test)
    return split_arrays(dataset)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a data set lutnet.training.data.load_dataset knows, or a CSV path")
    parser.add_argument("out", help="the .npz to write")
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    args = parser.parse_args(argv)
    from lutnet.training.data import load_dataset

    try:
        write_npz(split_arrays(load_dataset(args.name, seed=args.seed)), args.out)
    except DataError as error:
        print(f"benchmarks.peers.datasets: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
