"""Turning library failures on foreign or damaged bytes into one-line :class:`BitstreamError`\\ s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from icmkit.errors import BitstreamError, IcmError, one_line


def stream_bytes(data: object, codec: str) -> bytes:
    """Accept only non-empty bytes-like input, so that every decoder starts from real bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"{codec}: expected bytes to decode, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise BitstreamError(f"{codec}: empty stream")
    return data


@contextmanager
def decoding(codec: str) -> Iterator[None]:
    """Re-raise whatever a third-party decoder throws as a BitstreamError naming ``codec``.

    Decoders report corrupt input with their own exception types (OSError, ValueError, av.error.*,
    imagecodecs errors); callers of icmkit should only ever see one kind, with one line.
    """
    try:
        yield
    except IcmError:
        raise
    except MemoryError as exc:  # kept as the cause: callers can tell a memory limit from bad bytes
        raise BitstreamError(f"{codec}: stream needs more memory than is available to decode") from exc
    except Exception as exc:  # noqa: BLE001 - any library failure here means the bytes are bad
        raise BitstreamError(f"{codec}: not a valid stream ({one_line(exc)})") from exc
