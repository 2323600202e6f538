"""int8 export: the graph equals the integer reference bit for bit, stays close to the float model, and fails cleanly."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lutnet import metadata, quantized, reference, tensorfile
from lutnet.checkpoint import CALIBRATION_FILE, TEST_SPLIT_FILE, Checkpoint, write_checkpoint
from lutnet.errors import LutnetError
from lutnet.export.cli import main as export_main
from lutnet.export.exporter import export_file, export_to_repository
from lutnet.export import quantize
from lutnet.export.fold import fold
from lutnet.export.quantize import (
    QuantizationError,
    build_quantized_graph,
    quantize_model,
    run_graph,
    segment_values,
    shared_zero,
)
from lutnet.export.verify import VerificationError
from lutnet.spec import LUTSpec, ModelSpec
from tests.export.checkpoints import convnet_spec, mlp_spec, random_checkpoint

STANDARD_OPS = {"Sub", "Mul", "QuantizeLinear", "QLinearMatMul", "QLinearConv", "Cast", "GatherElements", "MaxPool", "Flatten",
                "MatMulInteger", "Add", "DequantizeLinear", "Transpose", "Reshape"}


def draws(checkpoint: Checkpoint, rows: int, seed: int, spread: float = 1.0) -> np.ndarray:
    """Raw inputs from the checkpoint's input normalization."""
    rng = np.random.default_rng(seed)
    shape = (1, -1) + (1,) * (len(checkpoint.spec.input_shape) - 1)
    noise = rng.standard_normal((rows, *checkpoint.spec.input_shape))
    return (checkpoint.input_mean.reshape(shape) + spread * checkpoint.input_std.reshape(shape) * noise).astype(np.float32)


def int8_graph(checkpoint: Checkpoint, calibration: np.ndarray) -> tuple[quantized.QuantizedModel, onnx.ModelProto]:
    model = quantize_model(fold(checkpoint), calibration)
    return model, build_quantized_graph(model, num_outputs=checkpoint.spec.num_outputs, card={})


def assert_graph_is_the_reference(proto: onnx.ModelProto, model: quantized.QuantizedModel, x: np.ndarray, layers: int) -> np.ndarray:
    """The graph's outputs and every layer's pre-activation codes equal the integer reference's, bit for bit; returns the outputs."""
    output, codes = run_graph(proto, x, layers)
    expected, expected_codes = quantized.forward(model, x)
    np.testing.assert_array_equal(output.view(np.uint32), expected.view(np.uint32))
    for got, want in zip(codes, expected_codes, strict=True):
        np.testing.assert_array_equal(got, want)
    return output


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    family=st.sampled_from(["mlp", "convnet"]),
    activation=st.sampled_from(["lut", "lut", "relu", "gelu"]),
    mode=st.sampled_from(["linear", "nearest"]),
    extrapolate=st.sampled_from(["clamp", "linear"]),
    shared=st.booleans(),
    depth=st.integers(1, 3),
    width=st.integers(1, 12),
    task=st.sampled_from(["classification", "regression"]),
    seed=st.integers(0, 2**16),
)
def test_int8_graph_equals_the_integer_reference_bit_for_bit(family: str, activation: str, mode: str, extrapolate: str, shared: bool,
                                                              depth: int, width: int, task: str, seed: int) -> None:
    lut = LUTSpec(bins=8, mode=mode, extrapolate=extrapolate, shared=shared)
    outputs = 1 if task == "regression" else 3
    if family == "mlp":
        spec = ModelSpec(family="mlp", input_shape=(5,), num_outputs=outputs, hidden=(width,) * depth, activation=activation, lut=lut)
    else:
        size = 2 ** min(depth, 2) * 2
        spec = ModelSpec(family="convnet", input_shape=(2, size, size + 1), num_outputs=outputs, hidden=(width,) * min(depth, 2),
                         activation=activation, lut=lut)
    checkpoint = random_checkpoint(spec, seed=seed % 1000, task=task)
    model, proto = int8_graph(checkpoint, draws(checkpoint, 64, seed))
    assert {node.op_type for node in proto.graph.node} <= STANDARD_OPS and all(node.domain == "" for node in proto.graph.node)
    huge = np.full((2, *spec.input_shape), 3e38, np.float32)
    huge[0] *= -1  # beyond every code: float32 overflow to infinity saturates the same way in the graph and the reference
    x = np.concatenate([draws(checkpoint, 32, seed + 1, spread=3.0), np.zeros((1, *spec.input_shape), np.float32),
                        draws(checkpoint, 4, seed + 2, spread=1e4), huge])
    output = assert_graph_is_the_reference(proto, model, x, len(spec.hidden))
    assert output.dtype == np.float32 and output.shape == (len(x), outputs)


@pytest.mark.parametrize("spec", [mlp_spec(), convnet_spec(), convnet_spec(mode="nearest", extrapolate="clamp")])
def test_int8_model_follows_the_float_model_on_data_like_its_calibration(spec: ModelSpec) -> None:
    checkpoint = random_checkpoint(spec, seed=3)
    model, proto = int8_graph(checkpoint, draws(checkpoint, 512, 0))
    x = draws(checkpoint, 256, 1)
    output, _ = run_graph(proto, x, len(spec.hidden))
    expected = reference.forward(checkpoint, x)
    # 8-bit codes: a few percent of the output range, never a different model.
    assert np.sqrt(np.mean((output - expected) ** 2)) <= 0.05 * np.abs(expected).max()
    assert np.mean(output.argmax(axis=1) == expected.argmax(axis=1)) >= 0.9


def test_int8_convnet_reads_each_uint8_table_per_channel() -> None:
    checkpoint = random_checkpoint(convnet_spec(), seed=4)
    model, proto = int8_graph(checkpoint, draws(checkpoint, 128, 0))
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("GatherElements") == 2 and ops.count("QLinearConv") == 2 and "Conv" not in ops
    tables = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if t.name.startswith("act")}
    first = tables[next(name for name in tables if name.startswith("act0.table"))]
    assert first.dtype == np.uint8 and first.shape == (256, 4)
    np.testing.assert_array_equal(first, model.layers[0].table)


@pytest.mark.parametrize("offset, sub", [(0.0, False), (50.0, True)])
def test_a_dense_first_layer_reads_raw_inputs_when_every_range_holds_zero(offset: float, sub: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=6)
    rng = np.random.default_rng(0)
    features = checkpoint.spec.input_shape[0]
    calibration = (offset + rng.uniform(0.0, 4.0, (256, features))).astype(np.float32)  # pixels or counts: ranges from 0 up
    calibration[:, 0] = offset  # a constant feature (0 where the raw codes can take it)
    model, proto = int8_graph(checkpoint, calibration)
    ops = [node.op_type for node in proto.graph.node]
    assert ("Sub" in ops) is sub and (model.input.shift is not None) is sub
    assert "Add" not in ops and ops[-2:] == ["MatMulInteger", "DequantizeLinear"]  # the bias is the zero point
    x = np.concatenate([(offset + rng.uniform(-2.0, 6.0, (64, features))).astype(np.float32), np.zeros((1, features), np.float32)])
    assert_graph_is_the_reference(proto, model, x, len(checkpoint.spec.hidden))
    # Raw codes are still read around the middle code: the first layer's pre-activation codes on the calibration
    # data spread over as much of the code range as with centred input codes (sums offset from 0 would not).
    monkeypatch.setattr(quantize, "RAW_INPUT_MAX_LOSS", -np.inf)
    centred_model, centred_proto = int8_graph(checkpoint, calibration)
    spans = [np.ptp(quantized.forward(m, calibration)[1][0].astype(np.int64), axis=0).mean() for m in (model, centred_model)]
    assert spans[0] >= 0.95 * spans[1]
    assert "Sub" in [node.op_type for node in centred_proto.graph.node]


def test_segment_values_follow_the_numpy_reference_of_the_tables() -> None:
    checkpoint = random_checkpoint(mlp_spec(extrapolate="linear"), seed=5)
    fused = fold(checkpoint)
    x = draws(checkpoint, 64, 0, spread=4.0).astype(np.float64)
    h = x - fused.input_shift[None]
    v = h @ fused.layers[0].weight.T + fused.layers[0].bias
    expected = reference.hidden_layers(checkpoint, x)[0][1]
    np.testing.assert_allclose(segment_values(fused.layers[0].table, v), expected, rtol=1e-9, atol=1e-9)


def test_shared_zero_fits_every_range_and_holds_a_real_zero() -> None:
    lo, hi = np.array([0.0, -1.0, -0.5, 0.0]), np.array([3.0, 1.0, 2.0, 0.0])
    zero, scale = shared_zero(lo, hi)
    assert 0 < zero < 255 and np.all(scale > 0)
    assert np.all(-zero * scale <= lo + 1e-12) and np.all((255 - zero) * scale >= hi - 1e-12)
    only_positive = shared_zero(np.zeros(3), np.array([1.0, 2.0, 4.0]))
    assert only_positive[0] == 0  # all ranges one-sided: every code above the zero


def test_convnet_with_average_pooling_is_refused_by_name() -> None:
    spec = ModelSpec(family="convnet", input_shape=(2, 6, 5), num_outputs=3, hidden=(4,), pool="avg", lut=LUTSpec(bins=8))
    checkpoint = random_checkpoint(spec, seed=1)
    with pytest.raises(QuantizationError, match="max pooling.*got avg pooling"):
        quantize_model(fold(checkpoint), draws(checkpoint, 32, 0))


@pytest.mark.parametrize(("rows", "message"), [(4, "at least 16 finite rows"), (None, "NaN or Inf")])
def test_bad_calibration_data_is_refused(rows: int | None, message: str) -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=1)
    data = draws(checkpoint, rows or 32, 0)
    if rows is None:
        data[3, 2] = np.nan
    with pytest.raises(QuantizationError, match=message):
        quantize_model(fold(checkpoint), data)


# --- the exporter and its command line --------------------------------------------------------------------

def checkpoint_dir(tmp_path: Path, checkpoint: Checkpoint, *, calibration: bool = True, targets: bool = True) -> Path:
    """A checkpoint directory as the trainer writes it: test split (X, y) and a calibration sample."""
    directory = tmp_path / "run"
    write_checkpoint(checkpoint, directory)
    x = draws(checkpoint, 200, 11)
    split = {"X": x}
    if targets:
        logits = reference.forward(checkpoint, x)
        split["y"] = logits.argmax(axis=1).astype(np.int64) if checkpoint.task == "classification" else logits[:, 0].astype(np.float32)
    tensorfile.save_file(split, directory / TEST_SPLIT_FILE)
    if calibration:
        tensorfile.save_file({"X": draws(checkpoint, 300, 12)}, directory / CALIBRATION_FILE)
    return directory


def test_export_int8_writes_a_verified_model_and_records_the_quantization(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=1)
    source = checkpoint_dir(tmp_path, checkpoint)
    result = export_file(source, tmp_path / "model.onnx", quantize="int8", max_accuracy_drop=0.2)
    assert result.scheme == "int8" and result.monitor is None
    assert result.quantization is not None and result.quantization.exact and result.quantization.passed
    proto = onnx.load(tmp_path / "model.onnx")
    card = {p.key: p.value for p in proto.metadata_props}
    record = json.loads(card[metadata.QUANTIZATION])
    assert record["calibration"]["rows"] == 300 and record["calibration"]["source"].endswith(f"({CALIBRATION_FILE})")
    assert record["evaluation"]["metric"] == "accuracy" and record["evaluation"]["rows"] == 200 and record["exact"] is True
    assert record["evaluation"]["float"] == 1.0  # the targets are the float model's own classes
    assert record["evaluation"]["int8"] == pytest.approx(1.0 + record["evaluation"]["change"])
    x = draws(checkpoint, 16, 5)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {metadata.DEFAULT_INPUT_NAME: x})[0],
                                  quantized.forward(quantize_model(fold(checkpoint), tensorfile.load_file(source / CALIBRATION_FILE)["X"]), x)[0])


def test_export_int8_of_a_regressor_measures_the_rmse_change(tmp_path: Path) -> None:
    spec = ModelSpec(family="mlp", input_shape=(6,), num_outputs=1, hidden=(16, 16), lut=LUTSpec(bins=8))
    checkpoint = random_checkpoint(spec, seed=2, task="regression")
    source = checkpoint_dir(tmp_path, checkpoint)
    # Targets equal the float outputs: the float RMSE is 0 and any int8 error is an infinite relative increase.
    with pytest.raises(VerificationError, match=r"int8 RMSE .* above the float model's"):
        export_file(source, tmp_path / "model.onnx", quantize="int8")
    assert not (tmp_path / "model.onnx").exists()


def test_int8_accuracy_below_the_bound_writes_nothing_and_says_by_how_much(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=1)
    source = checkpoint_dir(tmp_path, checkpoint)
    squeezed = draws(checkpoint, 64, 3) * np.float32(0.0) + checkpoint.input_mean.astype(np.float32)  # one point: every range collapses
    np.save(tmp_path / "calibration.npy", squeezed)
    with pytest.raises(VerificationError, match=r"int8 accuracy .* points below the float model's 1\.0000, more than the 0\.50 allowed"):
        export_file(source, tmp_path / "model.onnx", quantize="int8", calibration_data=squeezed)
    with pytest.raises(VerificationError, match="nothing written"):
        export_main([str(source), "--out", str(tmp_path / "cli.onnx"), "--quantize", "int8", "--calibration-data", str(tmp_path / "calibration.npy")])
    assert not (tmp_path / "model.onnx").exists() and not (tmp_path / "cli.onnx").exists()


def test_export_int8_without_calibration_data_names_the_way_out(tmp_path: Path) -> None:
    source = checkpoint_dir(tmp_path, random_checkpoint(mlp_spec(), seed=1), calibration=False)
    with pytest.raises(QuantizationError, match=f"{CALIBRATION_FILE} beside the checkpoint .* or --calibration-data FILE"):
        export_file(source, tmp_path / "model.onnx", quantize="int8")
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.parametrize(("options", "message"), [
    ({"quantize": "int4"}, r"--quantize: expected one of \['int8'\]"),
    ({"quantize": "int8", "mode": "nearest"}, "--mode with --quantize: expected none of them"),
    ({"quantize": "int8", "max_error": 1e-3}, "--max-error with --quantize"),
    ({"quantize": "int8", "max_accuracy_drop": -0.1}, "--max-accuracy-drop: expected a number from 0 to 1"),
    ({"quantize": "int8", "max_rmse_increase": float("nan")}, "--max-rmse-increase: expected a non-negative number"),
])
def test_bad_int8_options_are_refused_before_any_work(tmp_path: Path, options: dict[str, object], message: str) -> None:
    source = checkpoint_dir(tmp_path, random_checkpoint(mlp_spec(), seed=1))
    with pytest.raises(LutnetError, match=message):
        export_file(source, tmp_path / "model.onnx", **options)
    assert not (tmp_path / "model.onnx").exists()


def test_cli_int8_export_into_a_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = checkpoint_dir(tmp_path, random_checkpoint(convnet_spec(), seed=2))
    assert export_main([str(source), "--repository", str(tmp_path / "models"), "--name", "tiny", "--quantize", "int8",
                        "--max-accuracy-drop", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "convnet lut, int8" in out and "equals the numpy reference bit for bit" in out
    version = tmp_path / "models" / "tiny" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["model.onnx"]
    assert (tmp_path / "models" / "tiny" / "config.pbtxt").is_file()


def test_cli_refuses_int8_flags_without_quantize(tmp_path: Path) -> None:
    source = checkpoint_dir(tmp_path, random_checkpoint(mlp_spec(), seed=1))
    np.save(tmp_path / "calibration.npy", draws(random_checkpoint(mlp_spec(), seed=1), 32, 0))
    with pytest.raises(LutnetError, match="--calibration-data: expected --quantize int8 with it"):
        export_main([str(source), "--out", str(tmp_path / "m.onnx"), "--calibration-data", str(tmp_path / "calibration.npy")])
    with pytest.raises(LutnetError, match="--max-accuracy-drop --max-rmse-increase: expected --quantize int8 with it"):
        export_main([str(source), "--out", str(tmp_path / "m.onnx"), "--max-accuracy-drop", "0.1", "--max-rmse-increase", "0.1"])
    assert not (tmp_path / "m.onnx").exists()


def test_export_to_repository_int8_keeps_the_float_signature(tmp_path: Path) -> None:
    checkpoint = random_checkpoint(mlp_spec(), seed=1)
    source = checkpoint_dir(tmp_path, checkpoint)
    path, _ = export_to_repository(source, tmp_path / "models", "m", quantize="int8", max_accuracy_drop=0.3)
    proto = onnx.load(path)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
