"""``lutnet export``: merge a checkpoint into a fused, verified ONNX file or a Triton-layout repository version."""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from lutnet.errors import LutnetError
from lutnet.lut import MODES
from lutnet.export.exporter import ExportResult, export_file, export_to_repository, load_verify_data
from lutnet.export.graph import DEFAULT_OPSET
from lutnet.export.quantize import MAX_ACCURACY_DROP, MAX_RMSE_INCREASE
from lutnet.quantized import SCHEMES


class _Parser(argparse.ArgumentParser):
    """Usage errors become a ``LutnetError``, so the dispatcher prints one line and exits 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise LutnetError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog="lutnet export", description="Merge a checkpoint into a fused ONNX model and verify it against the numpy reference.")
    p.add_argument("checkpoint", help="checkpoint directory (config.json + model.safetensors)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="FILE", help="ONNX file to write")
    target.add_argument("--repository", metavar="DIR", help="model repository folder (Triton layout); needs --name")
    p.add_argument("--name", help="model name in the repository")
    p.add_argument("--version", metavar="V", type=int, help="model version in the repository (default: next free number)")
    p.add_argument("--mode", choices=MODES, help="lookup mode of the export (default: as trained)")
    resolution = p.add_mutually_exclusive_group()
    resolution.add_argument("--bins-out", metavar="K", type=int, help="resample every table to K bins")
    resolution.add_argument("--max-error", metavar="E", type=float,
                            help="use the fewest bins K*2^m whose deviation from the trained model (relative to the output scale) is at most E "
                                 "and, for a classifier, that keep the predicted classes")
    p.add_argument("--opset", metavar="N", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", action="store_true", help="skip verification against the numpy reference")
    p.add_argument("--verify-data", metavar="FILE",
                   help="raw inputs to verify on (.npy, or safetensors with tensor X); default: test_split.safetensors beside the checkpoint, if there")
    int8 = p.add_argument_group("int8 export")
    int8.add_argument("--quantize", choices=SCHEMES,
                      help="export a statically quantized graph: int8 weights, uint8 activations, one 256-entry table per channel")
    int8.add_argument("--calibration-data", metavar="FILE",
                      help="raw training inputs to calibrate on (.npy, or safetensors with tensor X); default: calibration.safetensors beside the checkpoint")
    int8.add_argument("--max-accuracy-drop", metavar="P", type=float,
                      help=f"classification: fail if int8 loses more accuracy than this fraction (default {MAX_ACCURACY_DROP})")
    int8.add_argument("--max-rmse-increase", metavar="R", type=float,
                      help=f"regression: fail if int8 raises the RMSE by more than this fraction (default {MAX_RMSE_INCREASE})")
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    if (args.repository is None) != (args.name is None) or (args.version is not None and args.repository is None):
        got = "them without --repository" if args.repository is None else "--repository without --name"
        raise LutnetError("--name and --version", expected="--name (and optionally --version) together with --repository", got=got)
    options = {
        "mode": args.mode,
        "bins_out": args.bins_out,
        "max_error": args.max_error,
        "opset": args.opset,
        "check": not args.no_verify,
        "verify_data": load_verify_data(args.verify_data) if args.verify_data else None,
    }
    int8_flags = {"--calibration-data": args.calibration_data, "--max-accuracy-drop": args.max_accuracy_drop,
                  "--max-rmse-increase": args.max_rmse_increase}
    if args.quantize is not None:
        options |= {"quantize": args.quantize,
                    "max_accuracy_drop": MAX_ACCURACY_DROP if args.max_accuracy_drop is None else args.max_accuracy_drop,
                    "max_rmse_increase": MAX_RMSE_INCREASE if args.max_rmse_increase is None else args.max_rmse_increase,
                    "calibration_data": load_verify_data(args.calibration_data, "calibration data") if args.calibration_data else None}
    elif any(value is not None for value in int8_flags.values()):
        given = " ".join(flag for flag, value in int8_flags.items() if value is not None)
        raise LutnetError(given, expected="--quantize int8 with it", got="no --quantize")
    if args.out is not None:
        path, result = args.out, export_file(args.checkpoint, args.out, **options)
    else:
        path, result = export_to_repository(args.checkpoint, args.repository, args.name, args.version, **options)
    print(summary(str(path), result))
    return 0


def summary(path: str, result: ExportResult) -> str:
    spec = result.exported.spec
    activation = f"lut {spec.lut.mode}, {spec.lut.bins} bins, extrapolate {spec.lut.extrapolate}" if spec.activation == "lut" else spec.activation
    if result.scheme is not None:
        size = f"{len(result.model) / 1024:.1f} KiB, {result.nodes} nodes, {spec.family} {spec.activation}, {result.scheme}"
        check = result.quantization.summary() if result.quantization else "not verified (--no-verify)"
        return f"wrote {path} ({size})\nverification {check}"
    check = result.verification.summary() if result.verification else "not verified (--no-verify)"
    return f"wrote {path} ({len(result.model) / 1024:.1f} KiB, {result.nodes} nodes, {spec.family} {activation})\nverification {check}"
