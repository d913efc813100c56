"""User-facing errors.

Every mistake a user can make (bad file, bad option, corrupt stream, an input over a resource limit, an
output the system refuses) raises an :class:`IcmError` subclass with a one-line message; the CLI prints that
line and exits with status 2. The command line's boundary (:func:`icmkit.cli._common.user_errors`) also turns
whatever else escapes (MemoryError, OSError, RecursionError, a library's error) into one ``error:`` line
with status 2; ``ICM_TRACEBACK=1`` shows the traceback of those instead, for bug reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class IcmError(Exception):
    """Base class of errors caused by the user's input rather than by icmkit itself."""

    exit_code = 2


class InputImageError(IcmError):
    """An input image is missing, unreadable or of a kind icmkit refuses."""


class BitstreamError(IcmError):
    """A compressed stream is truncated, corrupt, foreign, from a future version or too large."""


class UnknownCodecError(IcmError):
    """A codec name that is not registered."""


class QualityError(IcmError):
    """A quality value outside the codec's accepted range."""


class CodecUnavailableError(IcmError):
    """A registered codec whose optional dependency is missing on this machine."""


class WeightsMismatchError(BitstreamError):
    """A stream written by other weights than the ones loaded to decode it."""


class WeightsFileError(IcmError):
    """A shipped weights file does not match its zoo table (corrupt, truncated or replaced)."""


class OutputExistsError(IcmError):
    """An output path that exists (without ``--force``) or that would overwrite an input."""


class ConfigError(IcmError):
    """An invalid training or benchmark configuration."""


class ResourceLimitError(IcmError):
    """An input that would cost more than a resource limit allows (bytes, pixels, JPEG scans, decoding
    memory: :mod:`icmkit.limits`), refused before the cost is paid; or a limit set to a bad value."""


class OutputError(IcmError):
    """An output the operating system refuses to write (permission, missing folder, full disk, …)."""


def os_error_line(exc: OSError, path: object = None) -> str:
    """An OSError as ``path: reason`` (the path the error names, else ``path``), without the class name."""
    name = exc.filename if exc.filename is not None else path
    reason = exc.strerror or one_line(exc)
    return f"{name}: {reason[:1].lower() + reason[1:]}" if name is not None else reason


def one_line(exc: BaseException) -> str:
    """A third-party exception as one short line (class name + collapsed message), for user errors."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def unexpected_error_line(exc: BaseException) -> str:
    """What the command line prints for an exception that is not an :class:`IcmError`: one line, saying what
    ran out (memory, stack) or what the system refused, else the library's own message."""
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and _allocation_failure(str(exc))):
        return "out of memory: the input needs more memory than this machine gives (limits: docs/security.md)"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to process"
    if isinstance(exc, OSError):
        return os_error_line(exc)
    return f"{one_line(exc)} (unexpected; ICM_TRACEBACK=1 shows where)"


@contextmanager
def resource_errors(what: str = "input") -> Iterator[None]:
    """The API's boundary: running out of memory (MemoryError, torch's failed allocation) or stack
    (RecursionError) while working on a user's input raises :class:`ResourceLimitError`, not a bare error."""
    try:
        yield
    except IcmError:
        raise
    except MemoryError:
        raise ResourceLimitError(f"{what}: out of memory (limits: docs/security.md)") from None
    except RecursionError:
        raise ResourceLimitError(f"{what}: nested too deeply to process") from None
    except RuntimeError as exc:
        if not _allocation_failure(str(exc)):
            raise
        raise ResourceLimitError(f"{what}: out of memory ({one_line(exc)})") from None


def _allocation_failure(text: str) -> bool:
    """torch reports a failed allocation as a RuntimeError ("DefaultCPUAllocator: can't allocate memory", "CUDA
    out of memory")."""
    lowered = text.lower()
    return "can't allocate memory" in lowered or "out of memory" in lowered or "not enough memory" in lowered
