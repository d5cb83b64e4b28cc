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


def first_sentences(exc: BaseException | str, limit: int = 300) -> str:
    """The first line of an exception's text, shortened only at a sentence end, never mid-sentence.

    Library messages can be kilobytes long (a whole IR dump after the first line); slicing them at a
    fixed width used to cut a name or a hint in half. If the first sentence alone is longer than
    `limit`, it is kept whole.
    """
    text = str(exc).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    if not line:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    if len(line) <= limit:
        return line
    ends = [i + 1 for i, ch in enumerate(line[:limit]) if ch in ".;:" and (i + 1 == len(line) or line[i + 1] == " ")]
    return line[: ends[-1]] if ends else line[: line.find(". ") + 1] if ". " in line else line
