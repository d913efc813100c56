"""User-facing errors.

Every mistake a user can make (bad file, bad option, corrupt stream) raises an :class:`IcmError`
subclass with a one-line message; the CLI prints that line and exits with status 2. Anything else
that escapes is a bug in icmkit and keeps its traceback.
"""

from __future__ import annotations


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


def one_line(exc: BaseException) -> str:
    """A third-party exception as one short line (class name + collapsed message), for user errors."""
    text = " ".join(str(exc).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
