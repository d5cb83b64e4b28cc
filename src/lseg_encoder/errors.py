"""Error types that the CLI turns into one clear line and a non-zero exit.

Everything the user can get wrong (a file, a size, a label list, an engine) raises a subclass of
`LsegError`, so that the CLI can print `error: <message>` without a traceback while real bugs still
show theirs.
"""

from __future__ import annotations


class LsegError(Exception):
    """Base class for errors caused by user input rather than by a bug."""


class CheckpointError(LsegError):
    """A checkpoint is missing, unreadable, corrupt, or not the model it claims to be."""


class InputSizeError(LsegError, ValueError):
    """An input size that the official architecture cannot process."""


class ImageError(LsegError):
    """An image that cannot be read or decoded."""


class LabelError(LsegError, ValueError):
    """A malformed label list (empty, duplicate, or too long for CLIP's 77-token context)."""


class ExportError(LsegError):
    """ONNX export, validation or loading failed."""


class EngineError(LsegError):
    """A TensorRT engine could not be built, or a stored engine does not fit this runtime."""


class WriteError(LsegError):
    """An output cannot be written: a folder in the way, no permission, a full or read-only disk.

    `errno` keeps the OS error code (ENOSPC for a full disk) for callers that react to one kind."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


class BackendUnavailable(LsegError):
    """A backend cannot run on this machine; the message is the exact reason (tests skip with it)."""
