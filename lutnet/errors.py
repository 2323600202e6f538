"""Domain exceptions shared by every lutnet package: each says what was expected and what was got."""
from __future__ import annotations

import importlib


class LutnetError(Exception):
    """Base of every error lutnet raises on purpose; the CLI prints it as one line and exits non-zero."""

    exit_code = 2

    def __init__(self, message: str, *, expected: object = None, got: object = None) -> None:
        if expected is not None or got is not None:
            message = f"{message}: expected {expected}, got {got}"
        super().__init__(message)
        self.expected = expected
        self.got = got


class CheckpointError(LutnetError):
    """A checkpoint directory, its config.json or its tensor file is missing, corrupt or inconsistent."""


class DataError(LutnetError):
    """A data set could not be loaded or does not have the expected shape or values."""


class ExtraNotInstalledError(LutnetError, ImportError):
    """A feature needs a package of an optional extra that is not installed; the message names the extra."""

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package!r}, which is not installed; install the extra: pip install 'lutnet[{extra}]'")
        self.package = package
        self.extra = extra


def require_extra(feature: str, extra: str, *packages: str) -> None:
    """Import ``packages`` (which ``feature`` needs anyway) or raise ``ExtraNotInstalledError`` naming ``extra``."""
    for package in packages:
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as exc:
            if exc.name is None or exc.name.partition(".")[0] != package.partition(".")[0]:
                raise  # the package is there but broken: its own error says more
            raise ExtraNotInstalledError(feature, package, extra) from None
