"""The ``lutnet`` console script: dispatches each subcommand to its package, imported only when used.

``lutnet serve`` therefore never imports torch, and a missing extra is reported by name.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from lutnet import __version__
from lutnet.errors import ExtraNotInstalledError, LutnetError
from lutnet.ortenv import disable_onnxruntime_telemetry

# subcommand -> (module with main(argv) -> int, extra that provides its dependencies, one-line help)
COMMANDS = {
    "train": ("lutnet.training.cli", "train", "train a model on a bundled data set or a CSV file"),
    "plot": ("lutnet.training.plot", "train", "draw every learned activation of a checkpoint"),
    "export": ("lutnet.export.cli", "export", "merge a checkpoint into a fused ONNX model"),
    "serve": ("lutnet.service.cli", "serve", "serve a model repository over HTTP (Open Inference Protocol v2)"),
}


def usage() -> str:
    lines = [f"usage: lutnet {{{','.join(COMMANDS)}}} [options]   (lutnet COMMAND --help for details)", "", "commands:"]
    lines += [f"  {name:<8} {text}" for name, (_, _, text) in COMMANDS.items()]
    return "\n".join(lines)


def import_command(command: str, module_name: str, extra: str) -> ModuleType:
    """The subcommand's module; a package of its extra that is missing becomes ``ExtraNotInstalledError``."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.partition(".")[0] == "lutnet":
            raise  # a broken installation of lutnet itself, not a missing extra
        raise ExtraNotInstalledError(f"'lutnet {command}'", exc.name, extra) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"lutnet {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"lutnet: error: unknown command {argv[0]!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, extra, _ = COMMANDS[argv[0]]
    disable_onnxruntime_telemetry()  # before the subcommand imports onnxruntime
    try:
        module = import_command(argv[0], module_name, extra)
    except ExtraNotInstalledError as exc:
        print(f"lutnet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        return int(module.main(argv[1:]) or 0)
    except LutnetError as exc:
        print(f"lutnet {argv[0]}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lutnet {argv[0]}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
