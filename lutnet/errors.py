"""Domain exceptions shared by every lutnet package: each says what was expected and what was got."""
from __future__ import annotations


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


class ExtraNotInstalledError(LutnetError):
    """A subcommand needs an optional extra that is not installed."""
