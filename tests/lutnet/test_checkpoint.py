"""Contract A: checkpoint directories round-trip, read with numpy alone, and reject bad input by name."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lutnet import tensorfile
from lutnet.checkpoint import CONFIG_FILE, TENSOR_FILE, Checkpoint, expected_tensor_shapes, read_checkpoint, write_checkpoint
from lutnet.errors import CheckpointError
from lutnet.reference import forward
from lutnet.spec import LUTSpec, ModelSpec


def random_checkpoint(spec: ModelSpec, seed: int = 0, task: str = "classification") -> Checkpoint:
    rng = np.random.default_rng(seed)
    tensors = {name: rng.normal(size=shape).astype(np.float32) for name, shape in expected_tensor_shapes(spec).items()}
    for i in range(len(spec.hidden)) if spec.activation == "lut" else ():
        tensors[f"act.{i}.lo"] = -np.abs(tensors[f"act.{i}.lo"]) - 0.5
        tensors[f"act.{i}.hi"] = np.abs(tensors[f"act.{i}.hi"]) + 0.5
    width = spec.input_shape[0]
    return Checkpoint(
        spec, tensors, task=task, labels=[f"class {i}" for i in range(spec.num_outputs)] if task == "classification" else [],
        input_mean=rng.normal(size=width), input_std=rng.uniform(0.5, 2, size=width), target_mean=1.5, target_std=2.0,
        info={"metrics": {"test_accuracy": 0.5}},
    )


specs = st.builds(
    ModelSpec,
    family=st.just("mlp"),
    input_shape=st.tuples(st.integers(1, 12)),
    num_outputs=st.integers(1, 5),
    hidden=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    activation=st.sampled_from(["lut", "relu", "gelu"]),
    lut=st.builds(LUTSpec, bins=st.integers(2, 16), mode=st.sampled_from(["linear", "nearest"]),
                  extrapolate=st.sampled_from(["clamp", "linear"]), shared=st.booleans()),
) | st.builds(
    ModelSpec,
    family=st.just("convnet"),
    input_shape=st.tuples(st.integers(1, 3), st.integers(4, 9), st.integers(4, 9)),
    num_outputs=st.integers(1, 4),
    hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2).map(tuple),
    activation=st.sampled_from(["lut", "relu"]),
    kernel_size=st.sampled_from([1, 3]),
    pool=st.sampled_from(["max", "avg"]),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs, task=st.sampled_from(["classification", "regression"]), seed=st.integers(0, 1000))
def test_round_trip_preserves_every_field_and_the_function(tmp_path_factory, spec, task, seed):
    """write -> read gives the same spec, tensors (as float32), card fields and model outputs."""
    checkpoint = random_checkpoint(spec, seed, task)
    directory = tmp_path_factory.mktemp("ckpt")
    write_checkpoint(checkpoint, directory)
    loaded = read_checkpoint(directory)
    assert loaded.spec == spec and loaded.task == task and loaded.labels == checkpoint.labels
    assert loaded.info == checkpoint.info
    for name, value in checkpoint.tensors.items():
        np.testing.assert_array_equal(loaded.tensors[name], value.astype(np.float32))
    x = np.random.default_rng(seed).normal(size=(3, *spec.input_shape))
    np.testing.assert_allclose(forward(loaded, x), forward(checkpoint, x), rtol=1e-6, atol=1e-6)


def test_tensor_file_is_standard_safetensors_both_ways(tmp_path):
    tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, -2], dtype=np.int64)}
    tensorfile.save_file(tensors, tmp_path / "ours.safetensors")
    theirs = safetensors.numpy.load_file(str(tmp_path / "ours.safetensors"))
    safetensors.numpy.save_file(tensors, str(tmp_path / "theirs.safetensors"))
    ours = tensorfile.load_file(tmp_path / "theirs.safetensors")
    for name in tensors:
        np.testing.assert_array_equal(theirs[name], tensors[name])
        np.testing.assert_array_equal(ours[name], tensors[name])


@pytest.fixture
def saved(tmp_path) -> Path:
    write_checkpoint(random_checkpoint(ModelSpec("mlp", (4,), 3, hidden=(5,))), tmp_path)
    return tmp_path


def rewrite_config(directory: Path, **changes) -> None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    config.update(changes)
    (directory / CONFIG_FILE).write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: (d / TENSOR_FILE).unlink(), "no such file"),
        (lambda d: (d / CONFIG_FILE).unlink(), "no such file"),
        (lambda d: (d / TENSOR_FILE).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......"), "corrupt .*got .*JSON"),
        (lambda d: (d / TENSOR_FILE).write_bytes((d / TENSOR_FILE).read_bytes()[:-7]), "is corrupt or truncated"),
        (lambda d: (d / CONFIG_FILE).write_text("{"), "valid JSON"),
        (lambda d: rewrite_config(d, format_version=99), "format_version: expected 1, got 99"),
        (lambda d: rewrite_config(d, model={"family": "rnn", "input_shape": [4], "num_outputs": 3}), "model.family"),
        (lambda d: rewrite_config(d, model={"family": "mlp", "input_shape": [4], "num_outputs": 3, "hidden": [6]}), "tensor hidden.0.weight"),
        (lambda d: rewrite_config(d, model={"family": "mlp", "input_shape": [4], "num_outputs": 3, "depth": 2}), "model spec fields"),
        (lambda d: rewrite_config(d, labels=["a"]), "invalid labels"),
        (lambda d: rewrite_config(d, normalization={"mean": [0, 0, 0, 0], "std": [1, 0, 1, 1]}), "normalization.std"),
    ],
)
def test_bad_checkpoints_name_what_is_wrong(saved, break_it, message):
    break_it(saved)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(saved)


def test_missing_directory_says_what_was_expected(tmp_path):
    with pytest.raises(CheckpointError, match="expected .*config.json and model.safetensors"):
        read_checkpoint(tmp_path / "nope")


def test_invalid_checkpoint_is_not_written(tmp_path):
    checkpoint = random_checkpoint(ModelSpec("mlp", (4,), 3, hidden=(5,)))
    checkpoint.tensors["head.bias"] = np.array([np.nan, 0, 0], dtype=np.float32)
    with pytest.raises(CheckpointError, match="finite"):
        write_checkpoint(checkpoint, tmp_path / "out")
    assert not (tmp_path / "out" / CONFIG_FILE).exists() and not (tmp_path / "out" / TENSOR_FILE).exists()


def test_written_files_follow_the_umask_so_other_users_can_read_them(tmp_path):
    """A container's non-root user must be able to read what was written on the host."""
    write_checkpoint(random_checkpoint(ModelSpec("mlp", (4,), 3, hidden=(5,))), tmp_path)
    for name in (CONFIG_FILE, TENSOR_FILE):
        assert (tmp_path / name).stat().st_mode & 0o044 == 0o044


def test_the_same_tensors_give_the_same_bytes_in_every_process() -> None:
    """A resumed run writes the file an uninterrupted one writes, whatever order its tensors were gathered in."""
    code = ("import hashlib, numpy as np\nfrom lutnet import tensorfile\n"
            "a, b = np.zeros(3, dtype=np.float32), np.arange(2, dtype=np.int64)\n"
            "print(hashlib.sha256(tensorfile.save({'a': a, 'b': b}, {'format': 'x'})).hexdigest(),"
            " hashlib.sha256(tensorfile.save({'b': b, 'a': a}, {'format': 'x'})).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(4)}
    assert len(digests) == 1 and len(set(digests.pop().split())) == 1


def test_more_than_one_metadata_entry_is_refused() -> None:
    with pytest.raises(CheckpointError, match="at most one entry"):
        tensorfile.save({"a": np.zeros(1, dtype=np.float32)}, {"x": "1", "y": "2"})
