"""Checkpoint directory in, verified fused ONNX file (or repository version) out: the IO around ``build_graph``."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from lutnet import metadata, reference, tensorfile
from lutnet.atomic import write_bytes_atomic
from lutnet.checkpoint import CALIBRATION_FILE, TENSOR_FILE, TEST_SPLIT_FILE, Checkpoint, read_checkpoint
from lutnet.errors import LutnetError
from lutnet.lut import MODES
from lutnet.ranges import checkpoint_input_range
from lutnet.repository import MONITOR_FILE
from lutnet.export import repository
from lutnet.export.fold import exported_checkpoint, fold
from lutnet.export.graph import DEFAULT_OPSET, build_graph, model_card, set_card_entry
from lutnet.export.monitor import checkpoint_tables, lookup_coordinates, monitor_graph, range_card, saturation_baseline
from lutnet.export.quantize import (MAX_ACCURACY_DROP, MAX_RMSE_INCREASE, QuantizationError, QuantizedVerification, build_quantized_graph,
                                    quantization_card, quantize_model, verify_quantized)
from lutnet.export.verify import Verification, VerificationError, choose_bins, probe_inputs, verify
from lutnet.quantized import SCHEMES


@dataclass(frozen=True)
class ExportResult:
    """A serialized fused model and how it was made."""

    model: bytes
    exported: Checkpoint  # the separated model the file represents (mode and bins as exported)
    nodes: int
    verification: Verification | None
    monitor: bytes | None = None  # the monitor graph (lutnet.export.monitor) of a LUT model, written beside model.onnx in a repository
    scheme: str | None = None  # "int8" for a quantized export
    quantization: QuantizedVerification | None = None  # int8 exports: exactness and the accuracy change, when verified


def export_model(
    checkpoint_dir: str | os.PathLike[str],
    *,
    mode: str | None = None,
    bins_out: int | None = None,
    max_error: float | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    verify_data: np.ndarray | None = None,
    card: dict[str, str] | None = None,
    quantize: str | None = None,
    calibration_data: np.ndarray | None = None,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    max_rmse_increase: float = MAX_RMSE_INCREASE,
) -> ExportResult:
    """Read, merge, build and (with ``check``) verify; raises ``VerificationError`` with what failed and by how much.

    ``quantize="int8"`` builds the int8 graph instead (``lutnet.export.quantize``), calibrated on ``calibration_data``
    or the training sample stored beside the checkpoint, and verified bit for bit against the integer reference and
    within ``max_accuracy_drop`` / ``max_rmse_increase`` of the float model on the verification data.
    """
    checkpoint = read_checkpoint(checkpoint_dir)
    _check_options(checkpoint, mode, bins_out, max_error)
    if quantize is not None:
        check_quantize(quantize, mode, bins_out, max_error, max_accuracy_drop, max_rmse_increase)
        return _export_int8(checkpoint_dir, checkpoint, calibration_data, verify_data, opset=opset, check=check, card=card,
                            max_accuracy_drop=max_accuracy_drop, max_rmse_increase=max_rmse_increase)
    data = verify_data if verify_data is not None else test_split(checkpoint_dir)
    probes = probe_inputs(checkpoint, data)
    if max_error is not None:
        bins_out = choose_bins(checkpoint, mode, max_error, probes)
    source = hashlib.sha256(Path(checkpoint_dir, TENSOR_FILE).read_bytes()).hexdigest()
    exported = exported_checkpoint(checkpoint, mode, bins_out)
    ranges = range_card(checkpoint_input_range(checkpoint.info, int(np.prod(checkpoint.spec.input_shape))), checkpoint_tables(exported))
    proto = build_graph(exported, opset=opset, card={metadata.SOURCE_SHA256: source, **ranges, **(card or {})})
    verification = None
    if check:
        verification = verify(proto, checkpoint, exported, probes, max_error=max_error)
        if not verification.passed:
            raise VerificationError("verification failed, nothing written: " + "; ".join(verification.failures))
        set_card_entry(proto, metadata.MERGE_MAX_ERROR, repr(verification.deviation))
    monitor = _monitor(proto, exported)
    if monitor is not None:
        for key, value in saturation_baseline(monitor, {metadata.DEFAULT_INPUT_NAME: probes.typical.astype(np.float32)}).items():
            set_card_entry(proto, key, value)
    return ExportResult(proto.SerializeToString(), exported, len(proto.graph.node), verification,
                        None if monitor is None else monitor.SerializeToString())


def _export_int8(checkpoint_dir: str | os.PathLike[str], checkpoint: Checkpoint, calibration_data: np.ndarray | None,
                 verify_data: np.ndarray | None, *, opset: int, check: bool, card: dict[str, str] | None,
                 max_accuracy_drop: float, max_rmse_increase: float) -> ExportResult:
    if calibration_data is None:
        calibration, source = calibration_split(checkpoint_dir), f"training sample ({CALIBRATION_FILE})"
    else:
        calibration, source = np.asarray(calibration_data), "calibration data given to the export"
    qmodel = quantize_model(fold(checkpoint), calibration)
    data, targets = (verify_data, None) if verify_data is not None else (test_split(checkpoint_dir), test_targets(checkpoint_dir))
    probes = probe_inputs(checkpoint, data)
    source_hash = hashlib.sha256(Path(checkpoint_dir, TENSOR_FILE).read_bytes()).hexdigest()
    ranges = range_card(checkpoint_input_range(checkpoint.info, int(np.prod(checkpoint.spec.input_shape))), [])
    entries = {**model_card(checkpoint), metadata.SOURCE_SHA256: source_hash, **ranges, **(card or {})}
    proto = build_quantized_graph(qmodel, num_outputs=checkpoint.spec.num_outputs, card=entries, opset=opset)
    verification = None
    if check:
        verification = verify_quantized(proto, qmodel, probes.extreme, probes.typical, reference.forward(checkpoint, probes.typical), targets,
                                        classification=checkpoint.task == "classification",
                                        max_accuracy_drop=max_accuracy_drop, max_rmse_increase=max_rmse_increase)
        if not verification.passed:
            raise VerificationError("int8 verification failed, nothing written: " + "; ".join(verification.failures))
    for key, value in quantization_card(verification, calibration, source).items():
        set_card_entry(proto, key, value)
    return ExportResult(proto.SerializeToString(), checkpoint, len(proto.graph.node), None, None, "int8", verification)


def check_quantize(quantize: str, mode: str | None, bins_out: int | None, max_error: float | None,
                    max_accuracy_drop: float, max_rmse_increase: float) -> None:
    if quantize not in SCHEMES:
        raise LutnetError("--quantize", expected=f"one of {list(SCHEMES)}", got=repr(quantize))
    if not (isinstance(max_accuracy_drop, (int, float)) and 0 <= max_accuracy_drop <= 1):
        raise LutnetError("--max-accuracy-drop", expected="a number from 0 to 1 (a fraction of the test rows)", got=repr(max_accuracy_drop))
    if not (isinstance(max_rmse_increase, (int, float)) and max_rmse_increase >= 0):
        raise LutnetError("--max-rmse-increase", expected="a non-negative number (a fraction of the float model's RMSE)", got=repr(max_rmse_increase))
    asked = [flag for flag, value in (("--mode", mode), ("--bins-out", bins_out), ("--max-error", max_error)) if value is not None]
    if asked:
        raise LutnetError(f"{' and '.join(asked)} with --quantize", expected="none of them: an int8 export resamples every table to its 256 codes",
                          got=" ".join(asked))


def _monitor(proto: onnx.ModelProto, exported: Checkpoint) -> onnx.ModelProto | None:
    """The monitor graph of a LUT model; None for a baseline, which has no tables to saturate."""
    lut = exported.spec.lut
    if exported.spec.activation != "lut":
        return None
    return monitor_graph(proto, lookup_coordinates(proto, lut.mode, lut.extrapolate, lut.bins))


def export_file(src: str | os.PathLike[str], dst: str | os.PathLike[str], **options: object) -> ExportResult:
    """Export checkpoint directory ``src`` to the ONNX file ``dst`` (written atomically, only after verification)."""
    dst = Path(dst)
    check_writable(dst)
    result = export_model(src, **options)  # type: ignore[arg-type]
    try:
        write_bytes_atomic(dst, result.model)
    except OSError as exc:
        raise LutnetError(f"output {dst}", expected="a writable file path", got=exc.strerror or str(exc)) from None
    return result


def export_to_repository(
    src: str | os.PathLike[str], root: str | os.PathLike[str], name: str, version: int | None = None, **options: object
) -> tuple[Path, ExportResult]:
    """Export into ``root/name/version/model.onnx`` (next free version by default) with its ``config.pbtxt``."""
    version = repository.resolve_version(root, name, version)
    card = {metadata.MODEL_NAME: name, metadata.MODEL_VERSION: str(version)}
    result = export_model(src, card=card, **options)  # type: ignore[arg-type]
    spec = result.exported.spec
    config = repository.config_pbtxt(name, list(spec.input_shape), [spec.num_outputs])
    extra = {MONITOR_FILE: result.monitor} if result.monitor is not None else {}
    return repository.write_model(root, name, version, result.model, config, extra), result


def test_split(checkpoint_dir: str | os.PathLike[str]) -> np.ndarray | None:
    """The raw test inputs ``X`` the trainer stored beside the checkpoint, if it did."""
    path = Path(checkpoint_dir, TEST_SPLIT_FILE)
    if not path.is_file():
        return None
    tensors = tensorfile.load_file(path)
    if "X" not in tensors:
        raise LutnetError(f"{path}", expected="a tensor named X with the raw test inputs", got=sorted(tensors))
    return tensors["X"]


def test_targets(checkpoint_dir: str | os.PathLike[str]) -> np.ndarray | None:
    """The test targets ``y`` stored beside the checkpoint, if they are."""
    path = Path(checkpoint_dir, TEST_SPLIT_FILE)
    return tensorfile.load_file(path).get("y") if path.is_file() else None


def calibration_split(checkpoint_dir: str | os.PathLike[str]) -> np.ndarray:
    """The sample of raw training inputs the trainer stored for int8 calibration; an error naming the way out if absent."""
    path = Path(checkpoint_dir, CALIBRATION_FILE)
    if not path.is_file():
        raise QuantizationError(f"calibration data for {checkpoint_dir}", expected=f"{CALIBRATION_FILE} beside the checkpoint "
                                "(written by lutnet train) or --calibration-data FILE with raw training inputs", got="neither")
    tensors = tensorfile.load_file(path)
    if "X" not in tensors:
        raise QuantizationError(f"{path}", expected="a tensor named X with raw training inputs", got=sorted(tensors))
    return tensors["X"]


def load_verify_data(path: str | os.PathLike[str], what: str = "verification data") -> np.ndarray:
    """Raw inputs (for verification or calibration) from a ``.npy`` file (no pickles) or a safetensors file with a tensor ``X``."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LutnetError(f"{what} {path}", expected="a readable .npy array of raw inputs", got=str(exc)) from None
    tensors = tensorfile.load_file(path)
    if "X" not in tensors:
        raise LutnetError(f"{what} {path}", expected="a .npy file or a safetensors file with a tensor X", got=sorted(tensors))
    return tensors["X"]


def _check_options(checkpoint: Checkpoint, mode: str | None, bins_out: int | None, max_error: float | None) -> None:
    asked = [flag for flag, value in (("--mode", mode), ("--bins-out", bins_out), ("--max-error", max_error)) if value is not None]
    if asked and checkpoint.spec.activation != "lut":
        raise LutnetError(f"{' and '.join(asked)}", expected="a LUT model", got=f"a {checkpoint.spec.activation} baseline")
    check_resolution(mode, bins_out, max_error)


def check_resolution(mode: str | None, bins_out: int | None, max_error: float | None) -> None:
    """The lookup mode and resolution options, each valid and at most one of ``bins_out`` and ``max_error``."""
    if mode is not None and mode not in MODES:
        raise LutnetError("--mode", expected=f"one of {list(MODES)}", got=repr(mode))
    if bins_out is not None and max_error is not None:
        raise LutnetError("--bins-out and --max-error", expected="at most one of them", got="both")
    if bins_out is not None and not (isinstance(bins_out, int) and bins_out >= 2):
        raise LutnetError("--bins-out", expected="an integer >= 2", got=repr(bins_out))
    if max_error is not None and not (np.isfinite(max_error) and max_error > 0):
        raise LutnetError("--max-error", expected="a positive number", got=repr(max_error))


def check_writable(dst: Path) -> None:
    """Raise unless ``dst`` can become a file: not a folder, in an existing writable folder (checked before any work)."""
    if dst.is_dir():
        raise LutnetError(f"output {dst}", expected="a file path", got="a directory")
    if not dst.parent.is_dir() or not os.access(dst.parent, os.W_OK):
        raise LutnetError(f"output {dst}", expected="a path in an existing, writable folder", got=f"{dst.parent} is missing or read-only")
